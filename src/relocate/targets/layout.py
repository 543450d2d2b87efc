"""Where relocate keeps its own state under target.root, in one place.

    <root>/.relocate/staging/        batches land here, are hashed, then linked into place
    <root>/.relocate/buckets/*.json  sidecar manifest per bucket (key, sha256, metadata);
                                     `<to>__%%versions.json` for older versions and delete markers
    <root>/.relocate/receipts/<to>/*.r  what the receiver placed, a line per file, written as
                                     it places them; read by the next move after a kill,
                                     folded into the journal and sidecar at the step's end
    <root>/.relocate/env.json        per env file: digest of its sources' versions, its sha256
    <root>/.relocate/hosts.json      per source.hosts entry: sha256 of the tar that landed
    <root>/.relocate/lock            held for the whole move
    <root>/.relocate/audit.log       append-only record of moves
    <root>/.relocate/shards/<to>/<K>/   a sharded move's records for shard K of one bucket
                                     entry: c<NNNNNN>.json per chunk (key, path, sha256),
                                     progress.json (counts, bytes, complete)
    <root>/.relocate/shards/staging/<K>, .../locks/<K>: shard K's own staging and lock
"""

from __future__ import annotations

import hashlib
import posixpath

STATE_DIR = ".relocate"


def state_dir(root: str) -> str:
    return posixpath.join(root, STATE_DIR)


def staging_dir(root: str) -> str:
    return posixpath.join(root, STATE_DIR, "staging")


def sidecar_dir(root: str) -> str:
    return posixpath.join(root, STATE_DIR, "buckets")


NAME_MAX = 200  # bytes of a flat name (a file system allows 255: room for ".json", ".partial")


def flat_name(dest: str) -> str:
    """`dest` as one file name: `/` becomes `__`. A `to:` may be ~1,000 bytes long, one
    name only 255: a longer one keeps its first bytes and ends with a hash of the whole
    (still one name per `to:`, the same every run)."""
    name = dest.replace("/", "__")
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= NAME_MAX:
        return name
    tail = "--" + hashlib.sha256(raw).hexdigest()[:24]
    return raw[:NAME_MAX - len(tail)].decode("utf-8", "ignore") + tail


def sidecar_path(root: str, dest: str) -> str:
    """One JSON file per bucket directory, named for its `to:` (flat_name)."""
    return posixpath.join(sidecar_dir(root), flat_name(dest) + ".json")


def receipts_dir(root: str, dest: str) -> str:
    """The receipts (snapshot/receipts.py) of the files placed under `dest`, named like its sidecar."""
    return posixpath.join(root, STATE_DIR, "receipts", flat_name(dest))


def shards_dir(root: str) -> str:
    return posixpath.join(root, STATE_DIR, "shards")


def shard_dir(root: str, dest: str, index: int) -> str:
    """Shard `index`'s records for the bucket entry written to `dest`."""
    return posixpath.join(shards_dir(root), flat_name(dest), str(index))


def shard_staging(root: str, index: int) -> str:
    return posixpath.join(shards_dir(root), "staging", str(index))


def under(path: str, base: str) -> str:
    """`path` relative to `base` (both relative to target.root). posixpath.relpath asks for
    the working directory and normalises both sides on every call: over 10,000 objects that
    cost 0.1-0.6 s of a rerun (issue 18); a path mapped under its base is a plain cut."""
    if base and base != "." and path.startswith(base + "/") and "/." not in path and "//" not in path \
            and not path.endswith("/"):
        return path[len(base) + 1:]
    return posixpath.relpath(path, base)
