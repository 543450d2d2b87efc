"""Snapshot directories: `<dir>/<id>/manifest.json` (+ `secrets.age`, `objects/`).

A snapshot is written to `<id>.partial/` and renamed when complete, so `latest()`
never returns half a capture. A `.partial` whose move was killed (its dump, its object
copies: tens of MiB or more) is removed by the next `begin` in that directory: each
`.partial` holds a lock (flock on its `.lock`) for as long as its process lives, so one
whose lock can be taken has no writer left.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar, overload

from relocate import localfile
from relocate.errors import ConfigError
from relocate.snapshot.jsonenc import JSON_ERRORS, compact

MANIFEST_FORMAT = 1


def new_id() -> str:
    """Sortable by time (latest() relies on it) down to the millisecond, plus a random
    tail so two moves in the same millisecond (or process) never share a directory."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z-{secrets.token_hex(2)}"


T = TypeVar("T")


class Records(Sequence[dict[str, Any]]):
    """A list of records kept as typed values, each made a dict only when it is read: the
    manifest's and the sidecar's object entries. json_chunks encodes them a slice at a
    time, so a move no longer holds a dict per object from the sidecar's writing until
    the snapshot's (issue 18; with the pieces written as they come, 100,000 objects
    peaked at 293 MiB instead of 341)."""

    __slots__ = ("items", "as_dict")

    def __init__(self, items: Sequence[T], as_dict: Callable[[T], dict[str, Any]]) -> None:
        self.items: Sequence[Any] = items
        self.as_dict: Callable[[Any], dict[str, Any]] = as_dict

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return list(map(self.as_dict, self.items[index]))
        return self.as_dict(self.items[index])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (list, Records)) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so unhashable like one

    def __repr__(self) -> str:
        return f"Records({len(self)} records)"


def _as_list(value: Any) -> Any:
    """Records met inside a record (a bucket laid out on one line because the first was
    empty) are written as the list they stand for."""
    if type(value) is Records:
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# One record per call of the C encoder (snapshot/jsonenc.py), laid out as json.dumps does.
_compact = compact(ascii_only=False, separators=(", ", ": "), default=_as_list)


def _nested(value: Any) -> bool:
    """A list of records, or a mapping that holds one (at any depth): laid out a line per record."""
    if type(value) is list:
        return bool(value) and type(value[0]) is dict
    if type(value) is Records:
        return bool(value)
    return type(value) is dict and any(type(v) in (list, dict, Records) and _nested(v) for v in value.values())


# Records encoded and handed on together: a few hundred KiB of text at a time, so the
# whole document is never one string (nor, for the sidecar, one string and its bytes).
CHUNK_RECORDS = 1000


def json_chunks(data: Any, indent: str = "") -> Iterator[str]:
    """JSON for the manifest and the target's sidecars, one record (an object's entry)
    per line, in pieces. json.dump(indent=...) runs Python's own encoder, one call per
    value: for 5,000 objects 2.5x the CPU of this, where each record is one call of the
    C encoder; the file stays readable and diffable by line."""
    if not _nested(data):
        yield str(_compact(data))
        return
    inner = indent + " "
    if type(data) is list or type(data) is Records:
        if type(data) is Records or not _nested(data[0]):
            # Records of one shape (objects' entries): each in one C call, joined in C,
            # without asking every record whether it holds records (10,000 entries: 86 ->
            # 31 ms). A later record that does hold some is still valid JSON, on one line.
            sep = ",\n" + inner
            yield "[\n" + inner
            for start in range(0, len(data), CHUNK_RECORDS):
                piece = sep.join(map(_compact, data[start:start + CHUNK_RECORDS]))
                yield sep + piece if start else piece
            yield "\n" + indent + "]"
            return
        yield "["
        for i, v in enumerate(data):
            yield (",\n" if i else "\n") + inner
            yield from json_chunks(v, inner)
        yield "\n" + indent + "]"
        return
    yield "{"
    for i, (k, v) in enumerate(data.items()):
        yield f"{',' if i else ''}\n{inner}{_compact(k)}: "
        yield from json_chunks(v, inner)
    yield "\n" + indent + "}"


def write_json_atomic(path: Path, data: Any) -> None:
    """`data` as JSON at `path`, whole or not at all (exit 2 naming `path` when it cannot be
    written). A host file's name that is not UTF-8 is kept exactly, as JSON escapes (jsonenc)."""
    localfile.write_atomic(path, json_chunks(data), errors=JSON_ERRORS)


@dataclass
class Snapshot:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name.removesuffix(".partial")

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def secrets_path(self) -> Path:
        return self.path / "secrets.age"

    @property
    def objects_dir(self) -> Path:
        return self.path / "objects"

    def manifest(self, object_hook: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
        """`object_hook`: json.load's, e.g. manifest.entries_as_read, for a reader that
        wants the objects' entries typed (no dict per object held)."""
        try:
            with open(self.manifest_path, encoding="utf-8") as fh:
                data = json.load(fh, object_hook=object_hook)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.manifest_path}: unreadable manifest ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.manifest_path}: unreadable manifest (not a JSON object)")
        if data.get("format_version") != MANIFEST_FORMAT:
            raise ConfigError(f"{self.manifest_path}: manifest format {data.get('format_version')} is not supported")
        return data


