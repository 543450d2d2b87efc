"""The thin Typer layer: parse, call the library, render, map errors to exit codes.

Each command group lives in its own module with a `register(app)` function, so a
new command is a new module and one line in `_COMMANDS`. A command's module is
imported only when that command runs (or shows its own --help): the planner, boto3
and paramiko take most of a second to import, which `relocate --help`, `--version`,
`init`, `check` and `profiles` must not pay. `plan` and `move` import their machinery
inside the command's body, so their own --help does not pay it either.
"""

from __future__ import annotations

import collections
import importlib
import logging
import os
import signal
import sys
import tempfile
import traceback

from typing import Any, NoReturn

import typer
import typer.core
import typer.main

from relocate import __version__, gcfreeze
from relocate.cli import coerce, jsondoc
from relocate.errors import ExitCode, RelocateError

# name -> (module under relocate.cli, the line `relocate --help` shows without importing it).
# tests/test_cli_docs.py checks each line against the command's own help.
_COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init_cmd", "Write a commented relocate.yaml to start from."),
    "discover": ("discover_cmd", "Inventory the AWS account read-only."),
    "check": ("check", "Rank providers by whether their written terms and record accept this app, and check its vendor chain (not legal advice)."),
    "profiles": ("check", "Acceptable-use provider profiles: list, show, lint."),
    "plan": ("plan_cmd", "Read the source and probe the target (nothing is written) and show the plan."),
    "move": ("move_cmd", "Copy the data and config to the target, then verify it there."),
    "status": ("status_cmd", "Show a sharded move's progress per shard, read from the target."),
    "verify": ("verify_cmd", "Hash every file on the target and compare with the latest snapshot."),
    "rollback": ("rollback_cmd", "Switch back to the previous release and restart it."),
    "shards": ("emit_cmd", "Sharded moves: emit the files Kubernetes, GitHub Actions or AWS Batch need to run a plan made with `relocate plan --shards N` (docs/scale.md)."),
    "demo": ("demo_cmd", "Run plan, move and verify against an embedded source cloud and SSH target."),
}
_loaded: dict[str, dict[str, Any]] = {}  # module -> its commands, each module registered once


def _load(name: str) -> Any:
    """The real click command `name`, its module imported and registered on first use."""
    module = _COMMANDS[name][0]
    if module not in _loaded:
        sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        # The modules a command imports (boto3's, paramiko's: hundreds of thousands of
        # objects, none of them garbage) live as long as the process: no collection while
        # they load, and moved out of the collector's way afterwards, so a full collection
        # does not walk them again and again (issue 18: ~0.1 s of a rerun's CPU).
        with gcfreeze.paused():
            try:
                importlib.import_module(f"relocate.cli.{module}").register(sub)
            finally:
                gcfreeze.freeze()
        commands = dict(typer.main.get_group(sub).commands)
        for cname, cmd in commands.items():
            _bind_envvars(cmd, (cname,))
        _loaded[module] = commands
    return _loaded[module][name]


class _Commands(dict):  # type: ignore[type-arg]
    """The root group's command table: every name known at once, each command loaded when
    it is looked up. Iterating names (suggestions for a typo, the help listing) loads nothing."""

    def __init__(self) -> None:
        super().__init__({name: None for name in _COMMANDS})

    def __getitem__(self, name: str) -> Any:
        return _load(name)

    def get(self, name: str, default: Any = None) -> Any:
        return _load(name) if name in _COMMANDS else default

    def items(self) -> Any:
        return [(name, _load(name)) for name in _COMMANDS]

    def values(self) -> Any:
        return [_load(name) for name in _COMMANDS]


class _LazyGroup(typer.core.TyperGroup):
    _listing = False

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.commands = _Commands()

    def list_commands(self, ctx: Any) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in _COMMANDS:
            return None
        if self._listing:  # the root's help names each command and its line, nothing more
            line = _COMMANDS[cmd_name][1]
            return typer.core.TyperCommand(cmd_name, help=line, short_help=line)
        return _load(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def _flag_type(self: Any, ctx: Any) -> Any:
    """Typer 0.29's help shows a flag's Python type (`--json <bool>`, `--help <bool>`),
    which reads as if the flag took a value; a flag's type column stays blank, as in click."""
    return None if getattr(self, "is_flag", False) else _option_type(self, ctx)


_option_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"relocate {__version__}")
        raise typer.Exit(0)


