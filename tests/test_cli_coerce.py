"""cli/coerce.py: relocate's plain options are converted without pydantic, to exactly
what Typer's own converter gives (issue 18: pydantic and a TypeAdapter per option cost
0.15-0.3 s of CPU per command). Every option of every command, on valid and invalid
values: the same result, or the same error message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import in_ci

try:
    import typer._coercion as typer_coercion
except ImportError:  # pragma: no cover - the Typer .ci/run installs has it
    if in_ci():
        pytest.fail("typer._coercion missing: .ci/run installs a Typer that converts with pydantic", pytrace=False)
    pytest.skip("an older Typer converts with click types, no pydantic", allow_module_level=True)

from relocate import cli  # noqa: E402
from relocate.cli import coerce  # noqa: E402


def _params() -> list[tuple[Any, Any]]:
    found = []

    def walk(cmd: Any) -> None:
        ctx = cmd.context_class(cmd)
        for p in cmd.get_params(ctx):
            found.append((cmd, p))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    for name in cli._COMMANDS:
        walk(cli._load(name))
    walk(cli.build_command())
    return found


def _outcome(convert: Any) -> tuple[str, Any]:
    try:
        value = convert()
    except Exception as exc:  # the message a user reads
        return "error", (type(exc).__name__, str(getattr(exc, "message", exc)))
    return type(value).__name__, value


def test_every_plain_option_converts_as_typer_does(tmp_path: Path) -> None:
    afile = tmp_path / "a.yaml"
    afile.write_text("x")
    samples = {
        str: ["abc", "", " x ", "ünï", "-"],
        int: ["0", "1", "16", "64", "65", "10000", "10001", "-1", "+3", " 7", "1_000", "08", "1e3", "abc", "", 5, 0, 100, True],
        float: ["1.5", "0", "2", "1e3", "inf", "-2", "abc", "", 2.0, 3],
        bool: [True, False, "true", "1", "no", ""],
        Path: ["rel.yaml", str(afile), str(tmp_path), str(tmp_path / "missing"), "", "-", Path("x"), afile],
    }
    checked = 0
    for cmd, param in _params():
        plain = param._runtime_param
        if plain is None:
            continue
        assert isinstance(plain, coerce.PlainParam), param.name
        annotation = param.type_descriptor.annotation
        listed = getattr(annotation, "__origin__", None) is list
        leaf = annotation.__args__[0] if listed else annotation
        values: list[Any] = samples[leaf]
        if listed:
            values = [tuple(values[:2]), (), tuple(values[-3:]), list(values[:1])]
        ctx = cmd.context_class(cmd)
        typer_own = typer_coercion.build_runtime_param(param.type_descriptor)
        for v in values:
            ours = _outcome(lambda: plain.coerce(v, param=param, ctx=ctx))
            theirs = _outcome(lambda: typer_own.coerce(v, param=param, ctx=ctx))
            assert ours == theirs, (cmd.name, param.name, v)
            checked += 1
    assert checked > 300


def test_a_move_parses_its_options_without_pydantic(tmp_path: Path) -> None:
    probe = ("import sys\n"
             "from relocate.cli import main\n"
             "try:\n"
             "    main(['move', '-f', sys.argv[1], '--yes', '--transfers', '8', '--lanes', '2', '--accept-risk', 'x'])\n"
             "except SystemExit as exc:\n"
             "    print(exc.code, 'pydantic' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "none.yaml")], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["2", "False"], out.stderr  # the missing file is reported, by relocate
    # a bad value is still Typer's own message (and its exit code)
    bad = subprocess.run([sys.executable, "-m", "relocate", "move", "--transfers", "65"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--transfers" in bad.stderr and "64" in bad.stderr, bad.stderr
