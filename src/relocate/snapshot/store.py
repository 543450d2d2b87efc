"""Snapshot directories: `<dir>/<id>/manifest.json` (+ `secrets.age`, `objects/`).

A snapshot is written to `<id>.partial/` and renamed when complete, so `latest()`
never returns half a capture.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relocate.errors import ConfigError
from relocate.snapshot.jsonenc import compact

MANIFEST_FORMAT = 1


def new_id() -> str:
    """Sortable by time (latest() relies on it) down to the millisecond, plus a random
    tail so two moves in the same millisecond (or process) never share a directory."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z-{secrets.token_hex(2)}"


# One record per call of the C encoder (snapshot/jsonenc.py), laid out as json.dumps does.
_compact = compact(ascii_only=False, separators=(", ", ": "))


def _nested(value: Any) -> bool:
    """A list of records, or a mapping that holds one (at any depth): laid out a line per record."""
    if type(value) is list:
        return bool(value) and type(value[0]) is dict
    return type(value) is dict and any(type(v) in (list, dict) and _nested(v) for v in value.values())


def json_text(data: Any, indent: str = "") -> str:
    """JSON for the manifest and the target's sidecars, one record (an object's entry)
    per line. json.dump(indent=...) runs Python's own encoder, one call per value: for
    5,000 objects 2.5x the CPU of this, where each record is one call of the C encoder;
    the file stays readable and diffable by line."""
    if not _nested(data):
        return str(_compact(data))
    inner = indent + " "
    if type(data) is list:
        if not _nested(data[0]):
            # Records of one shape (objects' entries): each in one C call, joined in C,
            # without asking every record whether it holds records (10,000 entries: 86 ->
            # 31 ms). A later record that does hold some is still valid JSON, on one line.
            return "[\n" + inner + (",\n" + inner).join(map(_compact, data)) + "\n" + indent + "]"
        return "[\n" + ",\n".join(inner + json_text(v, inner) for v in data) + "\n" + indent + "]"
    return ("{\n" + ",\n".join(f"{inner}{_compact(k)}: {json_text(v, inner)}" for k, v in data.items())
            + "\n" + indent + "}")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json_text(data))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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

    def manifest(self) -> dict[str, Any]:
        try:
            with open(self.manifest_path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.manifest_path}: unreadable manifest ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.manifest_path}: unreadable manifest (not a JSON object)")
        if data.get("format_version") != MANIFEST_FORMAT:
            raise ConfigError(f"{self.manifest_path}: manifest format {data.get('format_version')} is not supported")
        return data


def begin(root: Path) -> Snapshot:
    root.mkdir(parents=True, exist_ok=True)
    # Two moves within one second of one process (fast reruns) would share an id and
    # the second commit's rename would hit the first snapshot: add -2, -3, ... (sorts after).
    base = sid = new_id()
    n = 1
    while (root / sid).exists() or (root / (sid + ".partial")).exists():
        n += 1
        sid = f"{base}-{n}"
    path = root / (sid + ".partial")
    path.mkdir(mode=0o700)
    return Snapshot(path)


def commit(snap: Snapshot, manifest: dict[str, Any]) -> Snapshot:
    write_json_atomic(snap.manifest_path, {"format_version": MANIFEST_FORMAT, **manifest})
    final = snap.path.with_name(snap.id)
    os.replace(snap.path, final)
    return Snapshot(final)


def discard(snap: Snapshot) -> None:
    shutil.rmtree(snap.path, ignore_errors=True)


def latest(root: Path) -> Snapshot | None:
    if not root.is_dir():
        return None
    done = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.endswith(".partial") and (p / "manifest.json").exists())
    return Snapshot(done[-1]) if done else None
