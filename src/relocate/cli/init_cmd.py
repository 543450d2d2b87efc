"""`relocate init`: write a commented relocate.yaml to start from."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer

from relocate import localfile
from relocate.errors import UsageError


def template() -> str:
    return resources.files("relocate").joinpath("data/init.yaml").read_text(encoding="utf-8")


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init_cmd(
        path: Path = typer.Argument(Path("relocate.yaml"), help="Where to write it."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    ) -> None:
        """Write a commented relocate.yaml to start from."""
        if path.exists() and not force:
            raise UsageError(f"{path} already exists", hint="pass --force to overwrite it")
        localfile.write_atomic(path, [template()])  # a bad directory: exit 2 naming it, nothing left behind
        # The README's order: which providers' terms accept the app, then what would move.
        typer.echo(f"wrote {path}: edit app, source and target, then run `relocate check -f {path}` "
                   f"and `relocate plan -f {path}`")
