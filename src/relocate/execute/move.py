"""Run a Plan: objects, env files, manifest, verification. Safe to interrupt and rerun."""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from relocate.components import Component, Context

from relocate.config import Config
from relocate.errors import BlockedError, ItemError, SafetyError
from relocate.execute.envfiles import EnvFile, secret_vars, env_name
from relocate.execute.gather import ENV_RECORD, Gathered, env_digests, journal_for, target_id
from relocate.execute.lock import TargetLock, audit
from relocate.execute.objects import BucketPusher, PushOptions, default_lanes
from relocate.execute.verify import VerifyReport, verify_snapshot
from relocate.plan import deadline
from relocate.plan.build import env_step_id, human_bytes
from relocate.plan.model import Plan
from relocate.snapshot import crypto, store
from relocate.snapshot.journal import DoneObject
from relocate.snapshot.keymap import map_keys, version_path
from relocate.sources.aws import Aws
from relocate.sources.inventory import BucketListing, fetch_parameters, fetch_secret, split_version_key
from relocate.sources.s3data import ObjectReader, VersionReader
from relocate.targets import files, layout, nolinks, releases, shell
from relocate.targets.ssh import Connection



@dataclass
class MoveOptions:
    transfers: int = 16
    keep_snapshot: bool = False
    lanes: int = field(default_factory=default_lanes)  # parallel SSH connections for bulk data (issue 6)
    bwlimit: float | None = None  # bytes/s over all lanes
    # item done / warning events for `--json` NDJSON (the CLI decides where they go)
    on_event: Callable[[dict], None] | None = None
    # --deadline (epoch seconds): irreplaceable steps first, then objects by priority, and
    # no new non-critical bucket starts unless it can finish in time (plan/deadline.py).
    deadline: float | None = None
    clock: Callable[[], float] = time.time


@dataclass
class MoveReport:
    objects_sent: int = 0
    bytes_sent: int = 0
    objects_skipped: int = 0
    env_written: list[str] = field(default_factory=list)
    env_unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # steps not started because of --deadline; a later run resumes
    components_changed: int = 0
    unchanged: list[str] = field(default_factory=list)  # component steps that found nothing to do
    snapshot: str | None = None
    release: str | None = None  # the deploy's active release (audit log, JSON)
    release_tried: str | None = None  # the release this run deployed (differs from `release` after a rollback)
    verify: VerifyReport | None = None

    @property
    def nothing_done(self) -> bool:
        return (self.objects_sent == 0 and not self.env_written and not self.components_changed and not self.failed
                and not self.left)

    def to_dict(self) -> dict:
        return {
            "objects_sent": self.objects_sent, "bytes_sent": self.bytes_sent, "objects_skipped": self.objects_skipped,
            "env_written": self.env_written, "env_unchanged": self.env_unchanged, "warnings": self.warnings,
            "snapshot": self.snapshot, "release": self.release, "release_tried": self.release_tried, "nothing_to_do": self.nothing_done, "failed": self.failed, "left": self.left,
            "unchanged": self.unchanged,
            "verify": self.verify.to_dict() if self.verify else None,
        }


Progress = Callable[[str, int, int], None]  # (step id, objects, bytes) just completed


