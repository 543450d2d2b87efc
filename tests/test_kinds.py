"""A new kind is one new module and its name in the registry (issue 17). The module shown
in docs/architecture.md's walk-through is taken from the doc itself, registered, and
goes through plan, the gate, the runner and verify with nothing else changed."""

from __future__ import annotations

import importlib
import json
import re
import secrets
import sys
import types
from pathlib import Path

import pytest

from helpers import aws_client, cli, make_config
from relocate import kinds

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def _doc_module() -> str:
    text = DOC.read_text()
    start = text.index("## Adding a kind")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


@pytest.fixture
def note_kind(monkeypatch: pytest.MonkeyPatch):
    mod = types.ModuleType("relocate.kinds.note")
    exec(compile(_doc_module(), "docs/architecture.md", "exec"), mod.__dict__)
    monkeypatch.setitem(sys.modules, "relocate.kinds.note", mod)
    monkeypatch.setattr(kinds, "MODULES", (*kinds.MODULES, "note"))
    assert importlib.import_module("relocate.kinds.note") is mod
    return mod


def test_the_documented_kind_runs_through_the_whole_pipeline(tmp_path: Path, moto: str, sshd, note_kind) -> None:
    s3 = aws_client("s3", moto)
    bucket = f"kind-{secrets.token_hex(3)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    root = sshd.root / f"kind-{secrets.token_hex(4)}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data"}])

    plan = cli("plan", "-f", str(cfg), "--json")
    assert plan.exit_code == 0, plan.stderr
    assert [s["id"] for s in plan.json()["steps"]] == [f"s3:{bucket}/", "note", "verify"]

    refused = cli("move", "-f", str(cfg))  # the gate stands before it like before any other change
    assert refused.exit_code == 2 and not (root / "MOVED.txt").exists(), refused.stderr

    move = cli("move", "-f", str(cfg), "--yes", "--json")
    assert move.exit_code == 0, move.stdout + move.stderr
    assert (root / "MOVED.txt").read_text() == "townsquare was moved here by relocate\n"
    checks = {c["label"]: c["ok"] for c in move.json()["result"]["verify"]["checks"]}
    assert checks == {"note MOVED.txt": True}
    manifest = json.loads(next((tmp_path / "snapshots").glob("*/manifest.json")).read_text())
    assert manifest["components"]["note"] == {"note": {"sha256_of": "MOVED.txt"}}
    start = [json.loads(line) for line in (root / ".relocate" / "audit.log").read_text().splitlines()][0]
    assert start["changes"] == ["write 1 file(s) (1 B) under data", "write MOVED.txt"] and start["approved"] == "--yes"

    again = cli("move", "-f", str(cfg), "--json")  # nothing to change: no question, nothing done
    assert again.exit_code == 0, again.stderr
    assert again.json()["result"]["nothing_to_do"] is True
