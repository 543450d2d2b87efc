"""File operations on a target, as remote commands (tokens quoted by `shell`) or SFTP."""

from __future__ import annotations

import posixpath
import stat as statmod

import paramiko

from relocate.errors import TargetError, TransientError
from relocate.targets import shell
from relocate.targets.ssh import Connection

_LIST_SIZES = r"""
[ -d "$1" ] || exit 0
cd "$1" && find . -type f -printf '%s\t%P\0'
"""

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


def list_sizes(conn: Connection, directory: str) -> dict[str, int]:
    """{path relative to directory: size} for every regular file below it."""
    cmd, stdin = shell.script(_LIST_SIZES, directory)
    out = conn.run(cmd, stdin, timeout=3600).stdout
    sizes: dict[str, int] = {}
    for rec in out.split(b"\0"):
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
    out, _, lines = out.partition(b"\x01")
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
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise TransientError(f"reading {path} on the target failed ({exc})", hint="running again resumes") from None


def mkdirs(conn: Connection, *paths: str) -> None:
    conn.run(shell.line(["mkdir", "-p", "--", *paths]))


def write_file_atomic(conn: Connection, path: str, data: bytes, mode: int = 0o600) -> None:
    """Write to a temporary name created with `mode` before any byte is written, then
    rename over `path`: a reader sees the old file or the new one, never half of one."""
    sftp = conn.sftp()
    tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.relocate-tmp")
    try:
        try:
            sftp.remove(tmp)
        except FileNotFoundError:
            pass
        with sftp.open(tmp, "wbx") as fh:
            fh.chmod(mode)
            fh.write(data)
        sftp.posix_rename(tmp, path)
    except PermissionError:
        raise TargetError(f"cannot write {path} on the target: permission denied") from None
    except (OSError, paramiko.SSHException, EOFError) as exc:
        try:
            sftp.remove(tmp)
        except Exception:
            pass
        raise TransientError(f"writing {path} on the target failed ({exc})", hint="running again resumes") from None
