"""A small fault-injecting TCP proxy between relocate and sshd (this kernel has no netem).

Each accepted connection is numbered; a rule decides what happens to it once the
client has sent `after` bytes upstream:
  - "reset": both sockets closed with SO_LINGER 0 (the peer sees ECONNRESET),
  - "stall": forwarding stops in both directions, sockets stay open (a dead link
    that keepalives do not notice),
  - "pass": nothing.
Rules apply to the connections whose number is in `which` (None: every connection).
Only small control connections stay under `after`, so bulk lanes are the ones hit.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class Rule:
    action: str = "pass"  # pass | reset | stall
    after: int = 0  # upstream bytes before the fault
    which: set[int] | None = None  # connection numbers (0-based), None = all
    limit: int | None = None  # at most this many faults in all, then connections pass
    downstream: bool = False  # count server->client bytes instead (e.g. an S3 body cut short)

    def applies(self, number: int) -> bool:
        return self.action != "pass" and (self.which is None or number in self.which)


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    rule: Rule = field(default_factory=Rule)
    host: str = "127.0.0.1"
    port: int = 0
    faults: int = 0  # how many connections were hit
    connections: int = 0

    def __post_init__(self) -> None:
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind((self.host, 0))
        self._srv.listen(64)
        self.port = self._srv.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._by_number: dict[int, tuple[socket.socket, socket.socket]] = {}
        self.banners: dict[int, bytes] = {}  # each connection's first bytes from the client (an SSH banner)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            with self._lock:
                number = self.connections
                self.connections += 1
            try:
                up = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self._socks += [client, up]
            self._by_number[number] = (client, up)
            threading.Thread(target=self._pump, args=(number, client, up), daemon=True).start()

    def _pump(self, number: int, client: socket.socket, up: socket.socket) -> None:
        sent = 0
        rule = self.rule
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([client, up], [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        self.banners.setdefault(number, data[:40])
                    if (s is client) != rule.downstream:  # the direction this rule counts
                        sent += len(data)
                        if rule.applies(number) and sent >= rule.after:
                            with self._lock:
                                spent = rule.limit is not None and self.faults >= rule.limit
                                if not spent:
                                    self.faults += 1
                            if spent:
                                (client if s is up else up).sendall(data)
                                continue
                            if rule.action == "reset":
                                for x in (client, up):
                                    x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                                return
                            self._stop.wait()  # stall: hold both sockets open, forward nothing
                            return
                    (client if s is up else up).sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            up.close()

    def reset(self, number: int) -> bool:
        """Reset connection `number` now (RST to both ends); False if it had closed already
        (its relay thread may close it between open_ones and here)."""
        try:
            for x in self._by_number[number]:
                x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                x.shutdown(socket.SHUT_RDWR)
        except OSError:  # EBADF or ENOTCONN: closed meanwhile, nothing left to reset
            return False
        return True

    def open_ones(self, banner: bytes) -> list[int]:
        """The connections still open whose client spoke first with `banner`."""
        return [n for n, (client, _) in sorted(self._by_number.items())
                if client.fileno() != -1 and self.banners.get(n, b"").startswith(banner)]

    def close(self) -> None:
        self._stop.set()
        self._srv.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass


if __name__ == "__main__":  # run inside a network namespace: `python faultproxy.py LISTEN_HOST PORT UP_HOST UP_PORT`
    import sys
    import time

    host, port, up_host, up_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    p = FaultProxy((up_host, up_port), host=host)
    print(p.port, flush=True)
    while True:
        time.sleep(3600)
