"""`relocate verify`: re-check the target against the latest snapshot, like `rclone check`."""

from __future__ import annotations

import os
from pathlib import Path

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


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_cmd(
        file: Path = options.CONFIG,
        as_json: bool = options.JSON,
        accept_new_host_key: bool = options.ACCEPT_NEW_HOST_KEY,
    ) -> None:
        """Hash every file on the target and compare with the latest snapshot. Exit 4 on any difference."""
        config = load_config(file)
        snap = store.latest(config.snapshot_dir)
        if snap is None:
            raise ConfigError(f"no snapshot in {config.snapshot_dir}", hint="run `relocate move` first")
        opts = Settings.from_env(os.environ, accept_new_host_key=accept_new_host_key)  # RELOCATE_* read here only
        identity = crypto.load_identity(config.key_file, create=False, given=opts.age_identity)
        with session(config.ssh, opts.login, config.target_jump) as conn:
            ctx = Context(config=config, aws=Aws(config.aws), conn=conn, target_id=target_id(config, conn),
                          login=opts.login)
            report = verify_snapshot(conn, config.root, snap, identity, kinds=load_kinds(config), ctx=ctx)
        if as_json:
            render.print_json({"snapshot": snap.id, **report.to_dict()})
        else:
            render.stdout_console().print(f"snapshot {snap.id}", markup=False)
            render.verify(render.stdout_console(), report)
        raise typer.Exit(int(ExitCode.OK if report.ok else ExitCode.DIFFERENCES))
