"""`relocate plan --probe`: measure the rates the estimate uses instead of assuming them.

Moves spend their time per object (a GET, the tar-like wire, the target hashing and
renaming), not only per byte: one timed read of the largest object, as this probe once
did, assumed 1-2 ms an object where moves took about 5. So the probe now sends a batch
of REAL objects through the move's own path: the same S3 reader, the same pusher and
SSH lanes, the same receiver hashing and placing them, into a throwaway directory under
the target's root (or its nearest existing parent), removed by the same run. It times:

- one object alone: the fixed cost every bucket's transfer pays (logins, receiver start);
- a sample of up to SAMPLE_OBJECTS objects taken at even strides through the listing
  (so its sizes look like the data's), SAMPLE_BYTES at most: the rest per object.

plan/build.py scales the sample to each step by object count and by bytes and reports
both ends as the estimate's range. Nothing is written outside the throwaway directory;
the source is only read (GetObject; with a VersionId for older versions, as the move).
A probe that cannot send its sample leaves the conservative defaults standing and says
why in the estimate's basis: it measures, it never fails the plan.
"""

from __future__ import annotations

import os
import posixpath
import time

from relocate.errors import RelocateError, SafetyError
from relocate.execute.objects import BucketPusher
from relocate.settings import TRANSFERS, Transfer, Tuning, default_lanes
from relocate.plan.build import Rates, Sample, human_bytes
from relocate.snapshot.keymap import map_keys, version_path
from relocate.sources.aws import Aws
from relocate.sources.inventory import BucketListing, Inventory, ObjectInfo, split_version_key
from relocate.sources.s3data import ObjectReader, VersionReader
from relocate.targets import shell
from relocate.ssh.connection import Connection

SAMPLE_OBJECTS = 200
SAMPLE_BYTES = 48 << 20


def pick_sample(inventory: Inventory, max_objects: int = SAMPLE_OBJECTS,
                max_bytes: int = SAMPLE_BYTES) -> list[tuple[BucketListing, ObjectInfo]]:
    """Objects at even strides through every bucket's listing, so the sample's sizes look
    like the data's; an object bigger than an eighth of the byte budget is left out (one
    would be the whole sample), and the sample stops at `max_bytes`."""
    every = [(listing, o) for listing in inventory.buckets for o in listing.objects if o.size <= max_bytes // 8]
    if not every:
        return []
    stride = max(1, len(every) // max_objects)
    picked, total = [], 0
    for listing, o in every[::stride][:max_objects]:
        if total + o.size > max_bytes:
            break
        picked.append((listing, o))
        total += o.size
    return picked


def _push(aws: Aws, conn: Connection, where: str, objs: list[tuple[BucketListing, ObjectInfo]],
          lanes: int, tuning: Tuning) -> float:
    """Seconds to deliver `objs` through the move's own reader, pusher and lanes into
    `where` (each listing as the move sends it: one pusher per bucket and kind).

    A "versions" listing's keys are version_key()s (`["key", "version id"]`), readable
    only by VersionReader (GetObject with VersionId) and placed by version_path, as
    kinds/objects.py does: read as plain keys they are not there at all."""
    by_listing: dict[str, tuple[BucketListing, list[ObjectInfo]]] = {}
    for listing, o in objs:  # journal_bucket: the bucket, or "<bucket>#versions"
        by_listing.setdefault(listing.journal_bucket, (listing, []))[1].append(o)
    t0 = time.monotonic()
    for n, (listing, todo) in enumerate(by_listing.values()):
        older = listing.kind == "versions"
        reader = (VersionReader if older else ObjectReader)(aws, listing.spec.bucket, gets=tuning.s3_gets,
                                                            backoff_s=tuning.get_backoff_s)
        paths = ({o.key: version_path(*split_version_key(o.key)) for o in todo} if older
                 else map_keys([o.key for o in todo]))
        try:
            pusher = BucketPusher(reader, conn, bucket=listing.journal_bucket, root=where, dest=f"b{n}",
                                  paths=paths, staging=posixpath.join(where, "staging"),
                                  opts=Transfer.tuned(tuning, transfers=TRANSFERS, lanes=lanes))
            pusher.run(todo, lambda done: None)
        finally:
            reader.close()
    return time.monotonic() - t0


def measure(aws: Aws, conn: Connection, inventory: Inventory, directory: str | None,
            lanes: int | None = None, tuning: Tuning = Tuning()) -> Rates:
    """`directory` None: the login user cannot write there (the plan says so as a blocker):
    nothing is measured and the conservative defaults stand, saying why."""
    sample = pick_sample(inventory)
    base = Rates()
    if directory is None or not sample:
        why = "the target is not writable" if directory is None else "no object to send"
        return Rates(base.bytes_per_s, base.seconds_per_object, f"{base.basis}; probe skipped: {why}")
    lanes = lanes or default_lanes()
    where = posixpath.join(directory, f".relocate-probe-{os.getpid()}-{int(time.time())}")
    try:
        first = min(sample, key=lambda lo: lo[1].size)
        setup = _push(aws, conn, posixpath.join(where, "one"), [first], lanes, tuning)
        seconds = _push(aws, conn, posixpath.join(where, "batch"), sample, lanes, tuning)
    except SafetyError:
        raise  # a refused write to the source, a changed host key: never swallowed
    except RelocateError as exc:
        # The probe only measures: an object gone since the listing, a GET refused, a
        # dropped lane... must not fail the plan (issue: `plan --probe` exit 5). The
        # defaults stand and the basis says why; the plan's own checks still run.
        return Rates(base.bytes_per_s, base.seconds_per_object, f"{base.basis}; probe failed: {exc.message}")
    finally:
        conn.ensure()
        conn.run(shell.line(["rm", "-rf", "--", where]), timeout=120, check=False)
    nbytes = sum(o.size for _, o in sample)
    # The batch paid the setup too: what is left is the per-object and per-byte work.
    work = max(seconds - setup, seconds * 0.1)
    measured = Sample(objects=len(sample), nbytes=nbytes, seconds=work, setup_s=setup)
    per_object = work / len(sample)
    basis = (f"measured: {len(sample)} real objects ({human_bytes(nbytes)}) sent through the move's own path "
             f"in {seconds:.2f}s ({setup:.2f}s of it setup, {per_object * 1000:.1f} ms per object, "
             f"{human_bytes(nbytes / work)}/s), {lanes} lanes")
    return Rates(bytes_per_s=2 * nbytes / work, seconds_per_object=per_object / 2, basis=basis, sample=measured)
