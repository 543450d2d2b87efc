"""`move plan.json` executes the SAVED plan (issue 17): its steps, in its order. A fresh
plan is built only to detect drift. A step dropped from plan.json is not run; a step the
fresh plan does not know, or knows with another kind, source or destination, makes the
saved plan stale (exit 6) and nothing is written."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from helpers import aws_client, cli, make_config


def _setup(tmp_path: Path, moto: str, sshd) -> tuple[Path, Path, Path, str, str]:
    s3 = aws_client("s3", moto)
    a, b = f"sp-a-{secrets.token_hex(3)}", f"sp-b-{secrets.token_hex(3)}"
    for bucket in (a, b):
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="k.txt", Body=bucket.encode())
    root = sshd.root / f"sp-{secrets.token_hex(4)}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": a, "to": "data/a"}, {"bucket": b, "to": "data/b"}])
    plan_file = tmp_path / "plan.json"
    run = cli("plan", "-f", str(cfg), "-o", str(plan_file))
    assert run.exit_code == 0, run.stdout + run.stderr
    return cfg, plan_file, root, a, b


def _audit_steps(root: Path) -> list[list[str]]:
    lines = (root / ".relocate" / "audit.log").read_text().splitlines()
    return [e["steps"] for e in map(json.loads, lines) if e["action"] == "move-start"]


def test_saved_order_is_followed(tmp_path: Path, moto: str, sshd) -> None:
    cfg, plan_file, root, a, b = _setup(tmp_path, moto, sshd)
    doc = json.loads(plan_file.read_text())
    ids = [s["id"] for s in doc["steps"]]
    assert ids == [f"s3:{a}/", f"s3:{b}/", "verify"]
    doc["steps"] = [doc["steps"][1], doc["steps"][0], doc["steps"][2]]  # b before a
    plan_file.write_text(json.dumps(doc))
    run = cli("move", str(plan_file), "--yes", "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert _audit_steps(root) == [[f"s3:{b}/", f"s3:{a}/", "verify"]]
    assert [s["id"] for s in run.json()["plan"]["steps"]] == [f"s3:{b}/", f"s3:{a}/", "verify"]
    assert (root / "data/a/k.txt").read_bytes() == a.encode() and (root / "data/b/k.txt").read_bytes() == b.encode()


def test_a_dropped_step_is_not_run(tmp_path: Path, moto: str, sshd) -> None:
    cfg, plan_file, root, a, b = _setup(tmp_path, moto, sshd)
    doc = json.loads(plan_file.read_text())
    doc["steps"] = [s for s in doc["steps"] if s["id"] != f"s3:{b}/"]
    plan_file.write_text(json.dumps(doc))
    run = cli("move", str(plan_file), "--yes")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert (root / "data/a/k.txt").exists() and not (root / "data/b").exists()
    assert _audit_steps(root) == [[f"s3:{a}/", "verify"]]
    # the relocate.yaml itself still moves everything
    run = cli("move", "-f", str(cfg), "--yes")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert (root / "data/b/k.txt").read_bytes() == b.encode()


def test_a_step_the_source_does_not_have_or_moved_elsewhere_is_stale(tmp_path: Path, moto: str, sshd) -> None:
    cfg, plan_file, root, a, b = _setup(tmp_path, moto, sshd)
    saved = plan_file.read_text()
    for edit, words in (
        (lambda d: d["steps"][0].update(dest="elsewhere"), f"step s3:{a}/: it now reads or writes elsewhere"),
        (lambda d: d["steps"].insert(0, {**d["steps"][0], "id": "s3:nosuch/"}), "step s3:nosuch/: the source and target no longer have it"),
    ):
        doc = json.loads(saved)
        edit(doc)
        plan_file.write_text(json.dumps(doc))
        run = cli("move", str(plan_file), "--yes")
        assert run.exit_code == 6, run.stdout + run.stderr
        assert "the saved plan is stale" in run.stderr and words in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
        assert not (root / "data").exists()
