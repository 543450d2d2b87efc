"""Every command `relocate --help` lists is documented in README.md (sqlite-utils style)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from helpers import cli
from relocate.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"


def _commands() -> list[str]:
    group = typer.main.get_command(app)
    return sorted(name for name, cmd in group.commands.items() if not cmd.hidden)


def test_help_lists_the_commands() -> None:
    run = cli("--help")
    assert run.exit_code == 0, run.stderr
    names = _commands()
    assert {"init", "plan", "move", "verify"} <= set(names)
    for name in names:
        assert re.search(rf"\b{re.escape(name)}\b", run.stdout), f"{name} missing from --help"


def test_every_command_is_in_the_readme() -> None:
    assert README.exists(), "README.md is missing"
    text = README.read_text(encoding="utf-8")
    missing = [name for name in _commands() if not re.search(rf"relocate {re.escape(name)}\b", text)]
    assert not missing, f"README.md does not mention: {', '.join('relocate ' + m for m in missing)}"


def test_every_command_has_help() -> None:
    for name in _commands():
        run = cli(name, "--help")
        assert run.exit_code == 0, (name, run.stderr)
        assert "Usage:" in run.stdout and name in run.stdout


def test_the_root_help_lines_are_the_commands_own() -> None:
    # `relocate --help` lists commands from a table, without importing them (startup time):
    # each line must still be the first sentence of that command's own help.
    from relocate.cli import _COMMANDS

    group = typer.main.get_command(app)
    assert sorted(_COMMANDS) == _commands()
    for name, (_module, line) in _COMMANDS.items():
        own = " ".join((group.commands[name].help or "").split())
        assert own.startswith(line.rstrip(".")), f"{name}: {line!r} is not the start of {own!r}"


def test_a_flag_shows_no_value_in_help() -> None:
    # `--json <bool>` would read as if --json took a value; options that take one keep theirs.
    for args in (("--help",), ("move", "--help"), ("plan", "--help")):
        run = cli(*args)
        assert run.exit_code == 0, run.stderr
        assert "<bool>" not in run.stdout, args
    assert re.search(r"--transfers\s.*<int", cli("move", "--help").stdout)


def test_move_help_states_the_defaults_it_describes() -> None:
    # rich reads "[default: ...]" in a help text as markup and drops it unless escaped:
    # `--lanes` said nothing of its default until this test.
    from relocate.settings import TRANSFERS

    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", cli("move", "--help").stdout).split())
    assert f"in parallel [default: {TRANSFERS}]" in text
    assert "[default: the number of CPUs, from 2 to 4]" in text


def test_the_readme_plan_row_names_every_option_of_plan_help() -> None:
    """A tester reads the README's command table and `--help`: an option only one of them knows
    (`plan --checksum` once) is an option nobody can tell the meaning of."""
    text = README.read_text(encoding="utf-8")
    rows = " ".join(line for line in text.splitlines() if line.startswith("| `relocate plan "))
    plan = typer.main.get_command(app).commands["plan"]
    missing = [opt for p in plan.params if getattr(p, "param_type_name", "") == "option" and not p.hidden
               if not any(re.search(re.escape(o) + r"(?![\w-])", rows) for o in p.opts)
               for opt in p.opts[:1]]
    assert not missing, f"README's `relocate plan` row does not mention: {', '.join(missing)}"


def test_init_sends_the_user_to_check_then_plan_as_the_readme_does(tmp_path: Path) -> None:
    """README "Using it": init, edit, `relocate check`, then `relocate plan`."""
    target = tmp_path / "relocate.yaml"
    run = cli("init", str(target))
    assert run.exit_code == 0, run.stderr
    said = run.stdout
    assert f"relocate check -f {target}" in said and f"relocate plan -f {target}" in said
    assert said.index("relocate check") < said.index("relocate plan")
    text = README.read_text(encoding="utf-8")
    flow = text[text.index("relocate init  "):]
    assert flow.index("relocate check") < flow.index("relocate plan")
