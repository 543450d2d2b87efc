"""A bad flag, an unknown command, a value out of range: one line on stderr naming the
command's --help, exit 2 (README, "Exit codes"; docs/policy.md), not click's four-line
usage block."""

from __future__ import annotations

import pytest

from helpers import cli


@pytest.mark.parametrize("args, says", [
    (["plan", "--bogus"], "No such option: --bogus (see `relocate plan --help`)"),
    (["bogus"], "No such command 'bogus'. (see `relocate --help`)"),
    (["move", "--lanes", "99"], "Invalid value for '--lanes'"),
    (["profiles", "show"], "Missing argument"),
])
def test_a_usage_error_is_one_line(args: list[str], says: str) -> None:
    run = cli(*args)
    assert run.exit_code == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("relocate: error: ") and says in lines[0], lines[0]
    assert "Traceback" not in run.stderr and run.stdout == ""


def test_verify_without_a_snapshot_does_not_send_the_user_in_a_circle(tmp_path, sshd, moto: str) -> None:
    """A fresh CI runner: its move found everything in place and kept no snapshot; verify
    must not answer "run `relocate move` first" (that changes nothing) but say what does."""
    from helpers import make_config

    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / "t-nosnap"))
    run = cli("verify", "-f", str(cfg))
    assert run.exit_code == 2
    line = run.stderr.strip()
    assert len(line.splitlines()) == 1 and "no snapshot in" in line and "move --checksum" in line, line


@pytest.mark.parametrize("args", [
    ["check", "--content", "spam", "--provider", "aws", "--json", "--format", "markdown"],
    ["plan", "--json", "--format", "markdown"],
])
def test_json_and_another_format_are_one_or_the_other(args: list[str]) -> None:
    """`[--json | --format ...]` (docs/policy.md, README): asked for both, relocate does not
    pick one silently."""
    run = cli(*args)
    assert run.exit_code == 2 and run.stdout == "", (run.stdout, run.stderr)
    assert run.stderr.strip() == "relocate: error: --json and --format markdown: one or the other", run.stderr


@pytest.mark.parametrize("args, help_of", [([], "relocate"), (["profiles"], "relocate profiles")])
def test_a_bare_command_prints_its_help_and_says_what_is_missing(args: list[str], help_of: str) -> None:
    """Not `relocate: error:  (see ...)` with nothing between: the help on stdout, then one line, exit 2."""
    run = cli(*args)
    assert run.exit_code == 2 and "Usage:" in run.stdout
    assert run.stderr.strip() == f"relocate: error: missing command (see `{help_of} --help`)", run.stderr


@pytest.mark.parametrize("args, env, starts", [
    (["plan", "--json", "-f", "missing.yaml"], {"RELOCATE_PLAN_FORMAT": "markdown"}, "relocate: error: missing.yaml: no such file"),
    (["plan", "--format", "markdown", "-f", "missing.yaml"], {"RELOCATE_JSON": "1"}, "relocate: error: missing.yaml: no such file"),
])
def test_a_flag_on_the_command_line_wins_over_the_other_formats_variable(args: list[str], env: dict[str, str],
                                                                        starts: str) -> None:
    """docs/ci.md: "A flag on the command line wins over the variable" (here the file is missing: the
    format was accepted, and the plan went on to read relocate.yaml)."""
    run = cli(*args, env=env)
    assert run.exit_code == 2 and run.stderr.startswith(starts), run.stderr


@pytest.mark.parametrize("args, env, first", [
    (["check", "--content", "spam", "--provider", "aws", "--format", "markdown"], {"RELOCATE_JSON": "1"}, "# Acceptable-use check"),
    (["check", "--content", "spam", "--provider", "aws", "--json"], {"RELOCATE_CHECK_FORMAT": "markdown"}, "{"),
])
def test_check_takes_the_flag_over_the_variable(args: list[str], env: dict[str, str], first: str) -> None:
    run = cli(*args, env=env)
    assert run.exit_code == 0, run.stderr
    assert run.stdout.lstrip().startswith(first), run.stdout[:200]


def test_json_with_format_json_is_fine() -> None:
    run = cli("check", "--content", "spam", "--provider", "aws", "--json", "--format", "json")
    assert run.exit_code in (0, 3, 4), run.stderr  # a verdict, whatever it is, not a usage error
    assert run.stdout.lstrip().startswith("{")


CHECK = ["check", "--content", "spam", "--provider", "aws"]


@pytest.mark.parametrize("args, env, first", [
    # the flag on the command line wins over the other's variable, whichever it is, the
    # default format named on the command line included (docs/ci.md)
    ([*CHECK, "--format", "table"], {"RELOCATE_JSON": "1"}, "table"),
    ([*CHECK, "--json"], {"RELOCATE_CHECK_FORMAT": "table"}, "{"),
    ([*CHECK, "--format", "json"], {"RELOCATE_JSON": "1"}, "{"),
    ([*CHECK], {"RELOCATE_JSON": "1"}, "{"),
    ([*CHECK, "--json"], {}, "{"),
])
def test_the_format_on_the_command_line_wins_in_every_direction(args: list[str], env: dict[str, str], first: str) -> None:
    run = cli(*args, env=env)
    assert run.exit_code == 0, run.stderr
    if first == "table":
        assert not run.stdout.lstrip().startswith("{") and "Acceptable use, ranked" in run.stdout, run.stdout[:300]
    else:
        assert run.stdout.lstrip().startswith(first), run.stdout[:300]


@pytest.mark.parametrize("args, env, fmt", [
    (["plan", "--json", "--format", "text"], {}, "text"),  # both on the command line: one or the other
    ([*CHECK, "--json", "--format", "table"], {}, "table"),
    (["plan"], {"RELOCATE_JSON": "1", "RELOCATE_PLAN_FORMAT": "text"}, "text"),  # both variables
    ([*CHECK], {"RELOCATE_JSON": "1", "RELOCATE_CHECK_FORMAT": "table"}, "table"),
])
def test_json_and_an_explicit_default_format_are_one_or_the_other(args: list[str], env: dict[str, str], fmt: str) -> None:
    """`--json --format text` used to be JSON, silently: the explicit text lost."""
    run = cli(*args, env=env)
    assert run.exit_code == 2 and run.stdout == "", (run.stdout, run.stderr)
    assert run.stderr.strip() == f"relocate: error: --json and --format {fmt}: one or the other", run.stderr


def test_relocate_json_does_not_override_plan_format_text(tmp_path, sshd, moto: str) -> None:
    """The acceptance report: `RELOCATE_JSON=1 relocate plan --format text` printed JSON."""
    from helpers import make_config

    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / f"fmt-{tmp_path.name}"))
    run = cli("plan", "-f", str(cfg), "--format", "text", env={"RELOCATE_JSON": "1"})
    assert run.exit_code == 0, run.stdout + run.stderr
    assert run.stdout.startswith("Plan for") and "Ready" in run.stdout, run.stdout[:300]
    run = cli("plan", "-f", str(cfg), "--json", env={"RELOCATE_PLAN_FORMAT": "text"})
    assert run.exit_code == 0 and run.json()["ready"] is True, run.stderr
