"""`relocate status plan.json`: a sharded move's progress, per shard, read from the target."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from relocate.cli import options, render
from relocate.errors import ExitCode, UsageError
from relocate.workflow import load_plan_file


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status_cmd(
        plan_file: Path = typer.Argument(..., metavar="PLAN.json", help="A plan made with `relocate plan --shards N -o`."),
        as_json: bool = options.JSON,
        accept_new_host_key: bool = options.ACCEPT_NEW_HOST_KEY,
    ) -> None:
        """Show a sharded move's progress per shard, read from the target. Exit 0 all shards complete, 4 not yet."""
        from relocate.cli.shards_cmd import status_table
        from relocate.shards import state
        from relocate.shards.status import shard_status
        from relocate.shards.worker import LOCK_STALE_S

        plan, config = load_plan_file(plan_file)
        if plan.shards is None:
            raise UsageError(f"{plan_file}: this plan has no shards", hint="make one with `relocate plan --shards N -o plan.json`")
        from relocate.settings import Settings
        from relocate.ssh.connection import session

        opts = Settings.from_env(os.environ, accept_new_host_key=accept_new_host_key)  # RELOCATE_* read here only
        stale = opts.tuning.shard_lock_stale_s or LOCK_STALE_S  # the time a new worker takes a lock over after
        with session(config.ssh, opts.login, config.target_jump) as conn:
            progress = state.read_progress(conn, config.root, plan.shards["id"])
            troubles = state.troubles_of(conn, config, plan.shards, progress)
            workers = state.read_workers(conn, config.root, stale)
        doc = shard_status(plan, progress, time.time(), workers=workers, troubles=troubles, stale_s=stale)
        if as_json:
            render.print_json({"plan": plan.shards["id"], **doc})
        else:
            status_table(render.stdout_console(), doc)
        raise typer.Exit(int(ExitCode.OK if doc["ready_to_finish"] else ExitCode.DIFFERENCES))
