"""`relocate verify`: re-check the target against the latest snapshot, like `rclone check`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from relocate.cli import options, render
from relocate.kinds import Context, load_kinds
from relocate.execute.gather import target_id
from relocate.sources.aws import Aws
from relocate.config import load_config
from relocate.errors import ConfigError, ExitCode
from relocate.execute.verify import verify_snapshot
from relocate.settings import Settings
from relocate.snapshot import crypto, store
from relocate.ssh.connection import session
from relocate.workflow import load_plan_file


def _verify_sharded(plan: Any, config: Any, snap: Any, opts: Settings, as_json: bool) -> None:
    """Every shard's objects, hashed on the target; and the final phase's snapshot, if any
    (made by `move --finish`; a fresh machine has none and checks the objects only)."""
    from relocate.execute.verify import VerifyReport
    from relocate.shards.verify import verify_shards

    with session(config.ssh, opts.login, config.target_jump) as conn:
        if snap is not None:
            identity = crypto.load_identity(config.key_file, create=False, given=opts.age_identity)
            ctx = Context(config=config, aws=Aws(config.aws), conn=conn, target_id=target_id(config, conn), login=opts.login)
            report = verify_snapshot(conn, config.root, snap, identity, kinds=load_kinds(config), ctx=ctx)
        else:
            report = VerifyReport()
        verify_shards(conn, config, plan, report)
    if as_json:
        render.print_json({"snapshot": report.snapshot, "shards": plan.shards["count"], **report.to_dict()})
    else:
        count = plan.shards["count"]
        render.stdout_console().print(f"{count} shard(s) of plan {plan.shards['id']}"
                                      + (f", snapshot {snap.id}" if snap else
                                         ": their records (no snapshot of the final phase on this machine)"), markup=False)
        render.verify(render.stdout_console(), report,
                      against=(f"snapshot {snap.id} and " if snap else "") + f"the records of all {count} shard(s)")
    raise typer.Exit(int(ExitCode.OK if report.ok else ExitCode.DIFFERENCES))


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_cmd(
        plan_file: Optional[Path] = typer.Argument(None, metavar="[PLAN.json]",
                                                   help="A saved plan: its relocate.yaml is used; a sharded plan's objects are "
                                                        "verified across all its shards (default: -f)."),
        file: Path = options.CONFIG,
        as_json: bool = options.JSON,
        accept_new_host_key: bool = options.ACCEPT_NEW_HOST_KEY,
    ) -> None:
        """Hash every file on the target and compare with the latest snapshot. Exit 4 on any difference."""
        plan = None
        if plan_file is not None:
            plan, config = load_plan_file(plan_file)
        else:
            config = load_config(file)
        snap = store.latest(config.snapshot_dir)
        if plan is not None and plan.shards is not None:
            _verify_sharded(plan, config, snap, Settings.from_env(os.environ, accept_new_host_key=accept_new_host_key), as_json)
        if snap is None:
            # A fresh machine (a CI runner) whose move found everything in place keeps no
            # snapshot: "run move first" would send it round in a circle.
            raise ConfigError(f"no snapshot in {config.snapshot_dir} (verify compares the target with a snapshot "
                              "kept on this machine)",
                              hint="run verify where the move ran (or set snapshot.dir to its snapshots); here, "
                                   "`relocate move --checksum` re-hashes the target's objects and sends any that differ")
        opts = Settings.from_env(os.environ, accept_new_host_key=accept_new_host_key)  # RELOCATE_* read here only
        identity = crypto.load_identity(config.key_file, create=False, given=opts.age_identity)
        with session(config.ssh, opts.login, config.target_jump) as conn:
            ctx = Context(config=config, aws=Aws(config.aws), conn=conn, target_id=target_id(config, conn),
                          login=opts.login)
            report = verify_snapshot(conn, config.root, snap, identity, kinds=load_kinds(config), ctx=ctx)
        if as_json:
            render.print_json(report.to_dict())  # `snapshot` first, as before
        else:
            render.stdout_console().print(f"snapshot {snap.id}", markup=False)
            render.verify(render.stdout_console(), report)
        raise typer.Exit(int(ExitCode.OK if report.ok else ExitCode.DIFFERENCES))
