"""The `s3` kind: objects of the buckets under `source.s3`, one step per entry (and one
more for a versioned entry's older versions with `versions: all`).

gather: the S3 listing and what is already on the target, read by execute/gather.py
(the plan's own facts) -- plan: one step per listing, pure -- apply: push what is not
there yet through the transfer engine (execute/objects.py), journal each batch, write
the target's sidecar -- verify: sha256 of every file, computed on the target.
"""

from __future__ import annotations

import json
import posixpath
from typing import TYPE_CHECKING, Any

from relocate.errors import ItemError, ItemsFailed
from relocate.kinds import Check, Context, Kind, Outcome, PlanPart
from relocate.config import Config
from relocate.plan.build import Rates, eta, human_bytes, left_out_message
from relocate.plan.deadline import step_priority
from relocate.plan.model import Finding, Step
from relocate.snapshot.journal import DoneObject, Journal
from relocate.snapshot.keymap import map_keys, version_path
from relocate.snapshot.manifest import BucketEntry, ObjectEntry
from relocate.snapshot.store import Snapshot, json_chunks
from relocate.sources.inventory import BucketListing, Inventory, ObjectInfo, split_version_key
from relocate.targets import files, layout, nolinks, shell
from relocate.ssh.connection import Connection

if TYPE_CHECKING:
    from relocate.execute.verify import VerifyReport

KIND = "s3"


def s3_step_id(bucket: str, prefix: str) -> str:
    return f"s3:{bucket}/{prefix}"


def plan_objects(inventory: Inventory, done_keys: dict[str, set[str]], rates: Rates = Rates(),
                 files_under: dict[str, dict[str, int]] | None = None, root: str = "") -> PlanPart:
    """Pure: a step per listing (what is left to send, its estimate, how it changes the
    target), and the warnings about what the listed prefixes and versions leave behind.
    `files_under`: each `to:`'s files as the target's probe listed them (Gathered.files_under),
    for the keys to send whose directory one of them stands in (a warning: those keys fail
    alone, exit 4, and the rest moves; README, the target is not trusted)."""
    part = PlanPart()
    for listing in inventory.buckets:
        sid = listing.step_id
        done = done_keys.get(sid, set())
        todo = [o for o in listing.objects if o.key not in done]
        blocked = _in_the_way(listing, todo, (files_under or {}).get(listing.spec.to))
        if blocked:
            first = blocked[0][0]
            where = sorted({posixpath.join(root, listing.spec.to, f) for _, f in blocked})
            part.warnings.append(Finding("in-the-way", (
                f"{len(blocked)} object(s) of s3://{listing.spec.bucket}/{listing.spec.prefix} cannot be written: "
                f"{where[0]} is a file where their directory must go" + (f" (and {len(where) - 1} more such file(s))"
                                                                       if len(where) > 1 else "")
                + f" (first: {first!r}); the move names them as failed (exit 4) and moves the rest: move the file away "
                "to send them too")))
        todo_bytes = sum(o.size for o in todo)
        older = listing.kind == "versions"
        detail = f"{listing.count - len(todo)} already on the target" if len(todo) < listing.count else ""
        if older:
            detail = "; ".join(filter(None, [f"older versions, {len(listing.delete_markers)} delete marker(s) recorded", detail]))
        step = Step(
            id=sid, kind=KIND, source=f"s3://{listing.spec.bucket}/{listing.spec.prefix}" + (" (older versions)" if older else ""),
            dest=listing.dest, count=listing.count, bytes=listing.bytes, todo_count=len(todo), todo_bytes=todo_bytes,
            est_seconds=eta(todo_bytes, len(todo), rates), detail=detail, priority=listing.spec.priority,
            region=listing.region or "",
            change=f"write {len(todo):,} file(s) ({human_bytes(todo_bytes)}) under {listing.dest}" if todo else "",
        )
        step.deadline_bound = step_priority(step) != "critical"
        part.steps.append(step)
        if not listing.objects and listing.kind == "current":
            part.warnings.append(Finding("empty-source", f"s3://{listing.spec.bucket}/{listing.spec.prefix} holds no objects"))
    for out in inventory.left_out:
        part.warnings.append(Finding("s3-left-out", left_out_message(out.to_dict())))
    for v in inventory.versions_left:
        if v["status"] == "unknown":
            part.warnings.append(Finding("s3-versions", (
                f"s3://{v['bucket']}: cannot tell whether it keeps older versions (GetBucketVersioning refused); "
                "if it does, they are not moved: grant s3:GetBucketVersioning, or set `versions: all` to move them")))
            continue
        part.warnings.append(Finding("s3-versions", (
            f"s3://{v['bucket']}/{v['prefix']}: versioning {v['status']}: {v['versions']} older version(s), {human_bytes(v['bytes'])}, "
            f"and {v['delete_markers']} delete marker(s) are NOT moved (only the current objects are); "
            "set `versions: all` on this source.s3 entry to move them too")))
    return part