app = typer.Typer(
    cls=_LazyGroup,
    name="relocate",
    help="Move an app off its cloud onto a plain Linux host over SSH: plan, move, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state: dict[str, Any] = {"debug": False, "no_input": False, "signal": "SIGINT"}


def debug_enabled() -> bool:
    return bool(_state["debug"])


def can_prompt() -> bool:
    """Whether asking the user is allowed: never under --no-input, never without a terminal."""
    return not _state["no_input"] and sys.stdin.isatty()


def why_no_prompt(no_input: bool = False) -> str:
    """Why relocate may not ask, for the refusal: --no-input says so even on a terminal.
    `no_input`: a command's own --no-input (the root's, and RELOCATE_NO_INPUT, are in _state)."""
    return "input is off (--no-input)" if no_input or _state["no_input"] else "no terminal to ask on"


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", envvar="RELOCATE_DEBUG",
                               help="Show tracebacks; write a debug log (libraries' lines, each remote command), its path printed first."),
    no_input: bool = typer.Option(False, "--no-input", envvar="RELOCATE_NO_INPUT",
                                  help="Never prompt, even on a terminal (as without one: pass --yes where asked)."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print relocate's version and exit."),
) -> None:
    _state["debug"] = debug
    _state["no_input"] = no_input
    _setup_logging(debug)


class _Recent(logging.Handler):
    """The last log records of every library, kept for the debug log of an internal error."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: collections.deque[str] = collections.deque(maxlen=500)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a bad record must never break the command
            pass


_recent = _Recent()
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _setup_logging(debug: bool) -> None:
    """Only relocate's own warnings reach the user's stderr. Libraries (paramiko's
    "Secsh channel N open FAILED" on every health-check retry, urllib3, ...) go to the
    debug log only: kept in memory for an internal error's debug log, and written to
    a file named on stderr under --debug. Under --debug that file also gets the
    libraries' INFO lines (logins, credentials' origin, dropped connections) and
    relocate's own DEBUG lines (each remote command's head and exit, each listing, each
    step): a warnings-only file was empty after a run that went well, which is when one
    asks "what did it do?"."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_relocate", False)]:
        root.removeHandler(h)
        h.close()
    own = logging.getLogger("relocate")
    for h in [h for h in own.handlers if getattr(h, "_relocate", False)]:
        own.removeHandler(h)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # A library's Python warnings (asyncssh's CryptographyDeprecationWarning under a newer
    # cryptography) are log lines like any other: the debug log, not the terminal.
    logging.captureWarnings(True)
    _recent.setFormatter(logging.Formatter(_LOG_FORMAT))
    _recent._relocate = True  # type: ignore[attr-defined]
    root.addHandler(_recent)
    to_user = logging.StreamHandler(sys.stderr)
    to_user.setLevel(logging.WARNING)  # the DEBUG lines go to the file, not between the progress lines
    to_user.setFormatter(logging.Formatter("relocate: %(levelname)s %(name)s: %(message)s"))
    to_user._relocate = True  # type: ignore[attr-defined]
    own.addHandler(to_user)
    if debug:
        fd, path = tempfile.mkstemp(prefix="relocate-debug-", suffix=".log")
        os.close(fd)
        to_file = logging.FileHandler(path, encoding="utf-8")
        to_file.setFormatter(logging.Formatter(_LOG_FORMAT))
        to_file._relocate = True  # type: ignore[attr-defined]
        root.addHandler(to_file)
        sys.stderr.write(f"relocate: debug log (every library's log lines): {path}\n")
    # botocore logs SSM and secret values at debug level: never let it, even under --debug
    # (INFO at most; tests/test_safety.py searches these files for every secret value).
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "paramiko", "asyncssh"):
        logging.getLogger(noisy).setLevel(logging.INFO if debug else logging.WARNING)


