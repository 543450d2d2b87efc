"""Timed reads from the source for `relocate plan --probe`: how fast S3 really answers here."""

from __future__ import annotations

import time
from dataclasses import dataclass

from relocate.sources.aws import Aws, translate
from relocate.sources.inventory import Inventory

CHUNK = 1 << 20


@dataclass(frozen=True)
class ReadSample:
    what: str  # s3://bucket/key read
    nbytes: int
    seconds: float
    latency_s: float  # time to first byte of a tiny ranged read: the per-object overhead


def timed_read(aws: Aws, inventory: Inventory, nbytes: int = 32 << 20) -> ReadSample | None:
    """A ranged read of up to `nbytes` from the largest object, and one 1-byte read for
    latency. None when there is no object to read. Read-only (GetObject)."""
    best = None
    for listing in inventory.buckets:
        for o in listing.objects:
            if o.size and (best is None or o.size > best[1].size):
                best = (listing.spec.bucket, o)
    if best is None:
        return None
    bucket, obj = best
    s3 = aws.client("s3")
    want = min(nbytes, obj.size)
    try:
        t0 = time.monotonic()
        s3.get_object(Bucket=bucket, Key=obj.key, Range="bytes=0-0")["Body"].read()
        latency = time.monotonic() - t0
        t0 = time.monotonic()
        body = s3.get_object(Bucket=bucket, Key=obj.key, Range=f"bytes=0-{want - 1}")["Body"]
        got = 0
        while chunk := body.read(CHUNK):
            got += len(chunk)
        seconds = time.monotonic() - t0
    except Exception as exc:
        raise translate(exc, f"probe read of s3://{bucket}/{obj.key}") from exc
    return ReadSample(f"s3://{bucket}/{obj.key}", got, max(seconds, 1e-6), latency)