class Objects(Kind):
    name = KIND

    def enabled(self, config: Config) -> bool:
        return bool(config.s3)

    def gather(self, ctx: Context) -> Any:
        return ctx.gathered  # execute/gather.py read the listing and the target for the plan itself

    def plan(self, ctx: Context, gathered: Any) -> PlanPart:
        # the object steps are planned with the bucket listings the plan's fingerprint
        # comes from; nothing is planned from a listing that was not taken
        return (plan_objects(gathered.inventory, gathered.done_keys(), ctx.rates, gathered.files_under, ctx.config.root)
                if gathered is not None else PlanPart())

    def apply(self, ctx: Context, gathered: Any, step: Step) -> Outcome:
        return self._push(ctx, gathered, step, send=True)

    def leave(self, ctx: Context, gathered: Any, step: Step) -> Outcome:
        return self._push(ctx, gathered, step, send=False)

    def record(self, manifest: dict[str, Any], step: Step, outcome: Outcome) -> None:
        manifest.setdefault("buckets", []).append(outcome.build() if outcome.build is not None else outcome.manifest)

    def _push(self, ctx: Context, gathered: Any, step: Step, *, send: bool) -> Outcome:
        run, conn, config = ctx.run, ctx.conn, ctx.config
        assert run is not None, "apply runs inside the runner"
        report, root = run.report, config.root
        listing = next(b for b in gathered.inventory.buckets if b.step_id == step.id)
        done = dict(gathered.done.get(step.id, {}))
        todo = [o for o in listing.objects if o.key not in done] if send else []
        report.objects_skipped += len(done)
        # What the target hashed on arrival: in this run (added as batches land) or in an
        # earlier one the journal or sidecar records, found with its size (or, under
        # --checksum, its sha256) by the gather. The final check only sizes these: a resume
        # does not hash again what was verified before the kill (issue 18).
        fresh = run.landed.setdefault(listing.dest, set())
        fresh.update(done)
        failed: list[str] = []
        # {key: why} of what the target could never write: filed in the manifest (verify
        # names them, exit 4) and, never journalled, sent again by the next run
        unmoved: dict[str, str] = {}
        paths: dict[str, str] = {}
        # Files a killed run placed but never journalled, found by their receipts with
        # their size (snapshot/receipts.py): journalled now, as that run would have.
        receipted = gathered.receipted.get(step.id)
        if receipted:
            run.journal.record(ctx.target_id, receipted.values())

        def commit(delivered: list[DoneObject]) -> None:
            # One journal transaction per batch, after the batch is in place on the target.
            run.journal.record(ctx.target_id, delivered)
            fresh.update(d.key for d in delivered)
            for d in delivered:
                done[d.key] = d
                run.event({"event": "item", "bucket": d.bucket, "key": d.key, "path": d.path, "size": d.size, "sha256": d.sha256})
            report.objects_sent += len(delivered)
            report.bytes_sent += sum(d.size for d in delivered)

        def warn(msg: str) -> None:
            report.warnings.append(msg)
            run.event({"event": "warning", "message": msg})

        if todo:
            # Made only when there is work: a reader asks S3 where the bucket lives, and a
            # second run that has nothing to move makes no request for it, and does not
            # even import the transfer engine (tests/test_rerun_cost.py).
            from relocate.execute.objects import BucketPusher
            from relocate.sources.s3data import ObjectReader, VersionReader

            opts = run.opts
            paths = _paths(listing)
            reader = (VersionReader if listing.kind == "versions" else ObjectReader)(ctx.aws, listing.spec.bucket,
                                                                                     gets=opts.tuning.s3_gets,
                                                                                     backoff_s=opts.tuning.get_backoff_s)
            pusher = BucketPusher(
                reader, conn, bucket=listing.journal_bucket, root=root, allow=config.allowed_links,
                dest=listing.dest, paths=paths, staging=posixpath.join(run.staging, "b"),
                opts=opts.transfer,
                keep_dir=(run.snap.objects_dir / listing.dest) if opts.keep_snapshot else None,
                on_progress=lambda n, b: run.progress(step.id, n, b), on_warning=warn,
                receipts=layout.receipts_dir(root, listing.dest),
            )
            try:
                pusher.run(todo, commit)
            except ItemError as exc:  # retrying cannot fix it: the other steps still run (exit 4)
                failed.extend(f"{step.id}: {line}" for line in exc.lines())
                run.event({"event": "warning", "message": f"{step.id}: {exc.message}"})
                # ItemsFailed: all else landed and is journalled; any other ItemError stopped
                # the bucket, so whatever it did not deliver is unmoved, for that reason
                why = exc.items if isinstance(exc, ItemsFailed) else {}
                unmoved = {o.key: why.get(o.key, exc.message) for o in todo if o.key not in done}
            finally:
                reader.close()  # its GET thread and connections
            conn.ensure()  # the lanes retried past a dropped link; the control connection may not have
        versions = listing.kind == "versions"

        def entry() -> dict[str, Any]:
            return BucketEntry(listing.spec.bucket, listing.spec.prefix, listing.dest,
                               [ObjectEntry.from_done(done[o.key], versions) for o in listing.objects if o.key in done],
                               listing.journal_bucket if versions else None,
                               listing.delete_markers if versions else None,
                               [{"key": k, "path": posixpath.join(listing.dest, paths[k]), "error": why}
                                for k, why in unmoved.items()]).to_dict(lazy=True)

        if todo or receipted is not None or _markers_unrecorded(conn, root, listing):
            made = entry()
            files.write_file_atomic(conn, layout.sidecar_path(root, listing.dest),
                                    (piece.encode() for piece in json_chunks(made)), mode=0o644, root=root)
            if send:
                # What the receipts told is now in the journal and the sidecar: a rerun reads
                # the sidecar, not a growing pile of receipts. (Objects the target refused stop
                # nothing, execute/objects.py; only an ItemError that stops the bucket leaves
                # what its lanes had placed unjournalled, sent again: a rare, bounded cost.)
                # Not through a symlinked .relocate or receipts (nolinks.py): rm -rf would follow it.
                # Their parent goes too once empty: receipts exist only after a killed move (README).
                gone = layout.receipts_dir(root, listing.dest)
                clear = shell.line(["rm", "-rf", "--", gone]) + " && { " + \
                    shell.line(["rmdir", "--", posixpath.dirname(gone)]) + " 2>/dev/null || true; }"
                conn.run(nolinks.guarded(root, [gone], clear, config.allowed_links), timeout=120)
            return Outcome(bool(todo), made, failed=failed)
        # Nothing sent: the manifest's entry (one per object) is built only if the run commits
        # a snapshot; a rerun with nothing to do commits none (issue 18).
        return Outcome(False, failed=failed, build=entry)


