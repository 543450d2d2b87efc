"""`relocate move`: execute the plan, then verify on the target."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from relocate.cli import can_prompt, options, why_no_prompt
from relocate.errors import ExitCode, UsageError
from relocate.settings import TRANSFERS, Settings, Switches

if TYPE_CHECKING:
    from relocate.execute import gate


def register(app: typer.Typer) -> None:
    @app.command("move")
    def move_cmd(
        ctx: typer.Context,
        source: Optional[Path] = typer.Argument(None, help="A saved plan.json, or a relocate.yaml (default: -f)."),
        file: Path = options.CONFIG,
        yes: bool = typer.Option(False, "--yes", "-y", envvar="RELOCATE_YES", help="Do not ask for confirmation (required without a terminal)."),
        no_input: bool = options.NO_INPUT,
        allow_drift: bool = typer.Option(False, "--allow-drift", help="Move even if the source changed since the saved plan."),
        transfers: int = typer.Option(TRANSFERS, "--transfers", min=1, max=64, envvar="RELOCATE_TRANSFERS", show_default=False,
                                      help=f"Objects read from S3 in parallel \\[default: {TRANSFERS}]."),
        lanes: Optional[int] = typer.Option(None, "--lanes", min=1, max=16, envvar="RELOCATE_LANES", show_default=False,
                                            help="Parallel SSH connections (one stream of batches each) for bulk data "
                                                 "\\[default: the number of CPUs, from 2 to 4]."),
        bwlimit: Optional[str] = typer.Option(None, "--bwlimit", metavar="RATE", envvar="RELOCATE_BWLIMIT",
                                              help="Cap the bulk transfer rate over all lanes, bytes/s: 800k, 10M, 1.5G."),
        keep_snapshot: bool = typer.Option(False, "--keep-snapshot", help="Also keep a local copy of every object in the snapshot."),
        checksum: bool = options.CHECKSUM,
        replace_database: Optional[list[str]] = typer.Option(
            None, "--replace-database", metavar="NAME",
            help="Overwrite target database NAME (one of the config's target databases) although it is "
                 "not empty and differs (repeatable)."),
        no_local_copy: bool = typer.Option(False, "--no-local-copy",
                                           help="Stream database dumps straight to the target; keep no dump in the snapshot."),
        deadline_at: Optional[str] = options.DEADLINE,
        as_json: bool = options.JSON,
        accept_new_host_key: bool = options.ACCEPT_NEW_HOST_KEY,
        accept_risk: Optional[list[str]] = options.ACCEPT_RISK,
        profiles: Optional[Path] = options.PROFILES,
        shard: Optional[str] = typer.Option(None, "--shard", metavar="K|auto",
                                            help="Run only shard K (0..N-1) of a plan made with `plan --shards N`: its objects, "
                                                 "resuming from what the target holds. `auto` reads K from RELOCATE_SHARD, "
                                                 "JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX, SLURM_ARRAY_TASK_ID, "
                                                 "NOMAD_ALLOC_INDEX or CI_NODE_INDEX."),
        finish: bool = typer.Option(False, "--finish",
                                    help="The final phase of a sharded plan: every other kind, then one verification across "
                                         "all shards. Refused (exit 6) while a shard is incomplete."),
        on_target: bool = typer.Option(False, "--on-target",
                                       help="With --shard: this worker runs on the target host itself; it reads S3 and "
                                            "writes target.root on this machine's file system (no SSH)."),
    ) -> None:
        """Copy the data and config to the target, then verify it there. Exit 0 done, 4 differences."""
        # The planner, the runner and the SSH stack load here, not with the module:
        # `relocate move --help` shows the options without them (issue 18).
        from relocate.cli import render
        from relocate.cli.progress import Reporter
        from relocate.execute.runner import run_move
        from relocate.plan import deadline
        from relocate.workflow import check_drift, check_waivers, load_any, prepare, saved_steps

        rate = options.parse_rate(bwlimit)  # a bad flag fails before any connection
        started = time.time()
        until = deadline.parse_deadline(deadline_at, started) if deadline_at else None  # bad flag: before any connection
        config, saved = load_any(source or file)
        if until is None and saved is not None and saved.schedule and saved.schedule.get("deadline"):
            # A plan made with --deadline runs against that deadline (what it showed as
            # left is left), unless --deadline gives another.
            until = deadline.parse_deadline(str(saved.schedule["deadline"]), started)
        if replace_database and not (config.data.get("source") or {}).get("databases"):
            # Without databases the databases kind never runs, so it could not refuse the name.
            from relocate.kinds.databases import check_replace_names

            check_replace_names(replace_database, [])
        risks = tuple(accept_risk or ()) + tuple(saved.accepted_risks if saved else ())
        # The one settings value: these options and the RELOCATE_* variables, read here only.
        opts = Settings.from_env(os.environ, accept_new_host_key=accept_new_host_key, profiles=profiles, transfers=transfers,
                                 lanes=lanes, bwlimit=rate, accepted_risks=risks,
                                 switches=Switches(tuple(replace_database or ()), no_local_copy),
                                 checksum=checksum, keep_snapshot=keep_snapshot, deadline=until)
        opts = dataclasses.replace(opts, bulk_login=opts.transfer.lanes)
        # Only the ids given now: a saved plan's were checked when it was made.
        check_waivers(config, opts, accept_risk or ())
        if shard is not None or finish or on_target:
            from relocate.cli import shards_cmd

            if shard is not None and finish:
                if _from_environment(ctx, "shard"):
                    # RELOCATE_SHARD is --shard's variable, but also what a worker's job left in
                    # the environment (emit's GitHub workflow, a Batch array): an explicit
                    # --finish wins over it; only the flag --shard with --finish is refused
                    shard = None
                else:
                    raise UsageError("--shard and --finish: one at a time (the shards first, then --finish)")
            if on_target and shard is None:
                raise UsageError("--on-target: only with --shard K (a worker on the target host)")
            if shard is not None and (keep_snapshot or checksum or deadline_at or replace_database or no_local_copy):
                raise UsageError("--shard: --keep-snapshot, --checksum, --deadline, --replace-database and --no-local-copy "
                                 "do not apply to a shard's worker (it keeps no local state; databases run in --finish)")
            if shard is not None:
                index = shards_cmd.parse_shard(shard, saved)  # exit 2 unless saved is a sharded plan
                assert saved is not None
                shards_cmd.move_shard(saved, config, index, yes=yes, allow_drift=allow_drift, opts=opts, as_json=as_json,
                                      on_target=on_target, no_input=no_input)
            if saved is None:
                raise UsageError("--finish: needs a plan made with `relocate plan --shards N -o plan.json`",
                                 hint="pass that plan.json as the first argument")
            shards_cmd.move_finish(saved, config, yes=yes, allow_drift=allow_drift, as_json=as_json, opts=opts,
                                   no_input=no_input)
        if saved is not None and saved.shards is not None:
            raise UsageError(f"{source}: a sharded plan runs as `--shard K` workers, then `--finish`")
        with prepare(config, opts) as prep:
            plan = prep.plan
            if saved is not None:
                # The fresh plan only detects drift; the saved plan's steps are what runs.
                check_drift(saved, plan, allow_drift)
                plan = saved_steps(saved, plan)
            elif until is not None:
                # A fresh plan gets the deadline rules `plan --deadline` shows, projected from
                # now (the listing is done): the steps it leaves are the ones the runner
                # leaves, given the estimates; a saved plan keeps the findings it was
                # planned with (workflow.saved_steps).
                deadline.apply(plan, opts.clock(), until)
            out = render.stdout_console()
            if not as_json:
                render.plan(out, plan)
            if plan.blockers and as_json:  # refused below (exit 3): the one document still says why
                render.print_json({"plan": plan.to_dict(), "result": None})
            approval = None if plan.blockers else approve(plan.changes, plan.target, yes, no_input=no_input)
            # The objects' own totals: progress counts object bodies only, so the plan's
            # todo_bytes (a database, a release, host files too) would leave `bytes` short
            # of `total_bytes` and the ETA too long (docs/json.md, `progress`).
            total_objects = sum(s.todo_count for s in plan.steps if s.kind == "s3")
            total_bytes = sum(s.todo_bytes for s in plan.steps if s.kind == "s3")
            progress = Reporter.choose(total_objects, total_bytes, as_json=as_json)
            try:
                report = run_move(plan, config, prep.ctx, prep.kinds, prep.kind_data,
                                  dataclasses.replace(opts, on_event=progress.event), approval, progress)
            finally:
                progress.close()
        if as_json:
            render.print_json({"plan": plan.to_dict(), "result": report.to_dict()})
        else:
            render.move(out, report)
        bad = bool(report.failed) or bool(report.left) or (report.verify is not None and not report.verify.ok)
        raise typer.Exit(int(ExitCode.DIFFERENCES if bad else ExitCode.OK))


def _from_environment(ctx: typer.Context, name: str) -> bool:
    """The option took its value from its RELOCATE_* variable, not from the command line."""
    source = ctx.get_parameter_source(name)
    # by name: newer Typer vendors its own click, whose ParameterSource is not click's
    return source is not None and source.name == "ENVIRONMENT"


def approve(changes: list[str], target: str, yes: bool, *, no_input: bool = False) -> gate.Approval:
    """The gate's one question for `move` (and its shard phases); no: exit 2. `no_input`:
    the command's own --no-input (the root's is in can_prompt())."""
    from relocate.cli import render
    from relocate.execute import gate

    approval = gate.confirm(changes, action="move", target=target, yes=yes, can_prompt=can_prompt() and not no_input,
                            why_not=why_no_prompt(no_input), ask=lambda q: typer.confirm(q, default=False),
                            show=lambda line: render.stderr_console().print(line, markup=False))
    return approval  # a "no" raised (exit 2)
