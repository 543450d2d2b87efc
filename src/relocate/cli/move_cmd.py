"""`relocate move`: execute the plan, then verify on the target."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from relocate.cli import options, render
from relocate.errors import ExitCode, UsageError
from relocate.execute.move import MoveOptions, run_move
from relocate.plan.build import human_bytes
from relocate.workflow import Options, check_drift, load_any, prepare


class _Progress:
    """Plain progress lines on stderr, at most every few seconds (CI logs stay short)."""

    def __init__(self, total_objects: int, total_bytes: int, quiet: bool) -> None:
        self.total_objects, self.total_bytes = total_objects, total_bytes
        self.objects = self.bytes = 0
        self.quiet = quiet
        self.start = self.last = time.monotonic()

    def __call__(self, step: str, n: int, b: int) -> None:
        self.objects += n
        self.bytes += b
        now = time.monotonic()
        if not self.quiet and (now - self.last >= 3 or self.objects == self.total_objects):
            self.last = now
            rate = self.bytes / max(now - self.start, 1e-6)
            print(f"progress: {self.objects}/{self.total_objects} objects, {human_bytes(self.bytes)}/{human_bytes(self.total_bytes)}, "
                  f"{human_bytes(rate)}/s", file=sys.stderr, flush=True)


def register(app: typer.Typer) -> None:
    @app.command("move")
    def move_cmd(
        source: Optional[Path] = typer.Argument(None, help="A saved plan.json, or a relocate.yaml (default: -f)."),
        file: Path = options.CONFIG,
        yes: bool = typer.Option(False, "--yes", "-y", envvar="RELOCATE_YES", help="Do not ask for confirmation (required without a terminal)."),
        allow_drift: bool = typer.Option(False, "--allow-drift", help="Move even if the source changed since the saved plan."),
        transfers: int = typer.Option(8, "--transfers", min=1, max=64, envvar="RELOCATE_TRANSFERS", help="Objects read from S3 in parallel."),
        keep_snapshot: bool = typer.Option(False, "--keep-snapshot", help="Also keep a local copy of every object in the snapshot."),
        as_json: bool = options.JSON,
        accept_new_host_key: bool = options.ACCEPT_NEW_HOST_KEY,
        accept_risk: Optional[list[str]] = options.ACCEPT_RISK,
        profiles: Optional[Path] = options.PROFILES,
    ) -> None:
        """Copy the data and config to the target, then verify it there. Exit 0 done, 4 differences."""
        config, saved = load_any(source or file)
        risks = tuple(accept_risk or ()) + tuple(saved.accepted_risks if saved else ())
        opts = Options(accept_new_host_key, risks, profiles)
        with prepare(config, opts) as prep:
            plan = prep.plan
            if saved is not None:
                check_drift(saved, plan, allow_drift)
            out = render.stdout_console()
            if not as_json:
                render.plan(out, plan)
            if not plan.blockers and plan.todo_bytes + sum(s.todo_count for s in plan.steps if s.kind == "s3") > 0 and not yes:
                if not sys.stdin.isatty():
                    raise UsageError("refusing to move without confirmation: no terminal to ask on", hint="pass --yes")
                if not typer.confirm(f"Move {human_bytes(plan.todo_bytes)} to {plan.target}?", default=False):
                    raise typer.Exit(int(ExitCode.USAGE))
            total_objects = sum(s.todo_count for s in plan.steps if s.kind == "s3")
            progress = _Progress(total_objects, plan.todo_bytes, quiet=as_json)
            report = run_move(plan, config, prep.aws, prep.conn, prep.gathered,
                              MoveOptions(transfers=transfers, keep_snapshot=keep_snapshot), progress,
                              components=prep.components, ctx=prep.ctx, component_data=prep.component_data)
        if as_json:
            render.print_json({"plan": plan.to_dict(), "result": report.to_dict()})
        else:
            render.move(out, report)
        bad = bool(report.failed) or (report.verify is not None and not report.verify.ok)
        raise typer.Exit(int(ExitCode.DIFFERENCES if bad else ExitCode.OK))