def _write_debug_log(text: str) -> str:
    fd, path = tempfile.mkstemp(prefix="relocate-debug-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        if _recent.lines:
            fh.write("\nrecent log lines:\n" + "\n".join(_recent.lines) + "\n")
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


# Options no environment variable may set: a RELOCATE_VERSION left in a CI job's
# environment must not turn every command into "print the version".
_NO_ENVVAR = {"--version"}


def _bind_envvars(cmd: Any, path: tuple[str, ...] = ()) -> None:
    """Every option of `cmd` and its subcommands also reads its RELOCATE_* variable,
    including options a command module declares without one (CI sets env, not flags);
    and converts its value without pydantic when it is plain (cli/coerce.py)."""
    coerce.install(cmd)
    for param in cmd.params:
        # by duck type: newer Typer vendors its own click, whose classes are not click's
        if getattr(param, "param_type_name", "") != "option" or _NO_ENVVAR & set(param.opts):
            continue
        per_command = any(o in PER_COMMAND for o in param.opts)
        if (not param.envvar or per_command) and (name := envvar_name(param, path)):
            param.envvar = name
            param.show_envvar = True
        if "--json" in param.opts and not getattr(param.callback, "_notes_json", False):
            param.callback = _noting_json(param.callback)
    if not isinstance(cmd, _LazyGroup):  # the root's subcommands bind theirs when loaded
        for name, sub in getattr(cmd, "commands", {}).items():
            _bind_envvars(sub, (*path, name))


def _noting_json(callback: Any) -> Any:
    """`--json` (or RELOCATE_JSON) as parsed, noted for the error document a failure prints
    (jsondoc.failed): every command's, here once. A command with `--format` too decides
    again in options.json_or_format (the flag on the command line wins over the variable)."""
    def note(ctx: Any, param: Any, value: Any) -> Any:
        if value:
            jsondoc.wanted(True)
        return callback(ctx, param, value) if callback is not None else value
    note._notes_json = True  # type: ignore[attr-defined]
    return note


def build_command() -> Any:
    """The click command tree `relocate` runs (subcommands load when looked up)."""
    command = typer.main.get_command(app)
    _bind_envvars(command)
    return command


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected error becomes one line and its exit code.

    Called with no arguments it is the process's entry point (the `relocate` script,
    `python -m relocate`) and leaves through `_leave`; with an argv (tests, a library
    caller) it raises SystemExit as usual."""
    if argv is not None:
        return _main(argv)
    gcfreeze.own_process()  # leaves through _leave: what is frozen stays frozen (gcfreeze.py)
    sys.stderr = _StderrGone.wrap(sys.stderr)
    sys.stdout = _StdoutGone.wrap(sys.stdout)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        _main(None)
    except SystemExit as exc:
        _leave(exc.code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound as Ctrl-C is (its name is what the audit log's `error` says)."""


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM (a CI job cancelled, a pod evicted) as Ctrl-C: raised in the main thread,
    so the move unwinds as it does for an interrupt (the lock released, the audit line
    written, the partial work kept for the resume) instead of dying where it stands."""
    _state["signal"] = "SIGTERM"
    raise Terminated


class _StderrGone:
    """stderr that outlives its reader. Progress, warnings and the error line are for a
    person or a log; when whoever read them goes away (`relocate move --json 2>&1 >out |
    head -c 100`), a write would raise BrokenPipeError in the middle of a move and leave
    it half done with exit 1. Once the pipe is gone, writes to it are dropped and the
    move runs to its end, stdout's JSON and exit code included."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.gone = False

    @classmethod
    def wrap(cls, stream: Any) -> Any:
        return stream if stream is None or isinstance(stream, cls) else cls(stream)

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return int(self._stream.write(text))
            except (BrokenPipeError, ValueError):  # ValueError: the stream was closed
                self._lost()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._lost()

    def _lost(self) -> None:
        self.gone = True

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


