"""CI sets environment, not flags: every option of every command (including ones added
later) reads RELOCATE_<LONG NAME>. Walks the real command tree `relocate` runs."""

from __future__ import annotations

from typing import Any, Iterator

from helpers import cli

from relocate.cli import build_command

ALLOWED_WITHOUT = {"--help", "--version"}  # print-and-exit flags: never an environment setting


def _commands(cmd: Any, path: str = "relocate") -> Iterator[tuple[str, Any]]:
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _commands(sub, f"{path} {name}")


def test_every_option_has_its_relocate_envvar() -> None:
    root = build_command()
    seen = 0
    problems = []
    for path, cmd in _commands(root):
        names = []
        for param in cmd.params:
            if getattr(param, "param_type_name", "") != "option":
                continue
            long = next((o for o in param.opts if o.startswith("--")), None)
            if long in ALLOWED_WITHOUT:
                continue
            seen += 1
            want = f"RELOCATE_{long[2:].upper().replace('-', '_')}" if long else None
            if want is None:
                problems.append(f"{path} {param.opts}: no long name to derive RELOCATE_* from")
            elif param.envvar != want:
                problems.append(f"{path} {long}: envvar {param.envvar!r}, expected {want}")
            names.append(param.envvar)
        assert len(names) == len(set(names)), f"{path}: two options share one variable"
    assert not problems, "\n".join(problems)
    assert seen > 30  # the walk really reached the subcommands
    assert {"discover", "plan", "move"} <= set(root.commands)


def test_envvar_reaches_the_command() -> None:
    # --region and --all-regions together is a usage error: proof the env var was read as the flag.
    run = cli("discover", "--region", "us-east-1", env={"RELOCATE_ALL_REGIONS": "1"})
    assert run.exit_code == 2 and "exclude each other" in run.stderr
    run = cli("plan", "-f", "/nonexistent/relocate.yaml", env={"RELOCATE_FORMAT": "yaml"})
    assert run.exit_code == 2 and "--format 'yaml'" in run.stderr


def test_bad_flag_value_is_a_usage_error_not_a_bug() -> None:
    run = cli("move", "--transfers", "0")
    assert run.exit_code == 2 and "internal error" not in run.stderr