def run_move(plan: Plan, config: Config, aws: Aws, conn: Connection, gathered: Gathered,
             opts: MoveOptions, progress: Progress | None = None, **kw: Any) -> MoveReport:
    """Run the plan holding the target's lock for the whole move (a second move is
    refused, exit 6), with an audit line on the target before and after
    (execute/lock.py: names and counts only, never values)."""
    root = config.root
    # A blocked plan touches nothing on the target: no lock, no audit line (an unwritable
    # root would otherwise be reported as a held lock, a full disk would get a log file).
    # A symlinked directory where the move writes is a refusal (exit 6), as when a writer
    # meets one itself (targets/nolinks.py); `plan` lists it as a blocker (exit 3).
    links = [b for b in plan.blockers if b.code == "symlink"]
    if links:
        raise SafetyError(f"refusing to write through the symlink {links[0].message.split(': a symlinked', 1)[0]} under target.root",
                          hint=nolinks.HINT)
    if plan.blockers:
        raise BlockedError(f"the plan has {len(plan.blockers)} blocker(s): {plan.blockers[0].message}")
    with TargetLock(conn, root, "move"):
        audit(conn, root, "move-start", target=plan.target, steps=[s.id for s in plan.steps])
        report = MoveReport()
        try:
            _run_move(plan, config, aws, conn, gathered, opts, progress, report=report, **kw)
        except BaseException as exc:
            try:
                active = releases.current_release(conn, root) if config.data.get("deploy") else None
                audit(conn, root, "move-end", result="error", error=type(exc).__name__, release=active,
                      tried_release=report.release_tried)
            except Exception:  # the connection may be what failed; the original error matters
                pass
            raise
        bad = bool(report.failed) or (report.verify is not None and not report.verify.ok)
        # Both releases: after a rollback `release` (active) is not the one that was tried.
        audit(conn, root, "move-end", result="failed" if bad else "ok", objects=report.objects_sent, bytes=report.bytes_sent,
              env_files=report.env_written, release=report.release, tried_release=report.release_tried,
              snapshot=report.snapshot.rsplit("/", 1)[-1] if report.snapshot else None)
        return report


