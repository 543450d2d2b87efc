"""CI sets environment, not flags: every option of every command (including ones added
later) reads RELOCATE_<LONG NAME>. Walks the real command tree `relocate` runs."""

from __future__ import annotations

from typing import Any, Iterator

from helpers import cli

from relocate.cli import PER_COMMAND, build_command

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
            words = [*path.split()[1:], long[2:]] if long in PER_COMMAND else [long[2:] if long else ""]
            want = "RELOCATE_" + "_".join(w.upper().replace("-", "_") for w in words) if long else None
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
    run = cli("plan", "-f", "/nonexistent/relocate.yaml", env={"RELOCATE_PLAN_FORMAT": "yaml"})
    assert run.exit_code == 2 and "--format 'yaml'" in run.stderr


def test_options_that_differ_per_command_have_per_command_variables() -> None:
    root = build_command()
    by_name: dict[str, set[str]] = {}
    for path, cmd in _commands(root):
        for param in cmd.params:
            if getattr(param, "param_type_name", "") == "option" and param.envvar:
                by_name.setdefault(param.envvar, set()).add(" ".join(param.opts))
    assert root.commands["discover"].params and by_name.get("RELOCATE_DISCOVER_OUTPUT")
    assert by_name.get("RELOCATE_PLAN_OUTPUT") and "RELOCATE_OUTPUT" not in by_name
    assert "RELOCATE_FORMAT" not in by_name and "RELOCATE_FORCE" not in by_name
    assert {"RELOCATE_CHECK_FORMAT", "RELOCATE_PLAN_FORMAT", "RELOCATE_INIT_FORCE", "RELOCATE_DISCOVER_FORCE"} <= set(by_name)


def _parsed(command: str, env: dict[str, str], *args: str) -> dict:
    """The values click resolves for `relocate COMMAND ARGS` with env set (flags and variables)."""
    import os

    cmd = build_command().commands[command]
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return cmd.make_context(command, list(args)).params
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_setting_one_commands_output_does_not_affect_the_other(tmp_path) -> None:
    # A job that sets discover's output once must not send discover's YAML into the plan
    # file, nor the other way round.
    starter, plan_file = tmp_path / "starter.yaml", tmp_path / "plan.json"
    assert str(_parsed("discover", {"RELOCATE_DISCOVER_OUTPUT": str(starter)})["output"]) == str(starter)
    assert _parsed("plan", {"RELOCATE_DISCOVER_OUTPUT": str(starter)})["output"] is None
    assert str(_parsed("plan", {"RELOCATE_PLAN_OUTPUT": str(plan_file)})["output"]) == str(plan_file)
    assert _parsed("discover", {"RELOCATE_PLAN_OUTPUT": str(plan_file)})["output"] is None
    assert _parsed("check", {"RELOCATE_PLAN_FORMAT": "markdown"})["fmt"] == "table"


def test_init_force_variable_is_inits_own(tmp_path) -> None:
    target = tmp_path / "relocate.yaml"
    target.write_text("# kept\n")
    run = cli("init", str(target), env={"RELOCATE_DISCOVER_FORCE": "1"})
    assert run.exit_code == 2 and "already exists" in run.stderr and target.read_text() == "# kept\n"
    run = cli("init", str(target), env={"RELOCATE_INIT_FORCE": "1"})
    assert run.exit_code == 0 and target.read_text() != "# kept\n"


def test_bad_flag_value_is_a_usage_error_not_a_bug() -> None:
    run = cli("move", "--transfers", "0")
    assert run.exit_code == 2 and "internal error" not in run.stderr