KIND_CLASS = Objects


# --- verify ---------------------------------------------------------------------

def verify_objects(conn: Connection, root: str, manifest: dict[str, Any], report: "VerifyReport",
                   landed: dict[str, set[str]] | None = None) -> dict[str, list[str]]:
    """Compare hashes; returns {bucket: keys missing or differing} for the journal.

    `landed` ({destination: keys}) names objects `move` knows the target hashed as they
    were written and matched against the sha256 computed while streaming: delivered in
    this run, or in an earlier one (the journal or sidecar says so, and the gather found
    them with their size). When every object of a destination is one of those, re-reading
    the whole tree would hash the same bytes again, so `move` checks that each is there
    with its size instead; `relocate verify` re-hashes everything, and `move --checksum`
    re-hashed what was already there before sending."""
    bad: dict[str, list[str]] = {}
    for bucket in map(BucketEntry.from_dict, manifest.get("buckets", [])):
        dest = bucket.to
        fresh = (landed or {}).get(dest, set())
        by_size = bool(bucket.objects) and all(obj.journal_key in fresh for obj in bucket.objects)
        on_target = files.tree_facts(conn, posixpath.join(root, dest), hashes=not by_size)
        for obj in bucket.objects:
            rel = layout.under(obj.path, dest)
            got = on_target.get(rel)
            if got is None:
                report.missing.append(obj.path)
            elif got != (obj.size if by_size else obj.sha256):
                report.differing.append(obj.path)
            else:
                report.matched += 1
                report.checked_on_arrival += by_size
                continue
            bad.setdefault(bucket.journal_bucket or bucket.bucket, []).append(obj.journal_key)
        # never written by the move (no sha256 to compare with): a difference until a move writes them
        report.failed.extend({"path": f["path"], "error": f["error"]} for f in bucket.failed)
        if bucket.versions:
            report.checks.append(_markers_check(conn, root, bucket))
    return bad


