"""A local TCP port forwarded through an SSH bastion (paramiko direct-tcpip), the
`ssh -L` that reaches a database in a private subnet.

The bastion is an ordinary `Connection`, so its host key is checked exactly like
the target's. Each accepted local connection gets its own channel and two pump
threads; pg_dump -j opens several connections at once, and each is independent.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import paramiko

from relocate.errors import TransientError
from relocate.ssh.connection import Connection
from relocate.ssh.via import SshSpec


def _pump(src: Any, dst: Any) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        for end in (dst, src):
            try:
                end.close()
            except Exception:
                pass


class Tunnel:
    """`with Tunnel(spec, host, port) as local_port:` forwards 127.0.0.1:local_port."""

    def __init__(self, spec: SshSpec, remote_host: str, remote_port: int, *, accept_new_host_key: bool = False) -> None:
        self.conn = Connection(spec, accept_new_host_key=accept_new_host_key)
        self.remote = (remote_host, remote_port)
        self._server: socket.socket | None = None
        self._stop = threading.Event()

    def __enter__(self) -> int:
        self.conn.connect()  # unreachable bastion / bad key: TransientError / HostKeyError here
        try:
            self._probe()
        except BaseException:
            self.conn.close()
            raise
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind(("127.0.0.1", 0))
        server.listen(32)
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()
        return int(server.getsockname()[1])

    def _open(self, origin: tuple[str, int]) -> paramiko.Channel:
        try:
            return self.conn.transport.open_channel("direct-tcpip", self.remote, origin, timeout=15)
        except (paramiko.ChannelException, paramiko.SSHException, OSError, EOFError) as exc:
            raise TransientError(
                f"the bastion {self.conn.endpoint} cannot reach {self.remote[0]}:{self.remote[1]} ({exc})",
                hint="check the database endpoint, its security group, and the bastion's AllowTcpForwarding") from None

    def _probe(self) -> None:
        """Fail early, in one clear line, if the bastion cannot open the forward at all."""
        self._open(("127.0.0.1", 0)).close()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, origin = self._server.accept()
            except OSError:
                return
            try:
                chan = self._open(origin)
            except TransientError:
                client.close()
                continue
            for a, b in ((client, chan), (chan, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
        self.conn.close()
