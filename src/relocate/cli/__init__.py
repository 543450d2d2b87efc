"""The thin Typer layer: parse, call the library, render, map errors to exit codes.

Each command group lives in its own module with a `register(app)` function, so a
new command is a new module and one line in `_COMMAND_MODULES`.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import traceback

from typing import Any

import typer
import typer.main

from relocate.errors import ExitCode, RelocateError

app = typer.Typer(
    name="relocate",
    help="Move an app off its cloud onto a plain Linux host over SSH: plan, move, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMAND_MODULES = ("init_cmd", "plan_cmd", "move_cmd", "verify_cmd", "demo_cmd", "check", "discover_cmd", "rollback_cmd")

_state = {"debug": False, "no_input": False}


def debug_enabled() -> bool:
    return _state["debug"]


def can_prompt() -> bool:
    """Whether asking the user is allowed: never under --no-input, never without a terminal."""
    return not _state["no_input"] and sys.stdin.isatty()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", envvar="RELOCATE_DEBUG", help="Show tracebacks and debug logs."),
    no_input: bool = typer.Option(False, "--no-input", envvar="RELOCATE_NO_INPUT",
                                  help="Never prompt, even on a terminal (as without one: pass --yes where asked)."),
) -> None:
    _state["debug"] = debug
    _state["no_input"] = no_input
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # botocore logs SSM and secret values at debug level: never let it, even under --debug.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "paramiko", "asyncssh"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


for _name in _COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"relocate.cli.{_name}")
    except ModuleNotFoundError as exc:  # a command group not written yet must not break the rest
        if exc.name != f"relocate.cli.{_name}":
            raise
        continue
    _mod.register(app)


def _write_debug_log(text: str) -> str:
    fd, path = tempfile.mkstemp(prefix="relocate-debug-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


# Options whose meaning differs from command to command: one shared variable would make a
# job that sets it for one command change another (RELOCATE_OUTPUT once sent discover's
# YAML into the plan file). These read RELOCATE_<COMMAND>_<LONG NAME> instead.
PER_COMMAND = frozenset({"--output", "--force", "--format"})


def envvar_name(option: Any, command: tuple[str, ...] = ()) -> str | None:
    """RELOCATE_<LONG NAME>: `--accept-new-host-key` reads RELOCATE_ACCEPT_NEW_HOST_KEY;
    an option in PER_COMMAND also names its command: `plan -o` reads RELOCATE_PLAN_OUTPUT."""
    long = next((o for o in option.opts if o.startswith("--")), None)
    if not long:
        return None
    words = [*command, long[2:]] if long in PER_COMMAND else [long[2:]]
    return "RELOCATE_" + "_".join(w.upper().replace("-", "_") for w in words)


def build_command() -> Any:
    """The click command tree, every option also readable from its RELOCATE_* variable,
    including options a command module declares without one (CI sets env, not flags)."""
    command = typer.main.get_command(app)

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        for param in cmd.params:
            # by duck type: newer Typer vendors its own click, whose classes are not click's
            if getattr(param, "param_type_name", "") != "option":
                continue
            per_command = any(o in PER_COMMAND for o in param.opts)
            if (not param.envvar or per_command) and (name := envvar_name(param, path)):
                param.envvar = name
                param.show_envvar = True
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*path, name))

    walk(command, ())
    return command


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected error becomes one line and its exit code."""
    try:
        # Non-standalone click/typer *returns* the code of a `typer.Exit(n)` instead of
        # raising it: keep it, or every `raise typer.Exit(3 or 4)` would exit 0.
        code = build_command().main(args=argv, prog_name="relocate", standalone_mode=False)
    except RelocateError as exc:
        if _state["debug"]:
            traceback.print_exc()
        typer.echo(f"relocate: error: {exc.line()}", err=True)
        sys.exit(int(exc.exit_code))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("relocate: aborted", err=True)
        sys.exit(int(ExitCode.USAGE))
    except KeyboardInterrupt:
        typer.echo("relocate: interrupted; running the same command again resumes", err=True)
        sys.exit(int(ExitCode.TRANSIENT))
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        # By name: newer Typer vendors its own click (typer._click), whose ClickException
        # is not click's; a bad flag value must still be a usage error (2), not a bug (1).
        if any(c.__name__ == "ClickException" for c in type(exc).__mro__):
            exc.show()
            sys.exit(int(ExitCode.USAGE))
        if _state["debug"]:
            traceback.print_exc()
        path = _write_debug_log(traceback.format_exc())
        typer.echo(f"relocate: internal error: {type(exc).__name__}: {exc} (details in {path}; please report)", err=True)
        sys.exit(int(ExitCode.BUG))
    sys.exit(code if isinstance(code, int) else 0)
