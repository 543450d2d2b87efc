"""target.prepare: the packages the move and the app need, found on a real sshd host."""

from __future__ import annotations

import secrets
from pathlib import Path

import yaml

from helpers import aws_client, cli, make_config
from relocate.kinds.packages import family_of, wanted_packages
from relocate.config import parse_config


def _config(tmp_path: Path, moto: str, sshd, packages: list[str]) -> Path:
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="prep")
    s3.put_object(Bucket="prep", Key="k", Body=b"v")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd,
                      root=str(sshd.root / f"prep-{secrets.token_hex(4)}"), buckets=[{"bucket": "prep", "to": "data"}])
    doc = yaml.safe_load(cfg.read_text())
    doc["target"].update(prepare=True, packages=packages)
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


def test_missing_package_without_sudo_blocks_and_is_listed_first(moto: str, sshd, tmp_path: Path) -> None:
    cfg = _config(tmp_path, moto, sshd, ["tar", "relocate-no-such-package"])
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 3, run.stderr
    plan = run.json()
    first = plan["steps"][0]
    assert first["kind"] == "prepare" and first["todo_count"] == 1
    assert "relocate-no-such-package" in first["detail"] and "tar" not in first["detail"]
    blocker = [b for b in plan["blockers"] if b["code"] == "prepare"]
    assert blocker and "sudo" in blocker[0]["message"]
    # a blocked plan moves nothing
    assert cli("move", "-f", str(cfg), "--yes").exit_code == 3


def test_everything_present_is_nothing_to_install(moto: str, sshd, tmp_path: Path) -> None:
    cfg = _config(tmp_path, moto, sshd, ["tar"])
    run = cli("move", "-f", str(cfg), "--yes", "--json")
    assert run.exit_code == 0, run.stderr
    doc = run.json()
    assert doc["plan"]["steps"][0]["kind"] == "prepare" and doc["plan"]["steps"][0]["todo_count"] == 0
    checks = {c["label"]: c["ok"] for c in doc["result"]["verify"]["checks"]}
    assert checks.get("package tar") is True and checks.get("package coreutils") is True


def test_package_names_follow_the_family(tmp_path: Path) -> None:
    text = """
version: 1
target: {ssh: {host: h}, root: /srv/a, database: {engine: postgres, url: "postgresql://a@127.0.0.1/a"}, packages: [libvips42]}
"""
    cfg = parse_config(text, tmp_path / "relocate.yaml", env={})
    deb, rhel = wanted_packages(cfg, "debian"), wanted_packages(cfg, "rhel")
    assert "postgresql-client" in deb and "postgresql" in rhel and "postgresql-client" not in rhel
    assert deb["libvips42"] == "target.packages" and {"tar", "coreutils", "findutils"} <= set(deb)
    assert family_of("ubuntu", "debian") == "debian" and family_of("rocky", "rhel centos fedora") == "rhel"
    assert family_of("alpine", "") == "unknown"


def test_text_plan_names_the_packages_it_installs(moto: str, sshd, tmp_path: Path) -> None:
    """Issue 15.4: the text plan's prepare row names the packages, not only how many."""
    cfg = _config(tmp_path, moto, sshd, ["tar", "relocate-nosuch-a", "relocate-nosuch-b"])
    run = cli("plan", "-f", str(cfg))
    assert run.exit_code == 3, run.stderr
    row = next(line for line in run.stdout.splitlines() if line.strip(" │|").startswith("prepare"))
    assert "relocate-nosuch-a" in row and "relocate-nosuch-b" in row, run.stdout
