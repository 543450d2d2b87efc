"""HTTP health checks through an SSH tunnel: the app's port never has to be public.

The request goes over a direct-tcpip channel opened on the target's SSH
connection to the URL's host:port as the target sees it (like `ssh -L`), so
`http://127.0.0.1:8080/healthz` means the target's own loopback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from relocate.ssh.connection import LINK_ERRORS, Connection

READ_LIMIT = 1 << 20


@dataclass
class HttpResult:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400


def http_get(conn: Connection, url: str, timeout: float = 5.0) -> HttpResult:
    """One GET through the tunnel. Raises OSError when nothing answers."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    chan = conn.open_tunnel(host, port)
    try:
        chan.settimeout(timeout)
        request = f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nUser-Agent: relocate-health\r\nConnection: close\r\n\r\n"
        chan.sendall(request.encode("ascii"))
        data = b""
        while len(data) < READ_LIMIT:
            chunk = chan.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        raise
    except LINK_ERRORS as exc:
        raise OSError(f"tunnel to {host}:{port} failed ({exc})") from None
    finally:
        chan.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/") or not status_line[1].isdigit():
        raise OSError(f"{url}: not an HTTP response ({head[:60]!r})")
    return HttpResult(int(status_line[1]), body)


def wait_healthy(conn: Connection, url: str, timeout_s: float, interval: float = 0.5,
                 gone: Callable[[], str | None] | None = None) -> tuple[bool, str]:
    """Retry until a 2xx/3xx answer or the timeout; (healthy, what was seen last).

    `gone`, asked after each attempt without an answer, says why waiting longer is
    pointless (the app's process has exited) or None: then the wait ends there."""
    deadline = time.monotonic() + timeout_s
    last = "no attempt"
    while True:
        try:
            r = http_get(conn, url, timeout=min(5.0, max(timeout_s, 1.0)))
            if r.ok:
                return True, f"HTTP {r.status}"
            last = f"HTTP {r.status}"
        except OSError as exc:
            last = str(exc)
        if gone is not None:
            why = gone()
            if why:
                return False, f"{why} (last try: {last})"
        if time.monotonic() >= deadline:
            return False, last
        time.sleep(interval)
