"""docs/scale.md says what the code does: its engine table is relocate.shards.engines', and
every `relocate shards emit` command it shows runs as written and makes the jobs and files
the commands after it name."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from helpers import cli
from test_shards_emit import CONFIG

from relocate.shards.engines import ENGINES

SCALE_MD = Path(__file__).resolve().parents[1] / "docs" / "scale.md"
TEXT = SCALE_MD.read_text(encoding="utf-8")


def _commands() -> list[str]:
    """Every shell line of the ```sh blocks, continuation lines joined."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", TEXT, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lines.append(line.strip())
    return lines


def test_the_engine_table_is_the_codes() -> None:
    rows = re.findall(r"^\| [^|]+ \| `([A-Z_]+)` \| ([^|]+) \|$", TEXT, re.M)
    assert [var for var, _ in rows] == [e.variable for e in ENGINES]
    for (var, shard), engine in zip(rows, ENGINES):
        if engine.min_variable:
            assert f"minus `{engine.min_variable}`" in shard, var
        elif engine.base:
            assert f"minus {engine.base}" in shard, var
        else:
            assert shard.strip() == "its value", var


@pytest.mark.parametrize("line", [c for c in _commands() if c.startswith("relocate shards emit ")])
def test_each_emit_command_runs_as_written(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    count = int(next(re.findall(r"relocate plan --shards (\d+)", c)[0] for c in _commands()
                     if re.search(r"relocate plan --shards \d+", c)))
    (tmp_path / "plan.json").write_text(json.dumps({"format_version": 1, "created_at": "2026-12-04T21:00:00Z",
                                                    "config_path": "relocate.yaml", "config_text": CONFIG,
                                                    "steps": [], "shards": {"count": count}}))
    args = shlex.split(line)[1:]
    run = cli(*args)
    assert run.exit_code == 0, run.stderr
    out = Path(args[args.index("-o") + 1])
    written = sorted(p.name for p in out.iterdir())
    # what the commands after it in the docs use
    later = " ".join(_commands())
    for name in written:
        if name.endswith((".yaml", ".yml", ".sh")):
            assert name in later, f"docs/scale.md never uses {name}"
    for job in re.findall(r"job/([a-z0-9-]+)", later):
        if "kubernetes" in line:
            assert f"name: {job}" in (out / "kubernetes.yaml").read_text()
