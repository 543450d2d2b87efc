"""One shard's worker: `relocate move plan.json --shard K`.

For every bucket entry of the plan it walks shard K's key range in chunks (CHUNK keys,
listed in key order, never the whole range at once):

    list a chunk -> read the chunk's record on the target -> ask the target which of the
    recorded files are there with their size -> push the rest (execute/objects.py, the
    same engine as `move`) -> rewrite the chunk's record after every batch -> progress

so memory holds one chunk (its keys, paths and records), whatever the shard's size. No
local state: the records live on the target (state.py), so a worker killed anywhere and
started again on another machine, with an empty HOME, resumes from what the target
holds. Each worker has its own lock, staging directory and records: N workers on one
target never meet. The target-wide lock is only taken by `move plan.json --finish`.
"""

from __future__ import annotations

import functools
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from relocate.config import BucketSpec, Config
from relocate.errors import DriftError, ItemError, UsageError
from relocate.execute.lock import TargetLock, audit
from relocate.kinds.objects import s3_step_id
from relocate.plan.model import Plan
from relocate.shards import state
from relocate.shards.partition import Digest, Range, start_after
from relocate.snapshot.journal import DoneObject
from relocate.snapshot.keymap import chunk_paths
from relocate.snapshot.manifest import ObjectEntry
from relocate.sources.inventory import ObjectInfo, first_owned_after, list_range
from relocate.targets import files, layout, nolinks, shell

# beside each range's progress.json: {plan, step, shard, digest, objects, bytes} of the range
# as its worker's last run listed it (digest as partition.Digest); read by shards/drift.py
FINGERPRINT = "fingerprint.json"
CHUNK = 10_000  # keys listed, compared and recorded at a time (RELOCATE_SHARD_CHUNK)
LOCK_STALE_S = 900.0  # a shard lock not touched for this long is taken over (RELOCATE_SHARD_LOCK_STALE_S)


@dataclass
class ShardReport:
    shard: int
    count: int
    objects_sent: int = 0
    bytes_sent: int = 0
    objects_skipped: int = 0
    objects: int = 0  # in the shard, as listed now
    bytes: int = 0
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "shards": self.count, "objects": self.objects, "bytes": self.bytes,
                "objects_sent": self.objects_sent, "bytes_sent": self.bytes_sent, "objects_skipped": self.objects_skipped,
                "nothing_to_do": self.objects_sent == 0 and not self.failed, "complete": self.ok,
                "failed": self.failed, "warnings": self.warnings}


def spec_for(config: Config, step_id: str) -> tuple[BucketSpec, list[BucketSpec]]:
    """The relocate.yaml entry a plan's s3 step came from, and the other entries of its bucket."""
    for spec in config.s3:
        if s3_step_id(spec.bucket, spec.prefix) == step_id:
            return spec, [s for s in config.s3 if s.bucket == spec.bucket]
    raise DriftError(f"the saved plan is stale: step {step_id} is not in its relocate.yaml",
                     hint="run `relocate plan --shards N -o plan.json` again")


