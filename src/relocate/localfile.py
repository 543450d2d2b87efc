"""Files relocate writes on this machine (init's relocate.yaml, `plan -o`, `discover -o`,
`shards emit -o`, a snapshot's manifest): one way to write them whole, one error for a
place that cannot take them.

A missing directory, a file where the directory should be, a read-only or special file
system (/proc) is the user's input to fix, not a bug: exit 2 with one line naming the
path (`PATH: cannot write (No such file or directory)`), and never a half-written file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from relocate.errors import ConfigError


def cannot_write(path: Path, exc: OSError) -> ConfigError:
    """The one message every local writer gives (strerror only: the temporary's name
    in OSError's text is an implementation detail the user did not choose)."""
    return ConfigError(f"{path}: cannot write ({exc.strerror or exc})")


def stage(path: Path, chunks: Iterable[str], *, mode: int = 0o644, errors: str = "strict") -> Path:
    """Write `chunks` completely (fsynced, with `mode`) into a new temporary beside `path`
    and return it; the caller renames it into place with `commit`. On any failure the
    temporary is removed and ConfigError raised: nothing half written is left. `errors`:
    how what UTF-8 cannot encode is written (open()'s; JSON's escape: jsonenc.JSON_ERRORS)."""
    try:
        # mkstemp: a name of its own (two writers never share a temporary), O_EXCL.
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors=errors) as fh:
            fh.writelines(chunks)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise cannot_write(path, exc) from None
        raise
    return tmp


def commit(tmp: Path, path: Path) -> None:
    """Rename a staged temporary onto `path` (atomic: readers see the old or the new file)."""
    try:
        os.replace(tmp, path)
    except OSError as exc:  # e.g. `path` is a directory
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, exc) from None


def write_atomic(path: Path, chunks: Iterable[str], *, mode: int = 0o644, errors: str = "strict") -> None:
    """`path` holds all of `chunks` or is unchanged."""
    commit(stage(path, chunks, mode=mode, errors=errors), path)


def check_writable(path: Path) -> None:
    """Before slow work whose result goes to `path` (a whole `plan` before `-o`): fail now,
    the same way the write would, rather than after. A real probe (a temporary created and
    removed in the directory), since os.access ignores read-only mounts and /proc."""
    if path.is_dir():
        raise ConfigError(f"{path}: cannot write (Is a directory)")
    stage(path, ()).unlink(missing_ok=True)


def check_usable(path: Path, field: str, *, directory: bool) -> None:
    """Before a move changes anything: `path` (relocate.yaml's `field`: snapshot.dir, a
    directory; snapshot.key_file, a file) can be used where it is, or made later, checked
    without making anything (`plan` writes nothing here). Else exit 2 naming the field: a
    file where a directory must go (`/tmp/x/afile/snap` with `afile` a plain file) once
    surfaced as an internal error after the move had taken the target's lock."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{field}: {path}: {why}")

    try:
        if os.path.lexists(path):
            if directory and not path.is_dir():
                raise bad("not a directory")
            if not directory and path.is_dir():
                raise bad("is a directory, not a file")
            if directory and not _writable_dir(path):
                raise bad("not writable")
            if not directory and not os.access(path, os.R_OK):
                raise bad("cannot be read")
            return
        # What is missing is made by mkdir -p: every existing component on the way must be a
        # directory (lexists: a dangling symlink is no directory), the nearest one writable.
        parent = path.parent
        while not os.path.lexists(parent):
            parent = parent.parent
        if not parent.is_dir():
            raise bad(f"cannot be created ({parent} is not a directory)")
        if not _writable_dir(parent):
            raise bad(f"cannot be created ({parent} is not writable)")
    except OSError as exc:  # EACCES on the way, ELOOP, ...
        raise bad(f"cannot be used ({exc.strerror or exc})") from None


def _writable_dir(path: Path) -> bool:
    """Whether this process may create entries in the directory `path` (os.access does not
    know a read-only mount: statvfs does)."""
    return os.access(path, os.W_OK | os.X_OK) and not os.statvfs(path).f_flag & os.ST_RDONLY
