"""`move plan.json --finish`: has the source changed since the workers listed it?

A worker compares its range with the plan before it writes anything (worker.py), and
records the range as it listed it (worker.FINGERPRINT: the digest of every object's key,
size and ETag, with the count and bytes). Objects written to a bucket after its worker
ran would never move, and the finish's verification covers only what the workers
recorded. So the finish lists every non-empty range again (THREADS at a time, one
ListObjectsV2 walk each, a page in memory) and compares it with that fingerprint: any
object added, removed or changed since is a difference. A range whose worker left no
fingerprint (an older relocate) is compared with the plan's digest of the range instead,
and, for an entry planned from an S3 Inventory report (older than the bucket by design),
with the objects and bytes its worker's progress counts.

Every range that differs is one line of `finish_changes`; the finish refuses them with
exit 6 unless `--allow-drift`, and then says which ranges were not moved as they are now.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from relocate.config import Config
from relocate.plan.build import human_bytes
from relocate.plan.model import Plan
from relocate.shards import state
from relocate.shards.section import as_count
from relocate.shards.partition import Digest, Range, start_after
from relocate.shards.worker import FINGERPRINT, spec_for
from relocate.sources.inventory import list_range

THREADS = 8


def finish_changes(plan: Plan, config: Config, conn: Any, aws: Any) -> list[str]:
    """One line per shard range whose source differs from the plan or from what its worker moved."""
    assert plan.shards is not None
    section = plan.shards
    progress = state.read_progress(conn, config.root, section["id"])
    prints = read_fingerprints(conn, config.root, section["id"])
    jobs: list[tuple[str, Any, Any, bool, Range]] = []
    for sid, ranges in section["steps"].items():
        spec, group = spec_for(config, sid)
        from_report = any(s.inventory for s in group)
        for d in ranges:
            rng = Range.from_dict(d)
            if rng.start is not None:  # an empty range holds no key: its keys would be a neighbour's
                jobs.append((sid, spec, group, from_report, rng))
    if not jobs:
        return []
    aws.client("s3")  # made once, here: the threads share it (a botocore client is thread-safe, its creation is not)

    def look(job: tuple[str, Any, Any, bool, Range]) -> tuple[str, int, int]:
        _, spec, group, _, rng = job
        d, n, b = Digest(), 0, 0
        for o in list_range(aws, spec, group, rng.start, rng.end, start_after(rng.start or "")):
            d.add(o.key, o.size, o.etag)
            n += 1
            b += o.size
        return d.hexdigest(), n, b

    with ThreadPoolExecutor(min(THREADS, len(jobs))) as pool:
        seen = list(pool.map(look, jobs))
    lines: list[str] = []
    for (sid, spec, _, from_report, rng), (digest, n, b) in zip(jobs, seen):
        where = f"s3://{spec.bucket}/{spec.prefix} shard {rng.index}"
        fp = prints.get((sid, rng.index))
        rec = fp or progress.get((sid, rng.index)) or {}
        moved_n, moved_b = as_count(rec.get("objects")) or 0, as_count(rec.get("bytes")) or 0
        if fp is not None:
            same = digest == fp.get("digest")
        else:
            same = (n, b) == (moved_n, moved_b) and (from_report or digest == rng.digest)
        if same:
            continue
        if (n, b) != (moved_n, moved_b):
            lines.append(f"{where}: {n:,} object(s) ({human_bytes(b)}) at the source now, its worker moved "
                         f"{moved_n:,} ({human_bytes(moved_b)})")
        else:
            lines.append(f"{where}: objects changed since its worker listed them (as many, as large)")
    return lines


def read_fingerprints(conn: Any, root: str, plan_id: str) -> dict[tuple[str, int], dict[str, Any]]:
    """{(step id, shard): fingerprint} the workers of this plan recorded (worker.FINGERPRINT)."""
    return {at: doc for at, doc in state.read_each(conn, root, plan_id, FINGERPRINT).items()
            if isinstance(doc.get("digest"), str)}
