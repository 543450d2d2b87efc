"""Credential files for database clients, here and on the target.

Passwords reach pg_dump/psql/mysqldump/mysql only through a 0600 file named in the
child's environment or by an option (PGPASSFILE, --defaults-extra-file): never argv,
where `ps` shows them, and never an env var on the remote side (sshd drops them).
Here, each file lives only as long as the `with` block that needs it. On the target,
each client's file lives exactly as long as the client (`RemoteSecret`): no named
file holds a secret there, even when relocate is killed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from relocate.errors import TransientError
from relocate.secret import Secret
from relocate.targets import nolinks
from relocate.ssh.connection import Connection

T = TypeVar("T")


@contextmanager
def local_secret_file(content: bytes, suffix: str = "") -> Iterator[Path]:
    """A 0600 file in a private 0700 temp dir, removed on exit even after an error."""
    d = Path(tempfile.mkdtemp(prefix="relocate-db-"))
    path = d / f"credentials{suffix}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        yield path
    finally:
        shutil.rmtree(d, ignore_errors=True)


# The name shape of a target credential file (`RemoteSecret`), as a sh glob.
_NAME_GLOB = ".relocate-db-" + "[0-9a-f]" * 16

# Run on the target in front of every database client. The credentials are the first
# $2 bytes of the command's stdin (the rest is the client's own input). The shell
# creates the file $1 exclusively (`set -C`: never an existing file or a link; umask
# 077: 0600 from its first byte), keeps it open as fd 3 and removes its name BEFORE
# writing the credentials into it; the client reads them as /dev/fd/3 (Linux reopens
# the unlinked file, libpq at each connection start, mysql once), and the kernel frees
# them when the client exits. So a move killed at any moment, even `kill -9` here,
# leaves no credential file on the target. Versions before this one kept a named file
# for a whole session, and a killed move left it in the login's home: each command
# first removes such leftovers, only that exact name shape, only plain files the login
# owns (a link or someone else's file is left alone).
_WITH_SECRET_SH = (
    f"for o in {_NAME_GLOB}.pgpass {_NAME_GLOB}.cnf; do\n"
    '  if [ -f "$o" ] && [ ! -h "$o" ] && [ -O "$o" ]; then rm -f -- "$o"; fi\n'
    "done\n"
    'umask 077; set -C; f=$1; n=$2; shift 2\n'
    'exec 3>"$f"\n'
    'rm -f -- "$f"\n'
    'dd bs=1 count="$n" 2>/dev/null >&3 || exit 125\n'
    'exec "$@"\n')
SECRET_FD = "/dev/fd/3"  # where the wrapped client finds its credential file


class RemoteSecret:
    """Credentials for database clients run on the target: `argv` wraps a client's command
    in `_WITH_SECRET_SH`, and that command's stdin must begin with `stdin()`'s bytes
    (dd reads them one byte at a time, so not one byte of the client's input is taken)."""

    def __init__(self, content: bytes, suffix: str) -> None:
        self._content = Secret(content.decode("utf-8"))
        self._suffix = suffix

    def argv(self, client: list[str]) -> list[str]:
        name = f".relocate-db-{secrets.token_hex(8)}{self._suffix}"  # relative: the exec's cwd is the login's home
        size = len(self._content.reveal().encode("utf-8"))
        return ["sh", "-c", _WITH_SECRET_SH, "relocate-db", name, str(size), *client]

    def stdin(self, data: bytes = b"") -> bytes:
        return self._content.reveal().encode("utf-8") + data


def pgpass_line(password: str) -> bytes:
    """A ~/.pgpass line matching any server/database/user (the file is used for one login)."""
    if "\n" in password or "\r" in password:
        raise ValueError("a password with a line break cannot go in a pgpass file")
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n".encode()


def mysql_defaults(user: str, password: str, host: str, port: int) -> bytes:
    """A [client] option file; values double-quoted with the escapes MySQL documents."""
    def q(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return (f"[client]\nuser={q(user)}\npassword={q(password)}\nhost={q(host)}\nport={port}\n"
            "protocol=tcp\n").encode()


def classify(stderr: str) -> str:
    """What a client's failure means: auth | unreachable | missing-db | other."""
    low = stderr.lower()
    if "password authentication failed" in low or "access denied for user" in low or "no password supplied" in low:
        return "auth"
    if any(s in low for s in ("connection refused", "could not connect", "can't connect", "timeout expired",
                              "no route to host", "could not translate host name", "unknown mysql server host",
                              "server closed the connection")):
        return "unreachable"
    if "does not exist" in low and "database" in low or "unknown database" in low:
        return "missing-db"
    return "other"


def last_line(stderr: str) -> str:
    # libpq appends "password retrieved from file <our temp path>": noise that names a temp file.
    lines = [ln.strip() for ln in stderr.strip().splitlines()
             if ln.strip() and not ln.strip().startswith("password retrieved from file")]
    return lines[-1] if lines else "no message"


def pipe_to_target(local_argv: list[str], env: dict[str, str], conn: Connection, remote_cmd: str,
                   local_error: Callable[[str], Exception], remote_error: Callable[[str], Exception],
                   chunk: int = 1 << 20, line_filter: Callable[[bytes], bytes] | None = None,
                   head: bytes = b"", tail: bytes = b"", output: list[bytes] | None = None) -> int:
    """Run `local_argv` here and stream its stdout into `remote_cmd`'s stdin on the target
    (the `pg_dump | ssh pg_restore` pipe, without a shell on either side). Returns bytes sent.
    `line_filter`, when given, rewrites the stream line by line (a text dump) on the way.
    `head` and `tail` are sent before and after the stream (a transaction around a SQL
    dump); `output`, when given, receives the remote command's stdout.
    stderr goes to a temp file so a chatty child cannot block on a full pipe."""
    remote = conn.start(remote_cmd)
    try:
        sent = 0
        if head:
            remote.write(head)
        with tempfile.TemporaryFile() as errf:
            local = subprocess.Popen(local_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf, env=env)
            assert local.stdout is not None
            broken: Exception | None = None
            try:
                if line_filter is None:
                    while data := local.stdout.read(chunk):
                        remote.write(data)
                        sent += len(data)
                else:
                    pending: list[bytes] = []
                    size = 0
                    for line in local.stdout:
                        line = line_filter(line)
                        pending.append(line)
                        size += len(line)
                        if size >= chunk:
                            remote.write(b"".join(pending))
                            sent, pending, size = sent + size, [], 0
                    if pending:
                        remote.write(b"".join(pending))
                        sent += size
            except TransientError as exc:  # the remote side went away: its stderr says why
                broken = exc
                local.kill()
            finally:
                local.stdout.close()
                local.wait()
            if tail and broken is None and local.returncode == 0:
                try:
                    remote.write(tail)
                except TransientError as exc:
                    broken = exc
            result = remote.wait(None)
            if output is not None:
                output.append(result.stdout)
            errf.seek(0)
            local_err = errf.read().decode("utf-8", "replace")
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM) or failed before the target's command ended: close
        # its channel now rather than when the connection goes, or it goes on holding what
        # it holds (a MySQL restore's LOCK TABLES ... WRITE) while the caller cleans up.
        remote.kill()
        raise
    if local.returncode != 0 and broken is None:
        raise local_error(local_err)
    if result.status != 0:
        refused = nolinks.refusal(result.status, result.stderr)
        if refused is not None:
            raise refused
        raise remote_error(result.stderr.decode("utf-8", "replace"))
    if broken is not None:
        raise broken
    return sent


@contextmanager
def in_background(work: Callable[[], T], *, on_abort: Callable[[], None],
                  name: str = "relocate-source-stats") -> Iterator[Callable[[], T]]:
    """Run `work` on a thread while the `with` body runs (source statistics alongside
    the dump). The yielded getter joins the thread and returns its result, re-raising
    its exception on the caller's thread; if the body fails, `on_abort` stops the work."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()

    def outcome() -> T:
        worker.join()
        if "error" in box:
            raise box["error"]
        value: T = box["value"]  # run() stored work()'s result
        return value

    try:
        yield outcome
    except BaseException:
        on_abort()
        worker.join()
        raise
    worker.join()
