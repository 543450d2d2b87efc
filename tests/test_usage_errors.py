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


def test_json_with_format_json_is_fine() -> None:
    run = cli("check", "--content", "spam", "--provider", "aws", "--json", "--format", "json")
    assert run.exit_code in (0, 3, 4), run.stderr  # a verdict, whatever it is, not a usage error
    assert run.stdout.lstrip().startswith("{")