def _run_move(plan: Plan, config: Config, aws: Aws, conn: Connection, gathered: Gathered,
              opts: MoveOptions, progress: Progress | None = None, *,
             components: Sequence[Component] = (), ctx: Context | None = None,
             component_data: dict[str, Any] | None = None, report: MoveReport | None = None) -> MoveReport:
    if plan.blockers:
        raise BlockedError(f"the plan has {len(plan.blockers)} blocker(s): {plan.blockers[0].message}")
    progress = progress or (lambda *_: None)
    report = report if report is not None else MoveReport()  # the caller's, so an error still has what was done
    root = config.root
    staging = layout.staging_dir(root)
    tid = target_id(config, conn)
    # Staging left by a killed run is never trusted: it is cleared, then refilled. Not
    # through a symlinked .relocate (nolinks.py): rm -rf would follow it.
    conn.run(nolinks.guarded(root, [layout.sidecar_dir(root), staging],
                             shell.all_of(["mkdir", "-p", "--", layout.sidecar_dir(root)], ["rm", "-rf", "--", staging])))
    snap = store.begin(config.snapshot_dir)
    journal = journal_for(config)
    try:
        manifest_buckets = []
        identity = crypto.load_identity(config.key_file, create=True)
        component_manifest: dict[str, dict[str, Any]] = {}

        def run_components(wanted: Callable[[str], bool]) -> None:
            if not components or ctx is None:
                return
            ctx.snapshot_dir, ctx.identity = snap.path, identity
            named = {c.name: c for c in components}
            for step in plan.steps:
                comp = named.get(step.kind)
                if comp is None or step.id in ran or not wanted(step.kind):
                    continue
                ran.add(step.id)
                outcome = comp.execute(ctx, (component_data or {}).get(comp.name), step)
                component_manifest.setdefault(comp.name, {})[step.id] = outcome.manifest
                report.components_changed += int(outcome.changed)
                if not outcome.changed and not outcome.failed:
                    report.unchanged.append(step.id)
                report.warnings.extend(outcome.warnings)
                report.failed.extend(outcome.failed)
                report.release = outcome.manifest.get("active") or report.release
                report.release_tried = outcome.manifest.get("tried") or report.release_tried

        # Packages first, then what cannot be recreated and is small (secrets, DNS, databases,
        # host config) before any bulk object: the order plan/deadline.py documents.
        ran: set[str] = set()
        run_components(lambda kind: kind == "prepare")
        early_env = _move_env(plan, config, aws, conn, report, gathered)
        run_components(lambda kind: kind in deadline.EARLY_KINDS)
        (opts.on_event or (lambda e: None))({"event": "phase", "phase": "objects"})
        landed: dict[str, set[str]] = {}  # destination -> keys delivered (and hashed on the target) in this run
        for listing in _bucket_order(gathered.inventory.buckets, opts):
            sid = listing.step_id
            if plan.step(sid) is None:
                continue
            done = dict(gathered.done.get(sid, {}))
            todo = [o for o in listing.objects if o.key not in done]
            if todo and not _may_start(plan, sid, opts):
                report.left.append(f"{sid}: {len(todo)} object(s), {human_bytes(sum(o.size for o in todo))} not started "
                                   "(would not finish before the deadline; run again to resume)")
                todo = []
            report.objects_skipped += len(done)
            paths = _paths(listing)
            on_event = opts.on_event or (lambda e: None)
            fresh = landed.setdefault(listing.dest, set())

            def commit(delivered: list[DoneObject], done: dict[str, DoneObject] = done, fresh: set[str] = fresh) -> None:
                # One journal transaction per batch, after the batch is in place on the target.
                journal.record(tid, delivered)
                fresh.update(d.key for d in delivered)
                for d in delivered:
                    done[d.key] = d
                    on_event({"event": "item", "bucket": d.bucket, "key": d.key, "path": d.path, "size": d.size, "sha256": d.sha256})
                report.objects_sent += len(delivered)
                report.bytes_sent += sum(d.size for d in delivered)

            if todo:
                # Made only when there is work: a reader asks S3 where the bucket lives, and a
                # second run that has nothing to move makes no request for it.
                reader = (VersionReader if listing.kind == "versions" else ObjectReader)(aws, listing.spec.bucket)
                pusher = BucketPusher(
                    reader, conn, bucket=listing.journal_bucket, root=root, allow=config.allowed_links,
                    dest=listing.dest, paths=paths, staging=posixpath.join(staging, "b"),
                    opts=PushOptions.from_env(transfers=opts.transfers, lanes=opts.lanes, bwlimit=opts.bwlimit),
                    keep_dir=(snap.objects_dir / listing.dest) if opts.keep_snapshot else None,
                    on_progress=lambda n, b, sid=sid: progress(sid, n, b),
                    on_warning=lambda msg: (report.warnings.append(msg), on_event({"event": "warning", "message": msg})),
                )
                try:
                    pusher.run(todo, commit)
                except ItemError as exc:  # retrying cannot fix it: the other buckets still move (exit 4)
                    report.failed.append(f"{sid}: {exc.line()}")
                    on_event({"event": "warning", "message": f"{sid}: {exc.message}"})
                finally:
                    reader.close()  # its GET thread and connections
                conn.ensure()  # the lanes retried past a dropped link; the control connection may not have
            records = [done[o.key] for o in listing.objects if o.key in done]
            entries = [_entry(d, listing.kind == "versions") for d in records]
            head = {"bucket": listing.spec.bucket, "prefix": listing.spec.prefix, "to": listing.dest}
            if listing.kind == "versions":
                head.update(journal_bucket=listing.journal_bucket, delete_markers=listing.delete_markers)
            if todo or _markers_unrecorded(conn, root, listing):
                sidecar = {**head, "objects": entries}
                files.write_file_atomic(conn, layout.sidecar_path(root, listing.dest),
                                        json.dumps(sidecar, ensure_ascii=False, indent=0).encode(), mode=0o644, root=root)
            manifest_buckets.append({**head, "objects": entries})

        env_manifest, rendered = early_env
        run_components(lambda kind: True)
        # Each batch's staging dir went with it; the empty staging dir goes too (docs/transfer.md).
        conn.run(nolinks.guarded(root, [staging], shell.line(["rm", "-rf", "--", staging])), timeout=60)
        if report.nothing_done:
            store.discard(snap)
            return report
        if rendered:
            data = json.dumps({p: c.decode("utf-8") for p, c in rendered.items()}).encode()
            crypto.write_private(snap.secrets_path, crypto.encrypt(data, identity))
        final = store.commit(snap, {
            "id": snap.id, "created_at": plan.created_at, "app": config.app.name, "target": tid, "root": root,
            "fingerprint": plan.fingerprint, "buckets": manifest_buckets, "env_files": env_manifest,
            "components": component_manifest,
            # what the listed prefixes leave out at the source: `verify` reports it again
            "left_out": [o.to_dict() for o in gathered.inventory.left_out],
        })
        report.snapshot = str(final.path)
        if ctx is not None:
            ctx.snapshot_dir = final.path
        (opts.on_event or (lambda e: None))({"event": "phase", "phase": "verify"})
        report.verify = verify_snapshot(conn, root, final, identity, components=components, ctx=ctx, landed=landed)
        return report
    except BaseException:
        if snap.path.exists() and snap.path.name.endswith(".partial"):
            store.discard(snap)
        raise
    finally:
        journal.close()


