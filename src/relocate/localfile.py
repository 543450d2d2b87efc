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
