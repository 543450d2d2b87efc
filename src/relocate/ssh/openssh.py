"""Bulk streams through the OpenSSH client binary, with paramiko's trust decision.

Why: paramiko encrypts in Python and tops out near 170-200 MiB/s here whatever the
number of channels (the GIL), while `ssh` does 400 MiB/s on the same loopback; the
bulk lanes are the one place that matters (issue 6, "SSH write <= 1.1x OpenSSH").
It also takes the bulk bytes off paramiko's re-key hazard (DESIGN.md).

How trust is kept: the host key is the one paramiko already checked (pin or
known_hosts, in connection.py) and goes into a private known_hosts file with
StrictHostKeyChecking=yes, so ssh refuses anything else. `-F /dev/null` ignores
~/.ssh/config (the endpoint was already resolved from it); BatchMode never prompts.
Where this cannot work (no `ssh` binary, a `via:` tunnel, a key that needs a
passphrase) the probe fails and the lanes stay on paramiko.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from typing import IO

from relocate.errors import HostKeyError, TransientError
from relocate.ssh.connection import Connection, Draining, Result, log, shorten

_CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr"
ALIAS = "relocate-target"


PIPE_BYTES = 1 << 20


def widen_pipe(pipe: IO[bytes] | None) -> None:
    """A 1 MiB pipe to ssh instead of Linux's 64 KiB: each 1 MiB chunk then goes in one
    write instead of sixteen wake-ups of the writer and of ssh (best effort; Linux only)."""
    if pipe is None:
        return
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (OSError, ImportError, ValueError):  # not Linux, or over the user's pipe quota: keep 64 KiB
        pass


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, SIGKILL the master when relocate dies
    (kill -9 included), so no orphaned connection outlives the move."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class OpenSshExec(Draining):
    """A remote command run by `ssh`: the same write/wait surface as connection.Exec."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        widen_pipe(self.proc.stdin)
        out, err = self.proc.stdout, self.proc.stderr
        assert out is not None and err is not None
        self._start_drains(lambda: out.read(1 << 16), lambda: err.read(1 << 16))

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                n = self.proc.stdin.write(view)  # type: ignore[union-attr]
                view = view[n or 0:]
        except (OSError, ValueError):
            raise TransientError(f"connection lost while writing to the target ({self._last_err() or 'ssh exited'})",
                                 hint="running again resumes") from None

    def _last_err(self) -> str:
        lines = b"".join(self._err).decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def wait(self, timeout: float | None = None) -> Result:
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TransientError("the target did not report an exit status (connection lost?)", hint="running again resumes") from None
        for t in self._readers:
            t.join(5)
        err = b"".join(self._err)
        if status == 255:  # ssh's own failure (connection, auth), not the remote command's
            raise TransientError(f"ssh to the target failed: {self._last_err() or 'exit 255'}", hint="running again resumes")
        return Result(status, self._out.value(), err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Master:
    """One `ssh -M -N` connection; commands multiplex over it (a channel costs ~ms, a
    handshake ~200 ms here). Killing it is how a lane drops its connection."""

    def __init__(self, argv: list[str], path: str, host: str, timeout: float = 20.0, wait: bool = True) -> None:
        self.path = path
        self.proc = subprocess.Popen([*argv, "-M", "-N", "-o", f"ControlPath={path}", "--", host],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=_die_with_parent)
        self.deadline = time.monotonic() + timeout
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Until the login is done (the control socket exists); raises what it failed with."""
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.monotonic() > self.deadline:
                err = self.proc.stderr.read().decode("utf-8", "replace").strip() if self.proc.poll() is not None else ""  # type: ignore[union-attr]
                self.close()
                if "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
                    # The key changed since relocate's own check at the start: never retry that.
                    raise HostKeyError("the target's host key changed during the move: refusing (possible man-in-the-middle)")
                raise TransientError(f"ssh to the target failed: {err.splitlines()[-1] if err else 'no connection'}",
                                     hint="running again resumes")
            time.sleep(0.01)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


_STATE_DIR = re.compile(r"relocate-ssh-(\d+)-[A-Za-z0-9_]+")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True


def sweep_stale(tmp: str | None = None) -> list[str]:
    """Remove the state directories (a pinned known_hosts, dead control sockets) of
    relocate runs that were killed: kill -9 gives a run no chance to remove its own. Only
    directories of ours, named after a pid that no longer runs; never a symlink."""
    tmp = tmp or tempfile.gettempdir()
    gone: list[str] = []
    try:
        names = os.listdir(tmp)
    except OSError:
        return gone
    for name in names:
        m = _STATE_DIR.fullmatch(name)
        if m is None or int(m.group(1)) == os.getpid() or _running(int(m.group(1))):
            continue
        path = os.path.join(tmp, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
            gone.append(path)
    return gone


class OpenSsh:
    """Starts commands on the endpoint of `conn` through `ssh`, pinned to its host key."""

    def __init__(self, conn: Connection) -> None:
        ep = conn.endpoint
        key = conn.transport.get_remote_server_key()  # already checked by connection.check_host_key
        sweep_stale()
        self._dir = tempfile.mkdtemp(prefix=f"relocate-ssh-{os.getpid()}-")
        known = os.path.join(self._dir, "known_hosts")
        with open(known, "w") as fh:
            fh.write(f"{ALIAS} {key.get_name()} {key.get_base64()}\n")
        self.argv = [shutil.which("ssh") or "ssh", "-F", "/dev/null", "-T", "-x", "-a", "-e", "none",
                     "-p", str(ep.port), "-l", ep.user, "-c", _CIPHERS,
                     "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
                     "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"HostKeyAlias={ALIAS}",
                     "-o", f"HostKeyAlgorithms={key.get_name()}", "-o", "ConnectTimeout=15",
                     "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", "-o", "Compression=no",
                     "-o", "LogLevel=ERROR"]
        for path in ep.identity_files:
            self.argv += ["-i", path]
        if ep.identity_files:
            self.argv += ["-o", "IdentitiesOnly=yes"]
        self.host = ep.hostname
        self._ids = itertools.count()
        self.first: Master | None = None  # the probe's connection, the first lane's
        self.spare: list[Master] = []  # logins started ahead for the other lanes
        self._all: list[Master] = []
        self._taken: set[Master] = set()

    @classmethod
    def started(cls, conn: Connection) -> "OpenSsh | None":
        """An OpenSsh with one login started, not waited for (a single stream's: host files,
        a database dump); None where `ssh` cannot serve (a `via:` tunnel, no binary)."""
        if not cls._usable(conn):
            return None
        try:
            bulk = cls(conn)
            bulk.first = bulk.master(wait=False)
        except OSError:
            return None
        return bulk

    def ready(self) -> bool:
        """Whether that login succeeded (waits for it); closed when it did not."""
        try:
            assert self.first is not None
            self.first.wait_ready()
            return True
        except TransientError:
            self.close()
            return False

    def master(self, wait: bool = True) -> Master:
        """A new master connection (one per lane, and a fresh one per retry)."""
        m = Master(self.argv, os.path.join(self._dir, f"m{next(self._ids)}"), self.host, wait=wait)
        self._all.append(m)
        return m

    def take(self) -> Master:
        """A lane's connection, its login possibly still under way (Master.wait_ready):
        the probe's, then those prestarted, then a new one started now without waiting,
        so the lanes' handshakes overlap each other."""
        if self.first is not None and self.first not in self._taken:
            self._taken.add(self.first)
            return self.first
        if self.spare:
            return self.spare.pop()
        return self.master(wait=False)

    @staticmethod
    def _usable(conn: Connection) -> bool:
        # RELOCATE_BULK_SSH=paramiko (read by the CLI: settings.Login.openssh) keeps every
        # stream, bulk lanes and single streams alike, on paramiko.
        return shutil.which("ssh") is not None and conn.via is None and conn.login.openssh

    @classmethod
    def prestart(cls, conn: Connection, count: int = 1) -> None:
        """Begin `count` bulk logins now without waiting for them (`move` calls this as
        soon as relocate's own host-key check passed, so the handshakes overlap the S3
        listing); the next probe(conn) picks them up. Called from the thread that lives
        longest (a master dies with the thread that started it: PR_SET_PDEATHSIG)."""
        if not cls._usable(conn) or conn.bulk_pending is not None:
            return
        bulk = cls(conn)
        try:
            bulk.first = bulk.master(wait=False)
            bulk.spare = [bulk.master(wait=False) for _ in range(count - 1)]
        except OSError:
            bulk.close()
            return
        conn.bulk_pending = bulk

    @staticmethod
    def discard(conn: Connection) -> None:
        """Close a prestarted login nobody used."""
        bulk, conn.bulk_pending = conn.bulk_pending, None
        if bulk is not None:
            bulk.close()

    @classmethod
    def probe(cls, conn: Connection, count: int = 1) -> "OpenSsh | None":
        """An OpenSsh for conn's endpoint when `ssh` can log in non-interactively; else None.
        Its logins are kept for the lanes (`take`): a handshake costs ~0.2-0.3 s here, as
        much as a small batch, so the `count` of them run side by side."""
        if not cls._usable(conn):
            return None
        pending, conn.bulk_pending = conn.bulk_pending, None
        if pending is not None:  # prestarted; if it died meanwhile, log in again below
            try:
                assert pending.first is not None
                pending.first.wait_ready()
                if pending.start("true", pending.first).wait(30).status == 0:
                    return pending
            except TransientError:
                pass
            except BaseException:  # HostKeyError
                pending.close()
                raise
            pending.close()
        bulk = cls(conn)
        try:
            bulk.first = bulk.master(wait=False)
            bulk.spare = [bulk.master(wait=False) for _ in range(count - 1)]
            bulk.first.wait_ready()
            result = bulk.start("true", bulk.first).wait(30)
        except (TransientError, OSError):
            bulk.close()
            return None
        except BaseException:  # HostKeyError: the key changed since relocate's own check
            bulk.close()
            raise
        if result.status != 0:
            bulk.close()
            return None
        return bulk

    def start(self, command: str, master: Master | None = None) -> OpenSshExec:
        mux = ["-o", f"ControlPath={master.path}", "-o", "ControlMaster=no"] if master is not None else []
        log.debug("ssh %s: %s", self.host, shorten(command))
        try:
            return OpenSshExec([*self.argv, *mux, "--", self.host, command])
        except OSError as exc:
            raise TransientError(f"cannot run ssh ({exc})", hint="running again resumes") from None

    def close(self) -> None:
        self.first, self.spare = None, []
        for m in self._all:
            m.close()
        self._all.clear()
        shutil.rmtree(self._dir, ignore_errors=True)
