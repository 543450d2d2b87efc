"""`move plan.json --shard K|auto`, `move plan.json --finish` and their rendering (shards/)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from relocate.cli import render
from relocate.cli.move_cmd import approve
from relocate.cli.progress import Reporter
from relocate.config import Config
from relocate.errors import BlockedError, DriftError, ExitCode, SafetyError, UsageError
from relocate.execute.runner import run_move
from relocate.execute.verify import VerifyReport
from relocate.plan.build import human_bytes
from relocate.plan.model import Finding, Plan
from relocate.shards import state
from relocate.shards.engines import canonical_index, shard_from_env
from relocate.shards.plan import shard_totals
from relocate.sources.aws import Aws
from relocate.settings import Settings
from relocate.ssh.connection import session
from relocate.workflow import check_drift, prepare, saved_steps


def parse_shard(value: str, plan: Plan | None) -> int:
    """--shard K or auto -> K, checked against the plan (exit 2 otherwise)."""
    from relocate.shards.worker import check_index

    if plan is None or plan.shards is None:
        raise UsageError(f"--shard {value}: needs a plan made with `relocate plan --shards N -o plan.json`",
                         hint="pass that plan.json as the first argument")
    if value == "auto":
        index, _ = shard_from_env(int(plan.shards["count"]), os.environ)
    else:
        number = canonical_index(value)  # plain ASCII decimals only: not `01`, `+1`, ` 1` or `١`
        if number is None:
            raise UsageError(f"--shard {value!r}: a shard number (0..N-1, plain decimal digits) or `auto`")
        index = number
    check_index(plan, index)
    return index


def move_shard(plan: Plan, config: Config, index: int, *, yes: bool, allow_drift: bool, opts: Settings, as_json: bool,
               on_target: bool = False, no_input: bool = False) -> None:
    from relocate.shards.worker import run_shard

    assert plan.shards is not None
    if plan.blockers:
        raise BlockedError(f"the plan has {len(plan.blockers)} blocker(s): {plan.blockers[0].message}")
    objs, nbytes = shard_totals(plan, index)
    count = int(plan.shards["count"])
    dests = ", ".join(sorted({s.dest for s in plan.steps if s.kind == "s3"}))
    change = f"write shard {index} of {count}: up to {objs:,} object(s) ({human_bytes(nbytes)}) under {dests}"
    approve([change], plan.target, yes, no_input=no_input)
    progress = Reporter.choose(objs, nbytes, as_json=as_json)
    opts = dataclasses.replace(opts, on_event=progress.event)
    if on_target:  # the target's own file system: commands run here, the lanes too (no ssh logins)
        from relocate.shards.local import LocalConnection

        opts = dataclasses.replace(opts, transfer=dataclasses.replace(opts.transfer, engine="paramiko"))
    try:
        with (LocalConnection() if on_target else session(config.ssh, opts.login, config.target_jump)) as conn:
            report = run_shard(plan, config, conn, Aws(config.aws), index, opts, allow_drift=allow_drift, progress=progress,
                               on_total=progress.retotal)
    finally:
        progress.close()
    if as_json:
        render.print_json({"shard": report.to_dict()})
    else:
        out = render.stdout_console()
        out.print(f"shard {index} of {count}: {report.objects_sent} object(s) sent ({human_bytes(report.bytes_sent)}), "
                  f"{report.objects_skipped} already on the target; {report.objects} in the shard"
                  + ("" if report.ok else f"; {len(report.failed)} failed"), markup=False)
        for line in report.failed:
            out.print(f"  failed: {line}", markup=False)
    raise typer.Exit(int(ExitCode.OK if report.ok else ExitCode.DIFFERENCES))


def incomplete_shards(conn: Any, config: Config, plan: Plan) -> list[int]:
    assert plan.shards is not None
    progress = state.read_progress(conn, config.root, plan.shards["id"])
    # a shard whose records lost a chunk since is not complete either (state.record_problems)
    return state.incomplete(plan.shards, progress, state.troubles_of(conn, config, plan.shards, progress))


def _without_objects(saved: Plan) -> Plan:
    """The saved plan's final phase: its steps but the shards', its fingerprint without buckets."""
    fp = {**saved.fingerprint, "buckets": {}}
    return dataclasses.replace(saved, steps=[s for s in saved.steps if s.kind != "s3"], fingerprint=fp,
                               fingerprint_digest=hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest())


def move_finish(saved: Plan, config: Config, *, yes: bool, allow_drift: bool, opts: Settings, as_json: bool,
                no_input: bool = False) -> None:
    """The final phase: refused (exit 6) while a shard is incomplete; then every other kind
    under the target-wide lock, and one verification across all shards."""
    from relocate.shards.drift import finish_changes
    from relocate.shards.verify import verify_shards

    if saved.shards is None:
        raise UsageError("--finish: this plan has no shards", hint="make one with `relocate plan --shards N -o plan.json`")
    replan = f"relocate plan --shards {saved.shards['count']} -o plan.json"
    with session(config.ssh, opts.login, config.target_jump) as conn:
        left = incomplete_shards(conn, config, saved)
        if left:
            raise SafetyError(f"refusing to finish: {len(left)} of {saved.shards['count']} shard(s) incomplete: "
                              f"{', '.join(map(str, left[:20]))}{' ...' if len(left) > 20 else ''}",
                              hint="run `relocate move PLAN.json --shard K` for each; `relocate status PLAN.json` shows them")
        # the objects: every range listed again, against the plan and what its worker moved
        not_moved = finish_changes(saved, config, conn, Aws(config.aws))
    if not_moved and not allow_drift:
        raise DriftError(f"the source changed since the plan was saved ({len(not_moved)} shard range(s): "
                         f"{'; '.join(not_moved[:3])}{' ...' if len(not_moved) > 3 else ''})",
                         hint=f"run `{replan}` again and its workers, or those shards again with "
                              "`--shard K --allow-drift` (they move what is there now); --allow-drift finishes without it")
    rest = dataclasses.replace(config, s3=())  # the objects are the shards' work, already done
    with prepare(rest, opts) as prep:
        check_drift(_without_objects(saved), prep.plan, allow_drift, replan=replan)
        plan = saved_steps(_without_objects(saved), prep.plan, replan=replan)
        for line in not_moved:  # --allow-drift: said plainly, in the plan shown and in --json's plan.warnings
            plan.warnings.append(Finding("drift", f"not moved (--allow-drift; the source changed since the plan): {line}"))
            render.stderr_console().print(f"warning: not moved (--allow-drift): {line}", markup=False)
        out = render.stdout_console()
        if not as_json:
            render.plan(out, plan)
        approval = None if plan.blockers else approve(plan.changes, plan.target, yes, no_input=no_input)
        progress = Reporter.choose(0, 0, as_json=as_json)
        try:
            report = run_move(plan, rest, prep.ctx, prep.kinds, prep.kind_data, dataclasses.replace(opts, on_event=progress.event),
                              approval, progress)
        finally:
            progress.close()
        report.verify = report.verify or VerifyReport()
        verify_shards(prep.conn, config, saved, report.verify)
    if as_json:
        render.print_json({"plan": plan.to_dict(), "result": report.to_dict()})
    else:
        render.move(out, dataclasses.replace(report, verify=None))  # the verify block once, below
        render.verify(out, report.verify, against=(f"snapshot {report.verify.snapshot} and " if report.verify.snapshot else "")
                      + f"the records of all {saved.shards['count']} shard(s)")
    bad = bool(report.failed) or bool(report.left) or not report.verify.ok
    raise typer.Exit(int(ExitCode.DIFFERENCES if bad else ExitCode.OK))


# --- rendering ----------------------------------------------------------------------

def shards_table(console: Console, plan: Plan) -> None:
    assert plan.shards is not None
    section = plan.shards
    t = Table(title=f"{section['count']} shard(s) (plan {section['id']}): `relocate move PLAN --shard K`, then `--finish`")
    for col in ("shard", "objects", "bytes", "estimate"):
        t.add_column(col, justify="right")
    for k, est in enumerate(section["est_seconds"]):
        objs, nbytes = shard_totals(plan, k)
        t.add_row(str(k), f"{objs:,}", human_bytes(nbytes), render._duration(est))
    console.print(t)
    lay = section["layouts"]
    console.print(f"shards side by side: N runners into one target about {render._duration(lay['runners_to_target_s'])} "
                  f"(they share the target's link), N targets each pulling its shard (--on-target) about "
                  f"{render._duration(lay['targets_pulling_s'])}; then the final phase about "
                  f"{render._duration(section['finish_est_seconds'])}", markup=False)


def status_table(console: Console, doc: dict[str, Any]) -> None:
    t = Table(title=f"{doc['complete']} of {doc['count']} shard(s) complete")
    for col in ("shard", "state", "objects done", "bytes done", "objects left", "bytes left", "ends in", "note"):
        t.add_column(col)
    for r in doc["shards"]:
        note = "; ".join(x for x in (r["detail"], ("straggler: " + r["why"]) if r["straggler"] else "") if x)
        t.add_row(str(r["shard"]), r["state"], f"{r['objects_done']:,}", human_bytes(r["bytes_done"]), f"{r['objects_left']:,}",
                  human_bytes(r["bytes_left"]), render._duration(r["eta_s"]) if r["eta_s"] is not None else "-",
                  escape(note))
    console.print(t)
    fin = doc["projected_finish_s"]
    idle = [r for r in doc["shards"] if r["shard"] in doc["stopped"]]
    if doc["ready_to_finish"]:
        console.print("all shards complete: run `relocate move PLAN.json --finish`", markup=False)
    elif idle:  # nobody runs them: no end to project until they run again
        named = ", ".join(f"{r['shard']} ({r['state']})" for r in idle[:20]) + (" ..." if len(idle) > 20 else "")
        console.print(f"no projected finish: no worker runs shard(s) {named}; run `relocate move PLAN.json --shard K` "
                      "for each", markup=False)
    else:
        console.print(f"projected finish of the shards: {'in ' + render._duration(fin) if fin is not None else 'unknown (a shard has no rate yet)'}",
                      markup=False)
