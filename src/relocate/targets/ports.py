"""Who listens on a TCP port of the target: the proof that a health check talks to the
release just started, not to an old process that kept the port.

Read from /proc (no ss, lsof or root needed): the LISTEN sockets of /proc/net/tcp and
tcp6 on the port, then the processes holding those socket inodes (GNU find -lname over
/proc/<pid>/fd) with their process group. A login sees the fds of its own processes
only (root sees all); a port held by a process it cannot see still counts as held.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from relocate.targets import shell
from relocate.ssh.connection import Connection

# relocate_holders PORT: prints "held" when a socket listens on it, then "pid pgid name" per
# visible holder ("unknown" instead when the host has no find to look with). A function
# whose body is a subshell, so its `exit` ends only it: the plan's deploy look
# (kinds/deploy.py) runs it inside a script of its own, in the same round trip.
HOLDERS_FN = r"""
relocate_holders() (
hex=$(printf '%04X' "$1")
inodes=
for f in /proc/net/tcp /proc/net/tcp6; do
  [ -r "$f" ] || continue
  while read -r _sl laddr _remote st _q _t _r _uid _to inode _rest; do
    [ "$st" = 0A ] && [ "${laddr##*:}" = "$hex" ] && inodes="$inodes $inode"
  done < "$f"
done
[ -n "$inodes" ] || exit 0
echo held
command -v find >/dev/null 2>&1 || { echo unknown; exit 0; }
for inode in $inodes; do
  find /proc/[0-9]*/fd -maxdepth 1 -lname "socket:\[$inode\]" 2>/dev/null
done | while IFS=/ read -r _ _proc pid _rest; do
  read -r stat 2>/dev/null < "/proc/$pid/stat" || continue
  rest=${stat##*)}
  name=${stat#*(}; name=${name%)*}
  set -- $rest
  echo "$pid $3 $name"
done | sort -u
)
"""
_HOLDERS = HOLDERS_FN + 'relocate_holders "$1"\n'


@dataclass
class Holders:
    held: bool
    procs: list[tuple[int, int]] = field(default_factory=list)  # (pid, process group) this login can see
    known: bool = True  # False: the holders could not be looked up (no find on the host)
    names: dict[int, str] = field(default_factory=dict)  # pid -> its command name (/proc/<pid>/stat), for messages

    def describe(self) -> str:
        if not self.held:
            return "nothing listens"
        seen = ", ".join(f"pid {pid} ({self.names[pid] + ', ' if self.names.get(pid) else ''}group {pgid})"
                         for pid, pgid in self.procs)
        return f"held by {seen}" if seen else "held by a process this login cannot see"


def local_port(url: str | None) -> int | None:
    """The port of a health URL that names the target itself (loopback, localhost,
    0.0.0.0): only then is "who listens on it" a question the target can answer."""
    if not url:
        return None
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        local = False
    return (parts.port or 80) if local else None


def holders(conn: Connection, port: int) -> Holders:
    cmd, stdin = shell.script(_HOLDERS, str(port))
    return parse_holders(conn.run(cmd, stdin, timeout=60).text())


def parse_holders(text: str) -> Holders:
    """relocate_holders' output."""
    lines = text.split("\n")
    procs, names = [], {}
    for raw in lines[1:]:
        pid, pgid, name = (raw.strip().split(" ", 2) + ["", ""])[:3]
        if pid.isdigit() and pgid.isdigit():
            procs.append((int(pid), int(pgid)))
            names[int(pid)] = name
    return Holders(lines[0].strip() == "held", procs, known="unknown" not in lines[1:2], names=names)


def wait_free(conn: Connection, port: int, timeout_s: float, interval: float = 0.2) -> Holders:
    """Poll until nothing listens on `port` or the timeout; returns the last look."""
    deadline = time.monotonic() + timeout_s
    while True:
        h = holders(conn, port)
        if not h.held or time.monotonic() >= deadline:
            return h
        time.sleep(interval)
