"""What the snapshot manifest (and the target's sidecar, .relocate/buckets/) records of
one `source.s3` entry: typed entries with the JSON shape docs/json.md gives them.

The same entry is written twice: into the local snapshot's manifest.json (`buckets`)
and, on the target, into the destination's sidecar, from which a fresh machine without
the journal resumes (execute/gather.sidecar_records).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relocate.snapshot.journal import DoneObject
from relocate.snapshot.store import Records
from relocate.sources.inventory import split_version_key, version_key


@dataclass(frozen=True, slots=True)  # one per object in the manifest: no __dict__ each
class ObjectEntry:
    """One object on the target: where it landed and what it was at the source."""

    key: str
    path: str  # relative to target.root
    size: int
    sha256: str
    etag: str
    content_type: str | None
    metadata: dict[str, str]
    version_id: str | None = None  # older versions only (`versions: all`); absent from the JSON otherwise

    @property
    def journal_key(self) -> str:
        """The journal's key for it (an older version: inventory.version_key)."""
        return version_key(self.key, self.version_id) if self.version_id is not None else self.key

    @classmethod
    def from_done(cls, d: DoneObject, versions: bool = False) -> "ObjectEntry":
        key, vid = split_version_key(d.key) if versions else (d.key, None)
        return cls(key, d.path, d.size, d.sha256, d.etag, d.content_type, d.metadata, vid)

    def done(self, bucket: str) -> DoneObject:
        """The journal record it stands for (`bucket`: the journal's name for the bucket)."""
        return DoneObject(bucket, self.journal_key, self.etag, self.size, self.path, self.sha256,
                          self.content_type, dict(self.metadata))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "path": self.path, "size": self.size, "sha256": self.sha256,
                             "etag": self.etag, "content_type": self.content_type, "metadata": self.metadata}
        if self.version_id is not None:
            d["version_id"] = self.version_id
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ObjectEntry":
        """The record as the manifest, the sidecar, a shard's chunk and a receipt all write it.
        Read back from the target, so every field is coerced to its type: a damaged or forged
        value raises (KeyError, TypeError, ValueError, AttributeError) or stays a string that
        matches nothing, never another type further on."""
        ctype, vid = d.get("content_type"), d.get("version_id")
        return cls(str(d["key"]), str(d["path"]), int(d["size"]), str(d["sha256"]), str(d["etag"]),
                   None if ctype is None else str(ctype),
                   {str(k): str(v) for k, v in (d.get("metadata") or {}).items()},
                   None if vid is None else str(vid))


@dataclass(frozen=True)
class BucketEntry:
    """One `source.s3` entry as moved: the manifest's `buckets[]` item and the sidecar."""

    bucket: str
    prefix: str
    to: str  # the destination, relative to target.root
    objects: list[ObjectEntry] = field(default_factory=list)
    # older versions only: the journal's name for the bucket (`<bucket>#versions`) and the
    # delete markers, which are recorded, not written as files
    journal_bucket: str | None = None
    delete_markers: list[dict[str, Any]] | None = None
    # objects the target could never write in this move ({key, path, error}; key as the
    # journal names it): verify counts them, never an OK while they are not there
    failed: list[dict[str, str]] = field(default_factory=list)

    @property
    def versions(self) -> bool:
        return self.journal_bucket is not None

    def to_dict(self, *, lazy: bool = False) -> dict[str, Any]:
        """`lazy`: the objects as store.Records, a dict each only as it is written (what
        a move keeps until its snapshot is committed); else a list of dicts."""
        d: dict[str, Any] = {"bucket": self.bucket, "prefix": self.prefix, "to": self.to}
        if self.versions:
            d.update(journal_bucket=self.journal_bucket, delete_markers=self.delete_markers)
        if self.failed:  # absent when none: the entries of a move without failures are unchanged
            d["failed"] = self.failed
        d["objects"] = Records(self.objects, ObjectEntry.to_dict) if lazy else [o.to_dict() for o in self.objects]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BucketEntry":
        return cls(d["bucket"], d.get("prefix", ""), d["to"],
                   [o if type(o) is ObjectEntry else ObjectEntry.from_dict(o) for o in d.get("objects", [])],
                   d.get("journal_bucket"), d.get("delete_markers") if "journal_bucket" in d else None,
                   [{k: str(v) for k, v in f.items()} for f in d.get("failed") or []])


_ENTRY_NEEDS = frozenset(("key", "path", "size", "sha256", "etag"))
_ENTRY_MAY = _ENTRY_NEEDS | {"content_type", "metadata", "version_id"}


def entries_as_read(d: dict[str, Any]) -> Any:
    """json.load's object_hook for the final check (execute/verify.py): an object's entry
    becomes its ObjectEntry as it is parsed, so a manifest of 100,000 objects is never
    held as a dict per object beside the typed entries (issue 18). Only a dict of exactly
    an entry's keys is taken, and one that does not convert stays a dict, for
    BucketEntry.from_dict to refuse as before. (`size` a number: an object's user metadata,
    strings only, is never taken for an entry even with those very keys.)"""
    if len(d) >= 5 and type(d.get("size")) is int and _ENTRY_NEEDS <= d.keys() <= _ENTRY_MAY:
        try:
            return ObjectEntry.from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError):
            return d
    return d