def chunked(items: Iterable[ObjectInfo], size: int) -> Iterator[list[ObjectInfo]]:
    chunk: list[ObjectInfo] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_shard(plan: Plan, config: Config, conn: Any, aws: Any, index: int, opts: Any, *, allow_drift: bool = False,
              progress: Callable[[str, int, int], None] | None = None,
              on_total: Callable[[int, int], None] | None = None) -> ShardReport:
    """Move shard `index` of every bucket entry; `opts` is the move's relocate.settings.Settings.
    `on_total(objects, bytes)`: the shard's size as its listing finds it, called as each
    chunk is listed (the plan's count stands for what is not listed yet: with
    --allow-drift the source may hold more or fewer objects than planned)."""
    section = plan.shards
    assert section is not None
    count = int(section["count"])
    report = ShardReport(index, count)
    size = opts.tuning.shard_chunk or CHUNK  # read at the CLI edge (relocate.settings)
    stale = opts.tuning.shard_lock_stale_s or LOCK_STALE_S
    root = config.root
    # in the plan's order (objects by priority, then relocate.yaml's), as `move` runs them:
    # the section's own order is relocate.yaml's
    order = {s.id: i for i, s in enumerate(plan.steps)}
    ids = sorted(section["steps"], key=lambda sid: order.get(sid, len(order)))
    steps = [(sid, Range.from_dict(section["steps"][sid][index])) for sid in ids]
    specs = {sid: spec_for(config, sid) for sid, _ in steps}
    totals = {sid: (rng.objects, rng.bytes) for sid, rng in steps}

    def sized(sid: str, objects: int, nbytes: int) -> None:
        if totals[sid] != (objects, nbytes):
            totals[sid] = (objects, nbytes)
            if on_total is not None:
                on_total(sum(o for o, _ in totals.values()), sum(b for _, b in totals.values()))

    if not allow_drift:
        for sid, rng in steps:  # before anything is written: one listing of the range
            spec, group = specs[sid]
            if any(s.inventory for s in group):
                continue  # planned from an S3 Inventory report, older than the bucket by design: moved as listed now
            d = Digest()
            for o in list_range(aws, spec, group, rng.start, rng.end, start_after(rng.start or "")):
                d.add(o.key, o.size, o.etag)
            if d.hexdigest() != rng.digest:
                raise DriftError(f"the source changed since the plan was saved (s3://{spec.bucket}/{spec.prefix}, shard {index})",
                                 hint=f"run `relocate plan --shards {count} -o plan.json` again, or pass --allow-drift "
                                      "to move what is there now")
    lock = TargetLock(conn, root, f"shard {index}", where=state.lock_path(root, index), stale_s=stale)
    with lock:
        audit(conn, root, "shard-start", shard=index, shards=count, plan=section["id"], steps=[sid for sid, _ in steps])
        staging = layout.shard_staging(root, index)
        conn.run(nolinks.guarded(root, [staging], shell.line(["rm", "-rf", "--", staging])), timeout=60)
        try:
            for sid, rng in steps:
                spec, group = specs[sid]
                _move_range(plan, config, conn, aws, spec, group, sid, rng, report, opts, size, staging, lock,
                            progress or (lambda *_: None), functools.partial(sized, sid))
        except BaseException as exc:  # an interrupt too: the audit log says how the shard ended
            try:
                audit(conn, root, "shard-end", shard=index, result="error", error=type(exc).__name__,
                      objects=report.objects_sent, bytes=report.bytes_sent)
            except Exception:  # the connection may be what failed; the original error matters
                pass
            raise
        conn.run(nolinks.guarded(root, [staging], shell.line(["rm", "-rf", "--", staging])), timeout=60)
        audit(conn, root, "shard-end", shard=index, result="ok" if report.ok else "failed", objects=report.objects_sent,
              bytes=report.bytes_sent)
    return report


