"""File operations on a target, as remote commands (tokens quoted by `shell`) or SFTP."""

from __future__ import annotations

import errno
import posixpath
import stat as statmod
from typing import Iterable, Sequence

from relocate.errors import ItemError, TargetError, TransientError
from relocate.ssh.connection import LINK_ERRORS, Connection
from relocate.ssh.sftp import create_exclusive, finish_writes
from relocate.targets import nolinks, shell

# relocate_sizes DIR: `size<TAB>path<NUL>` for every regular file below DIR (nothing when
# DIR is absent); also run by the target's probe (targets/facts.py) and the gather's
# records read (execute/gather.py), in the same script.
SIZES_FN = r"""
relocate_sizes() {
  [ -d "$1" ] || return 0
  (cd "$1" && find . -type f -printf '%s\t%P\0')
}
"""
_LIST_SIZES = SIZES_FN + 'relocate_sizes "$1"\n'

# sha256sum -z: NUL-terminated records with names unescaped; two workers use both cores.
# Each worker writes its own file: two sha256sum writing into one pipe interleave
# their 4 KiB stdio blocks mid-record (seen as "missing"/"differing" files in verify).
# HASH_CWD hashes the tree below the current directory; the bulk tar lanes append it
# to their `tar -x` so a batch is extracted and hashed in one remote command.
HASH_INTO_T = r"""
t=$(mktemp -d) || exit 1
trap 'rm -rf "$t"' EXIT
nl='
'
if command -v openssl >/dev/null 2>&1; then
  # openssl uses the CPU's SHA extensions: ~3.5x coreutils' sha256sum here. It escapes
  # names with a newline or backslash, so those few go to sha256sum -z instead.
  find . -type f ! -name "*$nl*" ! -name '*\\*' -print0 | xargs -0 -r -P 2 -n 512 sh -c 'exec openssl dgst -sha256 -r "$@" > "$0.$$"' "$t/o" || exit 1
  find . -type f \( -name "*$nl*" -o -name '*\\*' \) -print0 | xargs -0 -r -n 512 sh -c 'exec sha256sum -z -- "$@" > "$0.$$"' "$t/h" || exit 1
else
  find . -type f -print0 | xargs -0 -r -P 2 -n 512 sh -c 'exec sha256sum -z -- "$@" > "$0.$$"' "$t/h" || exit 1
fi
"""
# HASH_INTO_T leaves its results in "$t" (h.* sha256sum -z records, o.* openssl lines).
HASH_CWD = HASH_INTO_T + r"""for f in "$t"/h.*; do [ -e "$f" ] && cat "$f"; done
printf '\001'
for f in "$t"/o.*; do [ -e "$f" ] && cat "$f"; done
exit 0
"""
_HASH = r"""
[ -d "$1" ] || exit 0
cd "$1" || exit 1
""" + HASH_CWD


def over_items(head: str, each: str, args: Sequence[str], items: Iterable[str]) -> tuple[str, bytes]:
    """(command, stdin) for a remote script over any number of paths: HEAD runs with ARGS
    as its $1..., then EACH with ARGS followed by a batch of the items, as often as
    `xargs -0` needs, in order. The items travel NUL-separated on stdin, never on the
    command line: sshd hands the whole line to the login shell as one argument, so a
    relocate.yaml with hundreds of (long) paths there was `Argument list too long`, or
    past the SSH packet size a reset connection. The two scripts come first on stdin
    (their lengths on the command line; `dd bs=1` reads exactly that much of a pipe), as
    every script does (shell.script): only this small loader is on the command line.
    HEAD must not read stdin, nor shift or exit; the status is xargs' (non-zero when an
    EACH did not exit 0)."""
    first, then = head.encode(), each.encode()
    return (shell.line(["sh", "-c", _OVER_ITEMS, "sh", str(len(first)), str(len(then)), *args]),
            first + then + b"".join(i.encode("utf-8", "surrogateescape") + b"\0" for i in items))


# dd with bs=1 reads exactly so many bytes of a pipe, on any target: busybox's head -c
# reads through stdio and would swallow what follows (the items). A few KiB of scripts
# is a few thousand one-byte reads: milliseconds.
_OVER_ITEMS = ('h=$(dd bs=1 count="$1" 2>/dev/null) && e=$(dd bs=1 count="$2" 2>/dev/null) || exit 1; '
               'shift 2; eval "$h"; xargs -0 -r sh -c "$e" sh "$@"')


