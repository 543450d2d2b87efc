"""`relocate rollback`: point `current` at the release before it, restart, health-check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from relocate.cli import can_prompt, options, render, why_no_prompt
from relocate.kinds.deploy import rollback, rollback_step
from relocate.config import load_config
from relocate.errors import ConfigError, ExitCode
from relocate.execute import gate
from relocate.execute.lock import TargetLock, audit
from relocate.settings import Settings
from relocate.ssh.connection import session


def register(app: typer.Typer) -> None:
    @app.command("rollback")
    def rollback_cmd(
        file: Path = options.CONFIG,
        to: Optional[str] = typer.Option(None, "--to", help="Release id to switch to (default: the one before current)."),
        yes: bool = typer.Option(False, "--yes", "-y", envvar="RELOCATE_YES", help="Do not ask for confirmation (required without a terminal)."),
        no_input: bool = options.NO_INPUT,
        as_json: bool = options.JSON,
        accept_new_host_key: bool = options.ACCEPT_NEW_HOST_KEY,
    ) -> None:
        """Switch back to the previous release and restart it. Exit 0 answering, 4 not answering, 6 a move holds the lock."""
        config = load_config(file)
        if not config.data.get("deploy"):
            raise ConfigError(f"{config.path.name}: no deploy: section, so there is no release to roll back")
        login = Settings.from_env(os.environ, accept_new_host_key=accept_new_host_key).login  # RELOCATE_* read here only
        with session(config.ssh, login, config.target_jump) as conn:
            with TargetLock(conn, config.root, "rollback"):
                # A one-step plan through the same gate as `move` (execute/gate.py).
                step = rollback_step(config, conn, to)
                approval = gate.confirm([step.change], action="roll back", target=config.ssh.host, yes=yes,
                                        can_prompt=can_prompt() and not no_input, why_not=why_no_prompt(no_input),
                                        ask=lambda q: typer.confirm(q, default=False),
                                        show=lambda line: render.stderr_console().print(line, markup=False))
                if approval is None:
                    raise typer.Exit(int(ExitCode.USAGE))
                gate.require(approval, [step.change])
                # The latest snapshot records the release switched away from: the next
                # move records the target again, even with nothing to move (store.py).
                from relocate.snapshot import store

                store.mark_unrecorded(config.snapshot_dir, f"rollback {step.source} -> {step.dest}")
                try:
                    result = rollback(config, conn, step)
                except BaseException as exc:  # an interrupt too: `current` may be switched already
                    try:
                        audit(conn, config.root, "rollback", from_release=step.source or None, to_release=step.dest,
                              result="error", error=type(exc).__name__)
                    except Exception:  # the connection may be what failed; the original error matters
                        pass
                    raise
                audit(conn, config.root, "rollback", from_release=result.from_release, to_release=result.to_release,
                      result="ok" if result.healthy else "failed")
        if as_json:
            render.print_json({"from": result.from_release, "to": result.to_release, "healthy": result.healthy,
                               "health": result.seen, "log": result.logs, "warnings": result.warnings})
        else:
            for warning in result.warnings:  # a release without its record: run with today's deploy: settings
                render.stderr_console().print(f"warning: {warning}", markup=False)
            out = render.stdout_console()
            out.print(f"current: {result.from_release or 'no release'} -> {result.to_release}; "
                      + ("answering" if result.healthy else f"NOT answering ({result.seen})"), markup=False)
            for line in result.logs:
                out.print(f"  log: {line}", markup=False)
        raise typer.Exit(int(ExitCode.OK if result.healthy else ExitCode.DIFFERENCES))