def _move_range(plan: Plan, config: Config, conn: Any, aws: Any, spec: BucketSpec, group: list[BucketSpec], sid: str,
                rng: Range, report: ShardReport, opts: Any, size: int, staging: str, lock: TargetLock,
                progress: Callable[[str, int, int], None], count: Callable[[int, int], None]) -> None:
    from relocate.execute.objects import BucketPusher
    from relocate.sources.s3data import ObjectReader

    assert plan.shards is not None
    root, dest = config.root, spec.to
    where = posixpath.join(root, dest)
    rec = state.Records(conn, root, dest, rng.index, plan.shards["id"], sid)
    rec.begin()
    reader: ObjectReader | None = None
    failed_here = 0  # objects of this range that could not be written (recorded for status)
    listed = 0  # objects its listing held (recorded for verify)
    seen, seen_bytes = Digest(), 0  # the range as this run listed it (FINGERPRINT: what --finish compares)
    try:
        listing = list_range(aws, spec, group, rng.start, rng.end, start_after(rng.start or ""))
        for number, chunk in enumerate(chunked(listing, size)):
            lock.touch()
            keys = [o.key for o in chunk]
            paths = chunk_paths(keys, spec.strip, lambda s: first_owned_after(aws, spec, group, s))
            recorded = rec.read_chunk(number)
            cands = {o.key: r for o in chunk if (r := recorded.get(o.key)) is not None and r["etag"] == o.etag
                     and int(r["size"]) == o.size and r["path"] == posixpath.join(dest, paths[o.key])}
            present = files.sizes_of(conn, where, [paths[k] for k in cands]) if cands else {}
            entries: dict[str, dict[str, Any]] = {k: r for k, r in cands.items() if present.get(paths[k]) == int(r["size"])}
            todo = [o for o in chunk if o.key not in entries]
            listed += len(chunk)
            for o in chunk:
                seen.add(o.key, o.size, o.etag)
            seen_bytes += sum(o.size for o in chunk)
            # the range's size so far, the plan's count while more may follow: progress never
            # shows more objects sent than its total (objects added since the plan)
            count(max(listed, rng.objects), max(seen_bytes, rng.bytes))
            report.objects += len(chunk)
            report.bytes += sum(o.size for o in chunk)
            report.objects_skipped += len(entries)

            def commit(delivered: list[DoneObject], number: int = number, entries: dict[str, dict[str, Any]] = entries,
                       keys: list[str] = keys) -> None:
                for d in delivered:
                    entries[d.key] = ObjectEntry.from_done(d).to_dict()  # as in the sidecar manifest
                    if opts.on_event is not None:
                        opts.on_event({"event": "item", "bucket": d.bucket, "key": d.key, "path": d.path, "size": d.size,
                                       "sha256": d.sha256})
                report.objects_sent += len(delivered)
                report.bytes_sent += sum(d.size for d in delivered)
                rec.write_chunk(number, [entries[k] for k in keys if k in entries])
                lock.touch()

            if todo:
                if reader is None:
                    reader = ObjectReader(aws, spec.bucket, gets=opts.tuning.s3_gets, backoff_s=opts.tuning.get_backoff_s)
                pusher = BucketPusher(
                    reader, conn, bucket=spec.bucket, root=root, allow=config.allowed_links, dest=dest,
                    paths={o.key: paths[o.key] for o in todo}, staging=posixpath.join(staging, "b"),
                    opts=opts.transfer,
                    on_progress=lambda n, b: progress(sid, n, b),
                    on_warning=lambda msg: report.warnings.append(msg),
                )
                try:
                    pusher.run(todo, commit)
                except ItemError as exc:  # retrying cannot fix it: the shard is not complete (exit 4)
                    lines = exc.lines()
                    report.failed.extend(f"{sid} shard {rng.index}: {line}" for line in lines)
                    failed_here += max(1, len(lines))
                conn.ensure()
            elif set(recorded) != set(entries):
                rec.write_chunk(number, [entries[k] for k in keys if k in entries])
            rec.chunk_done(number, len(entries), sum(int(e["size"]) for e in entries.values()))
        count(listed, seen_bytes)  # the whole range listed: its size as it is now
        # before the range is marked complete: `move --finish` compares the range as listed
        # here with the source as it is then (shards/drift.py): objects written since are named
        state.write_json(conn, root, posixpath.join(layout.shard_dir(root, dest, rng.index), FINGERPRINT), json.dumps(
            {"plan": plan.shards["id"], "step": sid, "shard": rng.index, "digest": seen.hexdigest(), "objects": listed,
             "bytes": seen_bytes}).encode())
        rec.finish(complete=not failed_here, failed=failed_here, listed=listed)
    finally:
        if reader is not None:
            reader.close()


def check_index(plan: Plan, index: int) -> None:
    if plan.shards is None:
        raise UsageError("--shard: this plan has no shards", hint="make one with `relocate plan --shards N -o plan.json`")
    count = int(plan.shards["count"])
    if not 0 <= index < count:
        raise UsageError(f"--shard {index}: outside 0..{count - 1} (the plan has {count} shards)")
