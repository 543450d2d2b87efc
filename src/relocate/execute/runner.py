"""The runner: execute a Plan, step by step, in the order the plan shows. Safe to interrupt
and rerun.

It is the only caller of `Kind.apply` (relocate.kinds). Around the steps it holds the
target's lock, writes the audit lines, opens the snapshot and commits it (or discards it
when nothing changed), and finally verifies on the target. Under `--deadline` it applies
the rule the plan decided: a step marked `deadline_bound` starts only if the plan's
estimate says it can finish before the deadline (plan/deadline.py); nothing is re-ranked
here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from relocate.config import Config
from relocate.errors import BlockedError, ItemError, SafetyError
from relocate.execute import gate
from relocate.execute.lock import TargetLock, audit_command
from relocate.execute.verify import VerifyReport, verify_snapshot
from relocate.kinds import Context, Kind, Outcome, Run
from relocate.plan import deadline
from relocate.plan.build import human_bytes
from relocate.plan.model import Plan, Step
from relocate.settings import Settings
from relocate.snapshot import crypto, store
from relocate.execute.gather import journal_for
from relocate.targets import layout, nolinks, releases, shell

log = logging.getLogger(__name__)  # --debug's log file only


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
    unchanged: list[str] = field(default_factory=list)  # steps of the other kinds that found nothing to do
    snapshot: str | None = None
    snapshot_why: str = ""  # why a move with nothing to do wrote one (the human output says it)
    release: str | None = None  # the deploy's active release (audit log, JSON)
    release_tried: str | None = None  # the release this run deployed (differs from `release` after a rollback)
    verify: VerifyReport | None = None

    @property
    def nothing_done(self) -> bool:
        return (self.objects_sent == 0 and not self.env_written and not self.components_changed and not self.failed
                and not self.left)

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects_sent": self.objects_sent, "bytes_sent": self.bytes_sent, "objects_skipped": self.objects_skipped,
            "env_written": self.env_written, "env_unchanged": self.env_unchanged, "warnings": self.warnings,
            "snapshot": self.snapshot, "release": self.release, "release_tried": self.release_tried, "nothing_to_do": self.nothing_done, "failed": self.failed, "left": self.left,
            "unchanged": self.unchanged,
            "verify": self.verify.to_dict() if self.verify else None,
        }


Progress = Callable[[str, int, int], None]  # (step id, objects, bytes) just completed

# Kinds whose outcomes the report counts itself (objects sent, env files written).
_COUNTED = ("s3", "env")
_PHASE = {"s3": "objects"}


def run_move(plan: Plan, config: Config, ctx: Context, kinds: Sequence[Kind], gathered: dict[str, Any],
             opts: Settings, approval: gate.Approval | None, progress: Progress | None = None) -> MoveReport:
    """Run the plan holding the target's lock for the whole move (a second move is
    refused, exit 6), with an audit line on the target before and after
    (execute/lock.py: names and counts only, never values). `approval` is the gate's
    (execute/gate.py) for exactly the plan's changes; `gathered` is each kind's gather."""
    conn, root = ctx.conn, config.root
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
    gate.require(approval, plan.changes)
    named = {k.name: k for k in kinds}
    unknown = [s.id for s in plan.steps if s.kind != "verify" and s.kind not in named]
    if unknown:
        raise SafetyError(f"the plan has step(s) no configured kind runs: {', '.join(unknown[:5])}",
                          hint="run `relocate plan -o` again")
    staging = layout.staging_dir(root)
    # The lock, the move-start line and the staging dir are one remote command, and so are
    # the staging dir's removal, the move-end line and the unlock (lock.py): a rerun with
    # nothing to do asks the target three times in all (issue 18). Staging left by a killed
    # run is never trusted: it is cleared, then refilled; not through a symlinked .relocate
    # (nolinks.py): rm -rf would follow it.
    start = [audit_command(root, "move-start", target=plan.target, steps=[s.id for s in plan.steps],
                           changes=list(approval.changes) if approval else [], approved=approval.how if approval else None),
             nolinks.guarded(root, [layout.sidecar_dir(root), staging],
                             shell.all_of(["mkdir", "-p", "--", layout.sidecar_dir(root)], ["rm", "-rf", "--", staging]))]
    with TargetLock(conn, root, "move", then=start) as lock:
        report = MoveReport()
        try:
            _run(plan, config, ctx, named, gathered, opts, progress or (lambda *_: None), report, staging)
        except BaseException as exc:
            try:
                active = releases.current_release(conn, root) if config.data.get("deploy") else None
                lock.before_release.append(audit_command(root, "move-end", result="error", error=type(exc).__name__,
                                                         release=active, tried_release=report.release_tried))
            except Exception:  # the connection may be what failed; the original error matters
                pass
            raise
        bad = bool(report.failed) or (report.verify is not None and not report.verify.ok)
        # Each batch's staging dir went with it; the empty staging dir goes too (docs/transfer.md).
        lock.before_release.append(nolinks.guarded(root, [staging], shell.line(["rm", "-rf", "--", staging])))
        # Both releases: after a rollback `release` (active) is not the one that was tried.
        lock.before_release.append(audit_command(
            root, "move-end", result="failed" if bad else "ok", objects=report.objects_sent, bytes=report.bytes_sent,
            env_files=report.env_written, release=report.release, tried_release=report.release_tried,
            snapshot=report.snapshot.rsplit("/", 1)[-1] if report.snapshot else None))
    return report


def _run(plan: Plan, config: Config, ctx: Context, named: dict[str, Kind], gathered: dict[str, Any],
         opts: Settings, progress: Progress, report: MoveReport, staging: str) -> None:
    """The steps, the snapshot and the final check, under the lock, with `staging` made."""
    conn, root = ctx.conn, config.root
    snap = store.begin(config.snapshot_dir)
    # Whether an earlier move (killed, interrupted) or a rollback changed the target after
    # the latest snapshot was taken; then this move is marked the same until its own
    # snapshot is committed (store.UNRECORDED_MARK).
    unrecorded = store.unrecorded(config.snapshot_dir)
    store.mark_unrecorded(config.snapshot_dir, f"move {snap.id} ran and did not finish")
    journal = journal_for(config)
    try:
        identity = crypto.load_identity(config.key_file, create=True, given=opts.age_identity)
        run = Run(report=report, opts=opts, snap=snap, journal=journal, staging=staging, progress=progress)
        ctx.snapshot_dir, ctx.identity, ctx.run = snap.path, identity, run
        outcomes: list[tuple[Kind, Step, Outcome]] = []
        broken: list[dict[str, str]] = []  # steps an ItemError ended (_step_failed)
        outcome: Outcome | None = None
        phase = ""
        for step in plan.steps:
            if step.kind == "verify":
                continue  # the runner's own last stage, below
            kind = named[step.kind]
            if _PHASE.get(step.kind, step.kind) != phase:
                phase = _PHASE.get(step.kind, step.kind)
                run.event({"event": "phase", "phase": phase})
            log.debug("step %s (%s): %d item(s), %d byte(s) to do", step.id, step.kind, step.todo_count, step.todo_bytes)
            if _may_start(plan, step, opts):
                try:
                    outcome = kind.apply(ctx, gathered.get(kind.name), step)
                except ItemError as exc:  # what this step writes can never be written there: the rest still runs
                    outcome = _step_failed(run, step, exc, broken)
            else:
                report.left.append(f"{step.id}: {step.todo_count} object(s), {human_bytes(step.todo_bytes)} not started "
                                   "(would not finish before the deadline; run again to resume)")
                outcome = kind.leave(ctx, gathered.get(kind.name), step)
            outcomes.append((kind, step, outcome))
            log.debug("step %s: %s%s", step.id, "changed" if outcome.changed else "unchanged",
                      f", {len(outcome.failed)} failed" if outcome.failed else "")
            if step.kind not in _COUNTED:
                report.components_changed += int(outcome.changed)
                if not outcome.changed and not outcome.failed:
                    report.unchanged.append(step.id)
            report.warnings.extend(outcome.warnings)
            report.failed.extend(outcome.failed)
            report.release = outcome.manifest.get("active") or report.release
            report.release_tried = outcome.manifest.get("tried") or report.release_tried
        # Nothing done: no new snapshot, unless the latest one is of a move with failed items
        # (e.g. a release rolled back). `verify` reports those from it for as long as it is
        # the latest, so once a move finds everything in place a fresh one, recording the
        # target as it is now, replaces it (and is verified below).
        # Likewise when there is no snapshot at all, or the target may hold what none
        # records (an interrupted move's release, a rollback's switch): `verify` compares
        # the target with the latest snapshot, so it must say what is there.
        latest = store.latest(config.snapshot_dir)
        if report.nothing_done:
            if latest is None:
                report.snapshot_why = f"the first in {config.snapshot_dir}"
            elif unrecorded:
                report.snapshot_why = "the target changed after the last one: an interrupted move or a rollback"
            elif store.recorded_failure(latest):
                report.snapshot_why = "replaces the last one, which recorded failed items"
            else:
                store.discard(snap)
                store.clear_unrecorded(config.snapshot_dir)
                return
        # Filed only for a snapshot that is kept: a rerun with nothing to do builds no manifest.
        manifest: dict[str, Any] = {"buckets": [], "env_files": [], "components": {}}
        for kind, step, outcome in outcomes:
            if not any(b["step"] == step.id for b in broken):
                kind.record(manifest, step, outcome)
        if run.secret_files:
            data = json.dumps({p: c.decode("utf-8") for p, c in run.secret_files.items()}).encode()
            crypto.write_private(snap.secrets_path, crypto.encrypt(data, identity))
        components = {name: part for name, part in manifest["components"].items() if part}
        final = store.commit(snap, {
            "id": snap.id, "created_at": plan.created_at, "app": config.app.name, "target": ctx.target_id, "root": root,
            "fingerprint": plan.fingerprint, "buckets": manifest["buckets"], "env_files": manifest["env_files"],
            "components": components, **({"failed_steps": broken} if broken else {}),
            # what the listed prefixes leave out at the source: `verify` reports it again
            "left_out": list(plan.left_out),
        }, failed=len(report.failed))
        store.clear_unrecorded(config.snapshot_dir)  # the snapshot says what the target holds
        report.snapshot = str(final.path)
        ctx.snapshot_dir = final.path
        # The final check reads the manifest back from disk: the copy built here (a dict per
        # object, held by the outcomes and by the loops' last `outcome`) is let go first
        # rather than held alongside it. (A kept snapshot no longer means a step ran: a
        # sharded --finish with only the shards' objects has none of its own.)
        del outcomes, manifest, components
        outcome = None
        run.event({"event": "phase", "phase": "verify"})
        report.verify = verify_snapshot(conn, root, final, identity, kinds=list(named.values()), ctx=ctx, landed=run.landed)
    except BaseException:
        if snap.path.exists() and snap.path.name.endswith(".partial"):
            store.discard(snap)
        raise
    finally:
        ctx.run = None
        journal.close()


def _step_failed(run: Run, step: Step, exc: ItemError, broken: list[dict[str, str]]) -> Outcome:
    """A step that met something it can never write (ItemError: a file where its directory
    must go, Permission denied...): its item(s) are named in `failed` (exit 4), the step is
    filed in the snapshot's manifest as `failed_steps` (its kind's own record is not: it
    wrote nothing to record; `verify` names it, kinds/env.py), and the other steps still
    run, in the same move (README, exit 4). The objects kind catches its own, per key."""
    run.event({"event": "warning", "message": f"{step.id}: {exc.message}"})
    broken.append({"step": step.id, "kind": step.kind, "path": step.dest, "error": exc.line()})
    return Outcome(False, failed=[f"{step.id}: {line}" for line in exc.lines()])


def _may_start(plan: Plan, step: Step, opts: Settings) -> bool:
    """The deadline rule `plan --deadline` projects (plan/deadline.py `may_start`): only a
    `deadline_bound` step with work to do is held back, and only if its estimate would run
    past the deadline less the reserve and the verification's estimate."""
    if opts.deadline is None or not step.deadline_bound or not step.todo_count:
        return True  # the clock is not read for a step the rule never holds back
    return deadline.may_start(step, opts.clock(), opts.deadline, deadline.verify_seconds(plan.steps))
