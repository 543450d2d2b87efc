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
