"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path

import typer

CONFIG = typer.Option(Path("relocate.yaml"), "-f", "--file", envvar="RELOCATE_FILE", help="relocate.yaml to read.")
JSON = typer.Option(False, "--json", help="Print one JSON document to stdout.")
ACCEPT_NEW_HOST_KEY = typer.Option(
    False, "--accept-new-host-key", envvar="RELOCATE_ACCEPT_NEW_HOST_KEY",
    help="Trust an unknown SSH host key on first use and record it (a changed key is always refused).",
)
ACCEPT_RISK = typer.Option(None, "--accept-risk", help="Proceed despite this acceptable-use finding id (recorded in the plan).")
PROFILES = typer.Option(None, "--profiles", envvar="RELOCATE_PROFILES", help="Extra provider profiles directory.")