def _bucket_order(buckets: list[BucketListing], opts: MoveOptions) -> list[BucketListing]:
    """relocate.yaml order, or under --deadline critical, normal, bulk (stable)."""
    if opts.deadline is None:
        return list(buckets)
    return sorted(buckets, key=lambda b: deadline.PRIORITIES.index(b.spec.priority) if b.spec.priority in deadline.PRIORITIES else 1)


def _may_start(plan: Plan, sid: str, opts: MoveOptions) -> bool:
    """The `stop_before` check: only under --deadline, and never for critical data."""
    step = plan.step(sid)
    if opts.deadline is None or step is None:
        return True
    now = opts.clock()
    verify = plan.step("verify")
    keep = deadline.reserve(now, opts.deadline) + (verify.est_seconds if verify else 0.0)
    return deadline.should_start(deadline.step_priority(step), step.est_seconds, now, opts.deadline, keep)


def _entry(d: DoneObject, version: bool = False) -> dict:
    key, vid = split_version_key(d.key) if version else (d.key, None)
    entry = {"key": key, "path": d.path, "size": d.size, "sha256": d.sha256, "etag": d.etag,
             "content_type": d.content_type, "metadata": d.metadata}
    if version:
        entry["version_id"] = vid
    return entry


def _paths(listing: BucketListing) -> dict[str, str]:
    """Pusher key -> path under listing.dest (snapshot/keymap.py)."""
    if listing.kind == "versions":
        return {o.key: version_path(*split_version_key(o.key), listing.spec.strip) for o in listing.objects}
    return map_keys([o.key for o in listing.objects], listing.spec.strip)


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


def _move_env(plan: Plan, config: Config, aws: Aws, conn: Connection, report: MoveReport,
              gathered: Gathered) -> tuple[list[dict], dict[str, bytes]]:
    envs: dict[str, EnvFile] = {}
    for p in config.parameters:
        if plan.step(env_step_id(p.to)) is None:
            continue
        env = envs.setdefault(p.to, EnvFile(p.to))
        for rel, value in fetch_parameters(aws, p):
            env.add(env_name(rel), value, f"ssm:{p.path}{rel}")
    for s in config.secrets:
        if plan.step(env_step_id(s.to)) is None:
            continue
        env = envs.setdefault(s.to, EnvFile(s.to))
        for name, value in secret_vars(s.name, fetch_secret(aws, s)):
            env.add(name, value, f"secret:{s.name}")
    manifest: list[dict] = []
    rendered: dict[str, bytes] = {}
    for path, env in envs.items():
        report.warnings.extend(env.conflicts)
        content = env.render()
        rendered[path] = content
        remote = posixpath.join(config.root, path)
        current = files.read_file(conn, remote)
        if current is not None and current[0] == content and not current[1] & 0o077:
            report.env_unchanged.append(path)
        else:
            # The env file's directory is private (0700 unless target.env_dir_mode says
            # otherwise) and the file is 0600 from its first byte (files.write_file_atomic).
            files.private_dir(conn, config.root, posixpath.dirname(remote), config.env_dir_mode, config.allowed_links)
            files.write_file_atomic(conn, remote, content, mode=0o600, root=config.root, allow=config.allowed_links)
            report.env_written.append(path)
        manifest.append({"path": path, "vars": list(env.vars), "sources": sorted(set(env.origins.values()))})
    # What the env files were made from (versions, never values): the next plan compares.
    digests = env_digests(config, gathered.inventory)
    record = dict(gathered.env_record)
    for path, content in rendered.items():
        record[path] = {"sources": digests.get(path, ""), "sha256": hashlib.sha256(content).hexdigest()}
    if record != gathered.env_record:
        files.write_file_atomic(conn, posixpath.join(layout.state_dir(config.root), ENV_RECORD),
                                json.dumps(record, indent=1).encode(), mode=0o600)  # hashes of secret files: 0600 like them
    return manifest, rendered