def _markers_check(conn: Connection, root: str, bucket: BucketEntry) -> Check:
    """Older versions: the delete markers the snapshot recorded are in the target's sidecar."""
    label = f"delete markers of s3://{bucket.bucket}/{bucket.prefix} in {bucket.to}"
    found = files.read_file(conn, layout.sidecar_path(root, bucket.to))
    try:
        held = json.loads(found[0]).get("delete_markers") if found else None
    except ValueError:
        held = None
    want = bucket.delete_markers or []
    if held is None and not want:
        return Check(label, True, "none")
    return Check(label, held == want, f"{len(want)} recorded" if held == want else
                 f"the target's sidecar holds {len(held) if held is not None else 'none'}, the snapshot {len(want)}")


def forget_bad(snap: Snapshot, manifest: dict[str, Any], bad: dict[str, list[str]]) -> None:
    """A file verify found missing or damaged leaves the journal, so the next `move`
    sends it again instead of trusting journal + size (issue 6: a flipped byte keeps
    the size). The journal sits beside the snapshots (execute/gather.journal_for)."""
    if not bad or not manifest.get("target"):
        return
    journal = Journal(snap.path.parent / "journal.sqlite")
    try:
        for bucket, keys in bad.items():
            journal.forget(manifest["target"], bucket, keys)
    finally:
        journal.close()


def _paths(listing: BucketListing) -> dict[str, str]:
    """Pusher key -> path under listing.dest (snapshot/keymap.py)."""
    if listing.kind == "versions":
        return {o.key: version_path(*split_version_key(o.key), listing.spec.strip) for o in listing.objects}
    return map_keys([o.key for o in listing.objects], listing.spec.strip)


def _in_the_way(listing: BucketListing, todo: list[ObjectInfo], found: dict[str, int] | None) -> list[tuple[str, str]]:
    """(key, the file under `to:` in its way) for each key to send one of whose directories
    is a plain file on the target, as listed. Only asked when there is both something to
    send and a file there: a first move (nothing there) and a rerun (nothing to send) skip it."""
    if not found or not todo:
        return []
    paths = _paths(listing)
    # older versions land under `<to>/%%versions`: the listing is of `<to>`
    base = listing.dest[len(listing.spec.to) + 1:] + "/" if listing.dest != listing.spec.to else ""
    out: list[tuple[str, str]] = []
    for o in todo:
        path = base + paths[o.key]
        cut = path.find("/")
        while cut > 0:
            if path[:cut] in found:
                out.append((o.key, path[:cut]))
                break
            cut = path.find("/", cut + 1)
    return out


def _markers_unrecorded(conn: Connection, root: str, listing: BucketListing) -> bool:
    """Older versions: a delete marker is a record, not a file; the sidecar must hold
    exactly the source's. Only asked when the bucket has markers and nothing else changed."""
    if listing.kind != "versions" or not listing.delete_markers:
        return False
    found = files.read_file(conn, layout.sidecar_path(root, listing.dest))
    try:
        return found is None or json.loads(found[0]).get("delete_markers") != listing.delete_markers
    except ValueError:
        return True
