"""`relocate demo`: the whole job on an embedded default, with no cloud account, no
root, no Docker and no network. An embedded moto server plays the source cloud, an
embedded SSH server (asyncssh, a child process, host key pinned) plays the new host;
then plan, move, move again and verify run against them as a user would run them."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import typer

from relocate.errors import ExitCode, RelocateError, UsageError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_step(args: list[str]) -> int:
    """One relocate command, exactly as `relocate ARGS` would run it; returns its exit code."""
    from relocate.cli import app

    typer.secho(f"\n$ relocate {' '.join(args)}", bold=True)
    try:
        # Non-standalone click returns a typer.Exit's code instead of raising it.
        code = app(args=args, standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except RelocateError as exc:
        typer.echo(f"relocate: error: {exc.line()}", err=True)
        return int(exc.exit_code)
    return code if isinstance(code, int) else 0


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        workdir: Optional[Path] = typer.Option(None, "--workdir", envvar="RELOCATE_WORKDIR", help="Keep the demo's files here instead of a temporary directory."),
        keep: bool = typer.Option(False, "--keep", envvar="RELOCATE_KEEP", help="Leave the servers' files behind to look at."),
    ) -> None:
        """Run plan, move and verify against an embedded source cloud and SSH target."""
        try:
            from moto.server import ThreadedMotoServer
            import asyncssh  # noqa: F401  (the embedded SSH host; imported here to fail early and clearly)
        except ImportError as exc:
            raise UsageError(f"the demo needs the 'demo' extra, which is not installed ({exc.name} is missing)",
                             hint="install it with: pip install '.[demo]' (from a clone of relocate's repository)") from None

        from relocate.demo.seed import seed_sample_app, write_demo_config
        from relocate.demo.sshserver import start_embedded_sshd

        # moto's web server logs every request; the demo should show relocate's output only.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="relocate-demo-"))
        base.mkdir(parents=True, exist_ok=True)
        # The embedded cloud accepts any credentials; never send a user's real ones to it.
        for var, value in (("AWS_ACCESS_KEY_ID", "demo"), ("AWS_SECRET_ACCESS_KEY", "demo"), ("AWS_SESSION_TOKEN", None),
                           ("AWS_PROFILE", None), ("AWS_DEFAULT_REGION", "us-east-1")):
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        codes: dict[str, int] = {}
        with ExitStack() as stack:
            port = _free_port()
            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            moto.start()
            stack.callback(moto.stop)
            endpoint = f"http://127.0.0.1:{port}"
            sshd = start_embedded_sshd(base / "sshd")
            stack.callback(sshd.stop)
            sample = seed_sample_app(endpoint)
            config = base / "relocate.yaml"
            target_root = base / "target"
            write_demo_config(config, endpoint_url=endpoint, target=sshd, root=target_root, known_hosts=base / "known_hosts")
            typer.echo(f"embedded source cloud: moto at {endpoint} with s3://{sample.bucket} ({sample.object_count} objects), "
                       f"SSM parameters under {sample.parameter_path}, secret {sample.secret_name}")
            typer.echo(f"embedded target: SSH server at 127.0.0.1:{sshd.port} (host key {sshd.host_key_fingerprint}, pinned)")
            typer.echo(f"relocate.yaml: {config}")
            codes["plan"] = _run_step(["plan", "-f", str(config)])
            codes["move"] = _run_step(["move", "-f", str(config), "--yes"])
            codes["move again"] = _run_step(["move", "-f", str(config), "--yes"])
            codes["verify"] = _run_step(["verify", "-f", str(config)])
        ok = all(code == 0 for code in codes.values())
        typer.echo("\n" + ", ".join(f"{k}: exit {v}" for k, v in codes.items()))
        if keep or workdir:
            typer.echo(f"demo files kept in {base} (target files under {base / 'target'})")
        else:
            shutil.rmtree(base, ignore_errors=True)
        typer.echo("demo finished: everything moved and verified." if ok else "demo FAILED: see the output above.")
        raise typer.Exit(int(ExitCode.OK if ok else ExitCode.BUG))
