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
# The root's `relocate --no-input COMMAND` (cli/__init__.py) also accepted after the
# name of each command that can ask (move, rollback), where a user reading the README
# ("with --no-input") puts it; either place, or RELOCATE_NO_INPUT=1, means the same.
NO_INPUT = typer.Option(False, "--no-input", help="Never prompt, even on a terminal (as without one: --yes is "
                                                   "required to change the target). Also accepted before the command name.")


def flag_only(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """`--profiles DIR` is one directory; its variable RELOCATE_PROFILES is a `:`-separated
    list (docs/policy.md), read and split by settings.profile_dirs for every command. So a
    value the option took from that variable (the CLI binds one to every option) is dropped
    here: taken whole, `/a:/b` would be looked up as one directory."""
    source = ctx.get_parameter_source(param.name or "")
    # by name: newer Typer vendors its own click, whose ParameterSource is not click's
    return None if source is not None and source.name == "ENVIRONMENT" else value


PROFILES_HELP = ("Extra provider profiles directory, overriding the shipped ones by id (one directory; "
                 "$RELOCATE_PROFILES: a `:`-separated list of them, read before it).")
PROFILES = typer.Option(None, "--profiles", envvar="RELOCATE_PROFILES", callback=flag_only, metavar="DIR", help=PROFILES_HELP)


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


def _source(ctx: typer.Context | None, name: str) -> str:
    """Where the option took its value: COMMANDLINE, ENVIRONMENT (its RELOCATE_* variable),
    DEFAULT... ("" when unknown)."""
    source = ctx.get_parameter_source(name) if ctx is not None else None
    # by name: newer Typer vendors its own click, whose ParameterSource is not click's
    return source.name if source is not None else ""


def json_or_format(as_json: bool, fmt: str, default: str, ctx: typer.Context | None = None) -> str:
    """The output format of a command with both `--json` and `--format`: `--json` is
    `--format json`. Given with a `--format` other than json, the two ask for different
    documents, and which one wins would be a guess (README: one or the other); an explicit
    `--format text` is such a format too, only the default left alone is not. Unless one
    of them came from its variable (RELOCATE_JSON, RELOCATE_<COMMAND>_FORMAT) and the
    other from the command line: the flag wins over the variable (docs/ci.md), whichever
    it is (`RELOCATE_JSON=1 relocate plan --format text` is text)."""
    from relocate.cli import jsondoc
    from relocate.errors import UsageError

    json_from, fmt_from = _source(ctx, "as_json"), _source(ctx, "fmt")
    fmt_given = fmt != default or fmt_from in ("COMMANDLINE", "ENVIRONMENT")
    chosen = fmt
    if as_json and fmt != "json" and fmt_given:
        if json_from == "ENVIRONMENT" and fmt_from == "COMMANDLINE":
            chosen = fmt
        elif fmt_from == "ENVIRONMENT" and json_from == "COMMANDLINE":
            chosen = "json"
        else:
            jsondoc.wanted(False)  # asked for both: no document, not even an error's
            raise UsageError(f"--json and --format {fmt}: one or the other")
    elif as_json:
        chosen = "json"
    jsondoc.wanted(chosen == "json")  # what a failure from here on prints on stdout (cli/__init__.py)
    return chosen
