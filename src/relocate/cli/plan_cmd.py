"""`relocate plan`: what will move, how big, how long, what blocks it."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from relocate import localfile
from relocate.cli import options
from relocate.errors import ExitCode, UsageError
from relocate.settings import Settings


def next_steps(output: str, shards: dict[str, Any] | None) -> str:
    """What to run with the saved plan. A sharded plan is refused by a plain `move PLAN`
    (exit 2): it runs as N workers, then one finish (README "Shards")."""
    if shards is None:
        return f"saved to {output}; run `relocate move {output}` to execute exactly this plan"
    n = int(shards["count"])
    return (f"saved to {output}; run `relocate move {output} --shard K` on each of {n} workers "
            f"(K = 0..{n - 1}, or `--shard auto` under an engine: `relocate shards emit`), "
            f"watch them with `relocate status {output}`, then once all are complete run "
            f"`relocate move {output} --finish` for everything else and one verification")


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan_cmd(
        ctx: typer.Context,
        file: Path = options.CONFIG,
        as_json: bool = options.JSON,
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="Save the plan for `relocate move PLAN.json`."),
        accept_new_host_key: bool = options.ACCEPT_NEW_HOST_KEY,
        accept_risk: Optional[list[str]] = options.ACCEPT_RISK,
        profiles: Optional[Path] = options.PROFILES,
        probe: bool = typer.Option(False, "--probe", help="Time a sample of real objects (up to 200, 48 MiB) sent through the move's own path into a throwaway "
                                                        "directory on the target (removed), and show the estimate as a range, instead of conservative rates."),
        deadline_at: Optional[str] = options.DEADLINE,
        egress_rates: Optional[Path] = typer.Option(None, "--egress-rates", help="AWS data-transfer-out rates file (default: the shipped, dated one)."),
        fmt: str = typer.Option("text", "--format", help="text, json or markdown (for a pull-request comment)."),
        checksum: bool = options.CHECKSUM,
        shards: Optional[int] = typer.Option(None, "--shards", min=1, max=10000, metavar="N",
                                             help="Cut every bucket into N key ranges (balanced by bytes and count) for N workers "
                                                  "(`move PLAN.json --shard K`); everything else runs in `move PLAN.json --finish`."),
    ) -> None:
        """Read the source and probe the target (nothing is written) and show the plan. Exit 0 ready, 3 blocked."""
        # The planner, the renderer and the SSH stack load here, not with the module:
        # `relocate plan --help` shows the options without them (issue 18).
        from relocate.cli import render
        from relocate.config import load_config
        from relocate.egress_file import load_rates
        from relocate.plan import deadline, egress
        from relocate.plan.model import Finding
        from relocate.snapshot.store import write_json_atomic
        from relocate.workflow import check_waivers, prepare

        if fmt not in ("text", "json", "markdown"):
            raise UsageError(f"--format {fmt!r}: must be text, json or markdown")
        as_json = options.json_or_format(as_json, fmt, "text", ctx) == "json"
        started = time.time()
        until = deadline.parse_deadline(deadline_at, started) if deadline_at else None  # bad flags fail before connecting
        rates = load_rates(egress_rates)
        if output is not None:
            # A wrong -o fails now (exit 2, like the write itself would), not after the
            # whole slow plan ran.
            localfile.check_writable(output)
        config = load_config(file)
        # The one settings value: these options and the RELOCATE_* variables, read here only.
        opts = Settings.from_env(os.environ, accept_new_host_key=accept_new_host_key, profiles=profiles,
                                 accepted_risks=tuple(accept_risk or ()), probe=probe, checksum=checksum)
        check_waivers(config, opts, opts.accepted_risks)  # a misspelled id: exit 2 before any connection
        if shards is not None:
            from relocate.shards.plan import check_shardable

            check_shardable(config)  # before any connection
        with prepare(config, opts, sharded=shards is not None) as prep:
            plan = prep.plan
            if shards is not None:
                from relocate.shards.plan import shards_section

                plan.shards = shards_section(plan, prep.gathered.inventory, shards, prep.ctx.rates)
        plan.egress = egress.estimate(egress.bytes_by_region(plan.steps, config.aws.region), rates,
                                      dt.datetime.fromtimestamp(started, dt.timezone.utc).date())
        if plan.egress["rates_stale"]:
            plan.warnings.append(Finding("egress-rates-stale", plan.egress["stale_note"]))
        if until is not None:
            # projected from now, after the listing and the probe: `move` decides each step
            # by the clock when it is about to start (the same rule: plan/deadline.py)
            deadline.apply(plan, opts.clock(), until)
        if output is not None:
            write_json_atomic(output, plan.to_dict())  # 0644, whole or not at all
        if as_json:
            render.print_json(plan.to_dict())
        elif fmt == "markdown":
            from relocate.cli.markdown import plan_markdown

            sys.stdout.write(plan_markdown(plan))
        else:
            render.plan(render.stdout_console(), plan)
            if plan.shards is not None:
                from relocate.cli.shards_cmd import shards_table

                shards_table(render.stdout_console(), plan)
            if output is not None:
                render.stdout_console().print(next_steps(str(output), plan.shards), markup=False)
        raise typer.Exit(int(ExitCode.OK if plan.ready else ExitCode.BLOCKED))