def list_sizes(conn: Connection, directory: str) -> dict[str, int]:
    """{path relative to directory: size} for every regular file below it."""
    cmd, stdin = shell.script(_LIST_SIZES, directory)
    return parse_sizes(conn.run(cmd, stdin, timeout=3600).stdout.split(b"\0"))


def parse_sizes(records: list[bytes]) -> dict[str, int]:
    """relocate_sizes' records (split at NUL; empty ones skipped) -> {path: size}."""
    sizes: dict[str, int] = {}
    for rec in records:
        if rec:
            size, _, name = rec.partition(b"\t")
            sizes[name.decode("utf-8", "surrogateescape")] = int(size)
    return sizes


def hash_tree(conn: Connection, directory: str, timeout: float | None = None) -> dict[str, str]:
    """{path relative to directory: sha256}, computed on the target."""
    cmd, stdin = shell.script(_HASH, directory)
    return parse_hashes(conn.run(cmd, stdin, timeout=timeout).stdout)


def tree_facts(conn: Connection, directory: str, *, hashes: bool) -> dict[str, str] | dict[str, int]:
    """hash_tree (every byte read on the target) or list_sizes (one `find`): the two ways
    relocate checks files already there, by sha256 or by size."""
    return hash_tree(conn, directory) if hashes else list_sizes(conn, directory)


def parse_hashes(out: bytes) -> dict[str, str]:
    """HASH_CWD's output -> {normalised relative path: hex digest}: `sha256sum -z`
    records, then \x01, then `openssl dgst -r` lines ("<hex> *<name>")."""
    hashes: dict[str, str] = {}
    # The separator is the \x01 that starts a record (a name may hold one too).
    out, lines = (b"", out[1:]) if out.startswith(b"\x01") else out.partition(b"\0\x01")[::2]
    for rec in lines.split(b"\n"):
        if rec:
            hashes[posixpath.normpath(rec[66:].decode("utf-8", "surrogateescape"))] = rec[:64].decode()
    for rec in out.split(b"\0"):
        if rec:
            digest, name = rec[:64].decode(), rec[66:].decode("utf-8", "surrogateescape")
            hashes[posixpath.normpath(name)] = digest
    return hashes


def read_file(conn: Connection, path: str) -> tuple[bytes, int] | None:
    """(content, mode) or None when absent."""
    sftp = conn.sftp()
    try:
        st = sftp.stat(path)
        with sftp.open(path, "rb") as fh:
            fh.prefetch(st.st_size)
            return fh.read(), statmod.S_IMODE(st.st_mode or 0)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise TargetError(f"cannot read {path} on the target: permission denied") from None
    except LINK_ERRORS as exc:
        raise TransientError(f"reading {path} on the target failed ({exc})", hint="running again resumes") from None


def mkdirs(conn: Connection, *paths: str) -> None:
    conn.run(shell.line(["mkdir", "-p", "--", *paths]))


def private_dir(conn: Connection, root: str, directory: str, mode: int, allow: Iterable[str] = ()) -> int | None:
    """Make `directory` (and missing parents) under root with `mode`, refusing symlinked
    components; an existing one below the root is set to `mode` (the env files' directory:
    0700 by default, `target.env_dir_mode`). The root itself is never changed. Returns
    the mode `directory` had when this set it to `mode` (None: made now, already right,
    or another user's), so the caller can say what it changed."""
    sftp = conn.sftp()
    nolinks.check_sftp(sftp, root, directory, allow)
    cur = root
    was: int | None = None
    try:
        for cur in nolinks.components(root, directory):
            try:
                st = sftp.lstat(cur)
            except FileNotFoundError:
                sftp.mkdir(cur, mode)  # the mode travels in the MKDIR request: never wider, not even briefly
                sftp.chmod(cur, mode)  # sftp-server's umask may have narrowed a wider user setting
                continue
            if cur == directory and statmod.S_IMODE(st.st_mode or 0) != mode:
                try:
                    sftp.chmod(cur, mode)
                    was = statmod.S_IMODE(st.st_mode or 0)
                except PermissionError:  # not the login user's: its owner decides (the file is 0600 anyway)
                    pass
    except PermissionError:  # an item that cannot be written, not the whole move's (the runner goes on: exit 4)
        raise ItemError(f"cannot create {cur} on the target: permission denied", hint=PERMISSION_HINT) from None
    except LINK_ERRORS as exc:
        raise TransientError(f"creating {cur} on the target failed ({exc})", hint="running again resumes") from None
    return was


