"""Cut a bucket's keys into N contiguous key ranges, balanced by bytes and by count (pure).

A range is half-open, [start, end), in S3's key order: byte-wise on UTF-8, which for
valid Unicode is Python's own str order (UTF-8 keeps code-point order). The ranges of
one bucket entry tile the whole key space: shard 0 starts at "" (before every key),
the last one has no end, and each shard's end is the next one's start, so every key
there is, or will be, falls in exactly one shard. A shard whose `start` is None is
empty (and has no `end`): its share of the cost fell inside one object (more shards
than keys, or one big object), so its keys went to a neighbour.

How the cuts are placed: each key costs size/total_bytes + 1/total_count (so the whole
bucket costs 2); shard k starts at the first key before which the running cost reaches
2k/N. Big objects and many small ones both count, so neither bytes nor requests pile up
on one worker. Only the boundaries (and per-shard counts, bytes and a digest) are kept:
the plan stays small whatever the bucket holds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable

MAX_KEY_BYTES = 1024  # S3's longest key


@dataclass
class Range:
    index: int
    start: str | None  # None: the shard is empty
    end: str | None  # None: up to the last key there is
    objects: int = 0
    bytes: int = 0
    # sha256 over "key\0size\0etag\n" of the range's objects at planning time: the worker
    # compares it with what it lists to tell that the source changed since the plan
    digest: str = ""

    def contains(self, key: str) -> bool:
        return self.start is not None and key >= self.start and (self.end is None or key < self.end)

    def past(self, key: str) -> bool:
        """The key is at or beyond this range's end: a sorted listing can stop here."""
        return self.end is not None and key >= self.end

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start": self.start, "end": self.end, "objects": self.objects, "bytes": self.bytes,
                "digest": self.digest}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Range":
        return cls(int(d["index"]), d["start"], d["end"], int(d.get("objects", 0)), int(d.get("bytes", 0)),
                   str(d.get("digest", "")))


@dataclass
class Digest:
    """The running digest a Range records, fed one object at a time (planner and worker)."""

    h: hashlib._Hash = field(default_factory=hashlib.sha256)

    def add(self, key: str, size: int, etag: str) -> None:
        self.h.update(f"{key}\0{size}\0{etag}\n".encode("utf-8", "surrogateescape"))

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def partition(objects: Iterable[tuple[str, int, str]], n: int, total_count: int, total_bytes: int) -> list[Range]:
    """N ranges over a key-sorted stream of (key, size, etag), whose totals are given (the
    stream is read once). The stream must be sorted; duplicates are not expected."""
    if n < 1:
        raise ValueError("n must be at least 1")
    ranges = [Range(0, "", None)] + [Range(k, None, None) for k in range(1, n)]
    digests = [Digest() for _ in range(n)]
    cut = 1  # the next shard to start
    cost = 0.0
    current = 0
    last: str | None = None
    for key, size, etag in objects:
        if last is not None and key <= last:
            raise ValueError(f"keys not sorted: {key!r} after {last!r}")
        last = key
        reached = cut
        while reached < n and total_count and cost >= 2.0 * reached / n - 1e-12:
            reached += 1
        if reached > cut:
            # shards cut..reached-1 would all start at this key: only the last one does;
            # the ones before it stay empty (start None, no end), so no empty shard claims
            # a key ([key, key) would look like a range that holds something)
            ranges[current].end = key
            ranges[reached - 1].start = key
            current = reached - 1
            cut = reached
        r = ranges[current]
        r.objects += 1
        r.bytes += size
        digests[current].add(key, size, etag)
        cost += (size / total_bytes if total_bytes else 0.0) + 1.0 / total_count
    for r, d in zip(ranges, digests):
        r.digest = d.hexdigest()
    return ranges


def start_after(start: str) -> str | None:
    """A StartAfter for ListObjectsV2 that lists from `start` on (StartAfter is exclusive):
    the greatest string below `start` that S3 accepts, near enough: `start` with its last
    character lowered by one and padded with U+10FFFF up to S3's key length. Keys between
    it and `start` (practically none) are filtered out by Range.contains. None: from the
    beginning."""
    if not start:
        return None
    head, last = start[:-1], ord(start[-1])
    if last == 0:
        return head or None
    lower = last - 1
    if 0xD800 <= lower <= 0xDFFF:  # surrogates are no characters: step below them
        lower = 0xD7FF
    base = head + chr(lower)
    room = MAX_KEY_BYTES - len(base.encode("utf-8", "surrogateescape"))
    return base + "\U0010FFFF" * max(0, room // 4)
