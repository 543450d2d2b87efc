"""The target's move lock and its append-only audit log, both under root/.relocate/.

Lock: `mkdir root/.relocate/lock` is atomic on every POSIX filesystem, so of two
moves (or a move and a rollback) exactly one gets it; the winner writes
`lock/owner` (who, host, pid, since, what). A second one is refused (exit 6) naming
the holder.

Stale locks: a move killed with SIGKILL or a dropped connection leaves the lock
behind. relocate takes it over by itself only when it can prove the holder is dead:
the owner file names this same machine and that pid no longer runs. Otherwise the
refusal says which host/pid holds it and how to clear it by hand
(`rm -r ROOT/.relocate/lock` on the target, after making sure no move runs).

Audit log: `root/.relocate/audit.log`, one JSON object per line, appended with
`>>` (O_APPEND): when, who, what (action, counts, env file *paths*), which release.
Never values: callers pass only names and counts.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import posixpath
import socket
from dataclasses import dataclass, field
from typing import Any, Sequence

from relocate.errors import SafetyError, TargetError
from relocate.targets import layout, nolinks, shell
from relocate.ssh.connection import Connection


# mkdir is the test-and-set; the owner file is written only by the winner, which then
# runs the caller's first commands (`then`: an audit line, its staging dir) in the same
# remote command. If one fails, the lock goes again and the script exits with its status:
# a start that failed never leaves the lock held. Never a lock or owner file through a
# symlinked directory (nolinks.py): refused with its status before anything is made.
_TAKE = nolinks.NOLINKS_FN + r"""
dir=$1 owner=$2; r=$3 a=$4; shift 4
relocate_nolinks "$r" "$a" "$dir" || exit 86
mkdir -p -- "$(dirname -- "$dir")" 2>/dev/null
if mkdir -- "$dir" 2>/dev/null; then printf '%s\n' "$owner" > "$dir/owner"; echo taken
elif [ -d "$dir" ]; then cat -- "$dir/owner" 2>/dev/null || echo '{}'; exit 0
else printf 'cannot-create\t'; mkdir -- "$dir" 2>&1 | tail -n 1; exit 0; fi
"""
# The caller's last commands (`before_release`: its staging dir cleared, an audit line),
# then the lock removed, in one remote command; the first failure's status is the exit
# status, and the lock goes whatever failed.
_RELEASE = r"""
dir=$1
s=0
"""
_RELEASE_END = r"""rm -rf -- "$dir"
exit "$s"
"""


def _in_script(commands: Sequence[str], then: str) -> str:
    """The caller's commands (remote command lines, every token quoted by shell.line) as
    lines of the script itself, each followed by `then`: they travel on the script's
    stdin, not as arguments. An audit line names every step and change of the plan: with
    hundreds of bucket entries, on the command line that was `Argument list too long`."""
    return "".join(f"{{ {c}\n}}{then}\n" for c in commands)


def who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine with that pid runs (one of another user counts)."""
    if pid <= 0:
        return False  # 0 and -N name process groups to kill(), not a process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class TargetLock:
    conn: Connection
    root: str
    action: str = "move"
    # A shard worker's lock (shards/worker.py) lives elsewhere, and may be taken over when
    # its owner file was not touched for `stale_s` seconds: a Kubernetes pod that died
    # leaves it from a host name that never comes back (the holder touches it every chunk).
    where: str = ""
    stale_s: float | None = None
    # Remote command lines (shell.line, nolinks.guarded) run right after the lock is taken,
    # and right before it is removed, each in the lock's own remote command: a move with
    # nothing to do asks the target three times in all, not eight (issue 18).
    then: Sequence[str] = ()
    before_release: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.where or posixpath.join(layout.state_dir(self.root), "lock")

    def __enter__(self) -> "TargetLock":
        owner = {"who": who(), "host": socket.gethostname(), "pid": os.getpid(), "since": _now(), "action": self.action}
        for _attempt in range(2):
            cmd, body = shell.script(_TAKE + _in_script(self.then, ' >&2 || { s=$?; rm -rf -- "$dir"; exit "$s"; }'),
                                     self.path, json.dumps(owner), nolinks.root_arg(self.root), nolinks.allow_arg(()))
            out = self.conn.run(cmd, body, timeout=600).text().strip()
            if out == "taken":
                return self
            if out.startswith("cannot-create"):  # not a lock held: the root is not writable
                raise TargetError(f"cannot create the lock {self.path} on the target: {out.partition(chr(9))[2] or 'permission denied'}",
                                  hint="make target.root writable by the login user")
            try:
                holder = json.loads(out or "{}")
            except ValueError:
                holder = {}
            if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) and not pid_alive(holder["pid"]):
                # Provably stale: the holder was a process on this machine that is gone.
                self.conn.run(shell.line(["rm", "-rf", "--", self.path]))
                continue
            if self.stale_s is not None and self._age() > self.stale_s:
                self.conn.run(shell.line(["rm", "-rf", "--", self.path]))
                continue
            desc = (f"{holder.get('who', '?')} (pid {holder.get('pid', '?')}, {holder.get('action', 'move')} since "
                    f"{holder.get('since', '?')})") if holder else "an unknown holder (no owner file)"
            raise SafetyError(f"the target is locked by {desc}: another relocate move or rollback is running",
                              hint=f"wait for it; if none runs any more, remove {self.path} on the target")
        raise SafetyError(f"could not take the lock {self.path} on the target")

    def _age(self) -> float:
        """Seconds since the owner file was last touched, by the target's own clock."""
        cmd, body = shell.script(_AGE, posixpath.join(self.path, "owner"))
        try:
            return float(self.conn.run(cmd, body, timeout=60).text().strip() or 0)
        except ValueError:
            return 0.0

    def touch(self) -> None:
        """The holder is alive (see stale_s)."""
        self.conn.run(shell.line(["touch", "-c", "--", posixpath.join(self.path, "owner")]), timeout=60, check=False)

    def __exit__(self, exc_type: object, *exc: object) -> None:
        last = self.before_release
        try:
            cmd, body = shell.script(_RELEASE + _in_script(last, '; e=$?; [ "$s" -ne 0 ] || s=$e') + _RELEASE_END, self.path)
            self.conn.run(cmd, body, timeout=600)
        except Exception:  # a dropped connection leaves a lock the owner file explains
            if last and exc_type is None:
                raise  # the caller's last commands failed: that is the outcome (the original error wins otherwise)


def audit(conn: Connection, root: str, action: str, **fields: Any) -> None:
    """Append one line to root/.relocate/audit.log. Pass names and counts, never values."""
    conn.run(audit_command(root, action, **fields), timeout=60)


def audit_command(root: str, action: str, **fields: Any) -> str:
    """The remote command line that appends audit's line (for TargetLock's then and
    before_release, which run it in the lock's own remote command)."""
    entry = {"at": _now(), "who": who(), "action": action, **fields}
    path = posixpath.join(layout.state_dir(root), "audit.log")
    # The line is an argument (it holds no secret); `>>` opens with O_APPEND, so
    # concurrent writers never overwrite each other's lines.
    cmd = shell.line(["sh", "-c", _APPEND, "sh", path, json.dumps(entry, ensure_ascii=False)])
    return nolinks.guarded(root, [path], cmd)  # `>>` would follow a symlinked .relocate or audit.log


_AGE = r"""
m=$(stat -c %Y -- "$1" 2>/dev/null) || { echo 0; exit 0; }
echo $(( $(date +%s) - m ))
"""

_APPEND = r"""
mkdir -p -- "$(dirname -- "$1")"
umask 027
printf '%s\n' "$2" >> "$1"
"""