def write_file_atomic(conn: Connection, path: str, data: bytes | Iterable[bytes], mode: int = 0o600, *,
                      root: str | None = None, allow: Iterable[str] = ()) -> None:
    """Write to a temporary name created with `mode` from its first byte (the mode is
    part of the SFTP OPEN request, O_EXCL), then rename over `path`: a reader sees the
    old file or the new one, never half of one, and no one else can open the temporary.
    With `root`, every directory component below it is checked (lstat) right before
    the write: a symlinked directory is refused (nolinks.py). A symlink at `path`
    itself is replaced by the rename, never followed. `data`: the bytes, or pieces of
    them (a sidecar of 100,000 objects is written as it is encoded, never whole)."""
    sftp = conn.sftp()
    tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.relocate-tmp")
    if root is not None:
        nolinks.check_sftp(sftp, root, posixpath.dirname(path), allow)
    try:
        try:
            if statmod.S_ISDIR(sftp.lstat(path).st_mode or 0):
                raise ItemError(f"cannot write {path} on the target: a directory is there",
                                hint="retrying will not help: fix the `to:` in relocate.yaml or remove the directory")
        except FileNotFoundError:
            pass
        try:
            sftp.remove(tmp)
        except FileNotFoundError:
            pass
        with create_exclusive(sftp, tmp, mode) as fh:
            fh.chmod(mode)  # the server's umask may have narrowed it; never widened before this
            # Writes go out without waiting for each one's answer (a sidecar of 10,000 objects
            # is 64 writes of 32 KiB: 64 round trips before, 0.03 s); every answer is read,
            # and a refused write raised, before the rename (finish_writes).
            fh.set_pipelined(True)
            for piece in [data] if isinstance(data, bytes) else data:
                fh.write(piece)
            finish_writes(fh)
        sftp.posix_rename(tmp, path)
    except PermissionError:
        try:
            sftp.remove(tmp)
        except Exception:
            pass
        raise ItemError(f"cannot write {path} on the target: permission denied", hint=PERMISSION_HINT) from None
    except LINK_ERRORS as exc:
        try:
            sftp.remove(tmp)
        except Exception:
            pass
        if isinstance(exc, OSError) and permanent_errno(exc):
            raise ItemError(f"cannot write {path} on the target: {exc.strerror or exc}",
                            hint="retrying will not help: fix the `to:` in relocate.yaml") from None
        raise TransientError(f"writing {path} on the target failed ({exc})", hint="running again resumes") from None


PERMISSION_HINT = "retrying will not help: give the login user write permission there, or change the `to:` in relocate.yaml"

# errno values that retrying cannot fix (a name too long, a file where a directory
# must be...): reported as a failed item (exit 4), never as transient (exit 5).
PERMANENT_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY,
                              errno.ELOOP, errno.EINVAL, errno.EROFS})


def permanent_errno(exc: OSError) -> bool:
    return exc.errno in PERMANENT_ERRNOS


# For a chunk of a shard: facts about named files only (a whole-tree `find` would read
# every shard's files). Paths come NUL-separated on stdin, relative to $1; a missing one
# is simply absent from the answer.
_SIZES_OF = r"""
cd "$1" 2>/dev/null || exit 0
LC_ALL=C xargs -0 -r stat --printf '%F\t%s\t%n\0' -- 2>/dev/null
exit 0
"""
_HASH_OF = r"""
cd "$1" 2>/dev/null || exit 0
xargs -0 -r sha256sum -z -- 2>/dev/null
exit 0
"""


def _named(conn: Connection, script: str, directory: str, rels: Iterable[str]) -> bytes:
    names = b"".join(r.encode("utf-8", "surrogateescape") + b"\0" for r in rels)
    # the script is an argument (`sh -c`), so stdin is the names alone
    return conn.run(shell.line(["sh", "-c", script, "sh", directory]), names, timeout=3600).stdout


def sizes_of(conn: Connection, directory: str, rels: Iterable[str]) -> dict[str, int]:
    """{rel: size} for those of `rels` that are regular files under directory."""
    out: dict[str, int] = {}
    for rec in _named(conn, _SIZES_OF, directory, rels).split(b"\0"):
        kind, _, rest = rec.partition(b"\t")
        if kind.startswith(b"regular"):
            size, _, name = rest.partition(b"\t")
            out[name.decode("utf-8", "surrogateescape")] = int(size)
    return out


def hashes_of(conn: Connection, directory: str, rels: Iterable[str]) -> dict[str, str]:
    """{rel: sha256} for those of `rels` that exist under directory, hashed on the target."""
    out: dict[str, str] = {}
    for rec in _named(conn, _HASH_OF, directory, rels).split(b"\0"):
        if len(rec) > 66:
            out[rec[66:].decode("utf-8", "surrogateescape")] = rec[:64].decode()
    return out