LOCK = ".lock"  # in a `.partial`: flocked by the process writing it
_held: dict[Path, int] = {}  # this process's `.partial`s -> their lock's fd
# A `.partial` without a lock file is an older relocate's: left alone unless this old
# (a running move writes into its dir, so its mtime stays recent).
UNLOCKED_STALE_S = 24 * 3600


def _abandoned(partial: Path) -> bool:
    """Whether no live process writes `partial` any more (its lock can be taken)."""
    try:
        fd = os.open(partial / LOCK, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            return time.time() - partial.stat().st_mtime > UNLOCKED_STALE_S
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:  # held: its move runs
        return False
    finally:
        os.close(fd)  # also lets the lock go, before the directory does


def sweep(root: Path) -> list[str]:
    """Remove the `.partial`s of killed moves under `root`; their names."""
    gone = []
    for p in sorted(root.glob("*.partial")):
        if p.is_dir() and p not in _held and _abandoned(p):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
    return gone


def _unusable(root: Path, exc: OSError) -> ConfigError:
    """snapshot.dir could not be made or written (a plain file on its way, a read-only
    disk, no space): one line naming it, exit 2 (localfile.py), never an internal error.
    `move` checks the place before it takes the target's lock (localfile.check_usable);
    this is what is left when the disk changes under a running move."""
    return ConfigError(f"snapshot.dir: {root}: cannot write ({exc.strerror or exc})")


def begin(root: Path) -> Snapshot:
    try:
        root.mkdir(parents=True, exist_ok=True)
        sweep(root)
        # Two moves within one second of one process (fast reruns) would share an id and
        # the second commit's rename would hit the first snapshot: add -2, -3, ... (sorts after).
        base = sid = new_id()
        n = 1
        while (root / sid).exists() or (root / (sid + ".partial")).exists():
            n += 1
            sid = f"{base}-{n}"
        path = root / (sid + ".partial")
        path.mkdir(mode=0o700)
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise _unusable(root, exc) from None
    fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: nobody else holds it
    _held[path] = fd
    return Snapshot(path)


def _release(path: Path) -> None:
    fd = _held.pop(path, None)
    if fd is not None:
        os.close(fd)


# Beside manifest.json in a snapshot whose move had failed items (a release rolled back,
# an object the target could never write): `verify` reports them from the manifest until
# a later snapshot replaces it, so a move that finds nothing left to do after one writes a
# fresh snapshot (execute/runner.py). A file of its own: asking costs one stat, not a
# parse of a manifest that may list a million objects.
FAILED_MARK = "failed"


def commit(snap: Snapshot, manifest: dict[str, Any], failed: int = 0) -> Snapshot:
    """`failed`: how many items the move could not move (recorded as FAILED_MARK)."""
    write_json_atomic(snap.manifest_path, {"format_version": MANIFEST_FORMAT, **manifest})
    if failed:
        localfile.write_atomic(snap.path / FAILED_MARK, [f"{failed}\n"])
    final = snap.path.with_name(snap.id)
    try:
        (snap.path / LOCK).unlink(missing_ok=True)  # a kept snapshot holds only what it says
        os.replace(snap.path, final)
    except OSError as exc:
        raise _unusable(snap.path.parent, exc) from None
    _release(snap.path)
    return Snapshot(final)


def discard(snap: Snapshot) -> None:
    shutil.rmtree(snap.path, ignore_errors=True)
    _release(snap.path)


# In the snapshot directory while a move may be changing the target, and after a
# `rollback` changed it: the latest snapshot may not say what the target holds (a move
# killed during its deploy left a new release live and no snapshot of it; a rollback
# switched releases). The next move then writes a fresh snapshot even when it finds
# nothing left to do (execute/runner.py), and takes the mark away with it.
UNRECORDED_MARK = ".unrecorded"


def mark_unrecorded(root: Path, why: str) -> None:
    """The target may have changed since the latest snapshot (`why`: who changed it)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(root, exc) from None
    localfile.write_atomic(root / UNRECORDED_MARK, [why + "\n"])


def unrecorded(root: Path) -> bool:
    return (root / UNRECORDED_MARK).exists()


def clear_unrecorded(root: Path) -> None:
    (root / UNRECORDED_MARK).unlink(missing_ok=True)


def recorded_failure(snap: Snapshot | None) -> bool:
    """Whether `snap` is of a move that had failed items (commit's `failed`)."""
    return snap is not None and (snap.path / FAILED_MARK).exists()


def latest(root: Path) -> Snapshot | None:
    try:
        if not root.is_dir():
            return None
        done = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.endswith(".partial") and (p / "manifest.json").exists())
    except OSError as exc:  # e.g. no permission to list it
        raise ConfigError(f"snapshot.dir: {root}: cannot read ({exc.strerror or exc})") from None
    return Snapshot(done[-1]) if done else None