class _StdoutGone(_StderrGone):
    """stdout whose reader stopped reading (`relocate plan | head -c 10`, `| grep -m1`): not
    a bug. click's own answer to EPIPE is `sys.exit(1)` with nothing said, which read as a
    failed plan; here what is left to print is dropped and the command ends with its own
    exit code (0 Ready, 3 blocked, ...). As Python's documentation advises (signal module,
    "Note on SIGPIPE"), /dev/null goes onto the descriptor, so the buffered rest and the
    interpreter's last flush of stdout go nowhere instead of failing again."""

    def _lost(self) -> None:
        self.gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no descriptor to replace: the dropped writes suffice
            pass


def _leave(code: Any) -> None:
    """Exit without tearing the interpreter down. Python's finalization frees every module
    and object one by one: with boto3's service models and paramiko loaded that is 0.2-0.9 s
    of CPU on a busy 2-core machine, a quarter of a rerun that has nothing to do (issue 18).
    The atexit handlers still run (log handlers flushed and closed, thread pools joined) and
    the standard streams are flushed; only the teardown is skipped. Where a thread that is
    not a daemon still runs, or the code is not a number, Python's own exit does it all."""
    import atexit
    import threading

    main_thread = threading.main_thread()
    if not isinstance(code, (int, type(None))) or any(
            t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`relocate plan | head`): nothing more to say
            pass
    os._exit(code or 0)


def _usage_line(exc: Any) -> str:
    """click's usage error as relocate's one line (click prints a four-line block: usage,
    "Try ...", a blank, "Error: ..."), naming the command whose --help would help."""
    message = " ".join(exc.format_message().split())
    if type(exc).__name__ == "NoArgsIsHelpError":
        # `relocate` or `relocate profiles` alone: the help is on stdout already, and this
        # error's own message is empty; say what is missing (still a usage error, exit 2)
        message = "missing command"
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see `{ctx.command_path} --help`)" if ctx is not None else message


INTERRUPTED = 130  # what Typer returns for a KeyboardInterrupt


def _fail(code: int, said: str, *, kind: str | None = None) -> NoReturn:
    """The one way a command fails: `relocate: SAID` on stderr (SAID is `error: ...` but for
    an interrupt, an abort or a bug), under JSON (--json, RELOCATE_JSON, a json --format)
    the error document with the same line on stdout when the command printed none
    (jsondoc.failed; docs/json.md), and exit `code`."""
    typer.echo(f"relocate: {said}", err=True)
    jsondoc.failed(code, said.removeprefix("error: "), kind)
    sys.exit(code)


def _main(argv: list[str] | None) -> None:
    jsondoc.reset()
    try:
        # Non-standalone click/typer *returns* the code of a `typer.Exit(n)` instead of
        # raising it: keep it, or every `raise typer.Exit(3 or 4)` would exit 0.
        code = build_command().main(args=argv, prog_name="relocate", standalone_mode=False)
    except RelocateError as exc:
        if _state["debug"]:
            traceback.print_exc()
        _fail(int(exc.exit_code), f"error: {exc.line()}")
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        _fail(int(ExitCode.USAGE), "aborted")
    except KeyboardInterrupt:
        code = INTERRUPTED
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        # By name: newer Typer vendors its own click (typer._click), whose ClickException
        # is not click's; a bad flag value must still be a usage error (2), not a bug (1).
        if any(c.__name__ == "ClickException" for c in type(exc).__mro__):
            _fail(int(ExitCode.USAGE), f"error: {_usage_line(exc)}")
        if _state["debug"]:
            traceback.print_exc()
        path = _write_debug_log(traceback.format_exc())
        _fail(int(ExitCode.BUG), f"internal error: {type(exc).__name__}: {exc} (details in {path}; please report)")
    if code == INTERRUPTED:
        # Typer turns a KeyboardInterrupt (Ctrl-C, or SIGTERM: _terminated) into Exit(130)
        # and returns it; no command of relocate's exits 130 itself.
        _fail(int(ExitCode.TRANSIENT), f"interrupted ({_state['signal']}); running the same command again resumes",
              kind="interrupted")
    if isinstance(code, int) and code:
        # a command that said why itself and exits with its code (`typer.Exit(n)`): under
        # JSON it still leaves a document
        jsondoc.failed(code, f"exit {code} (the reason is on stderr)")
    sys.exit(code if isinstance(code, int) else 0)
