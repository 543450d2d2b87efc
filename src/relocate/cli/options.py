"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path

import typer

CONFIG = typer.Option(Path("relocate.yaml"), "-f", "--file", envvar="RELOCATE_FILE", help="relocate.yaml to read.")
JSON = typer.Option(False, "--json", help="Print one JSON document to stdout.")
CHECKSUM = typer.Option(
    False, "--checksum", envvar="RELOCATE_CHECKSUM",
    help="Re-hash the objects already on the target instead of trusting journal + size, and send again any that "
         "differ (reads every byte there, like rclone's --checksum).")
ACCEPT_NEW_HOST_KEY = typer.Option(
    False, "--accept-new-host-key", envvar="RELOCATE_ACCEPT_NEW_HOST_KEY",
    help="Trust an unknown SSH host key on first use and record it (a changed key is always refused).",
)
ACCEPT_RISK = typer.Option(None, "--accept-risk", metavar="ID", help="Proceed despite this acceptable-use finding id (recorded in the plan); repeat for several.")
PROFILES = typer.Option(None, "--profiles", envvar="RELOCATE_PROFILES", help="Extra provider profiles directory.")


def parse_rate(text: str | None) -> float | None:
    """`--bwlimit`: bytes per second, rclone-style binary suffixes: 800k, 10M, 1.5G (B, /s optional)."""
    if text is None or text.strip() in ("", "0", "off"):
        return None
    import re

    from relocate.errors import UsageError

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?B)?(?:/s)?\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--bwlimit {text!r}: expected a rate like 800k, 10M or 1.5G (bytes per second)")
    return float(m.group(1)) * 1024.0 ** " kmg".index(m.group(2).lower() or " ")


DEADLINE = typer.Option(
    None, "--deadline", metavar="WHEN",
    help="When the source goes away: 2021-01-10T23:59-08:00 or 6h. Irreplaceable data first; see docs/ci.md.",
)
