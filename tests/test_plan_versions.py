"""`relocate plan` on a versioned bucket with `versions: all`, against real servers (S3 from
moto AND SeaweedFS, the target a real OpenSSH sshd):

- `--probe` reads the older versions it samples the way `move` does (GetObject with a
  VersionId), so a version whose key is now deleted is measured, not "vanished", and a
  probe that cannot read its sample falls back to the defaults instead of failing the plan;
- the older-versions step carries its bucket's region, so the egress estimate prices it
  there (not at the dearest rates, with a false stale-rates warning).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from helpers import aws_client, cli, make_config, s3_endpoint


@pytest.fixture
def versioned(tmp_path: Path, sshd: Any, s3_server: Any, moto: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, Any]:
    """A versioned bucket with two older versions of a live key and one of a deleted key
    (its latest is a delete marker), listed with `versions: all`. S3 from the parametrized
    server (on SeaweedFS, boto3's per-service endpoint variables route the rest to moto)."""
    endpoint = s3_endpoint(s3_server, moto, monkeypatch)
    s3 = s3_server.client()
    bucket = s3_server.new_bucket("acc-backups")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for i in range(3):
        s3.put_object(Bucket=bucket, Key="doc.txt", Body=f"draft {i}".encode())
    s3.put_object(Bucket=bucket, Key="gone.txt", Body=b"deleted later")
    s3.delete_object(Bucket=bucket, Key="gone.txt")
    root = sshd.root / f"pv-{secrets.token_hex(4)}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=endpoint, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data/backups", "versions": "all"}])
    return cfg, bucket, s3


def test_probe_reads_older_versions_as_move_does(versioned: tuple[Path, str, Any]) -> None:
    cfg, bucket, _ = versioned
    run = cli("plan", "-f", str(cfg), "--probe", "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    plan = run.json()
    # the current doc.txt, its two older versions and gone.txt's one: all four read and sent
    assert plan["estimate_basis"].startswith("measured: 4 real objects"), plan["estimate_basis"]
    assert {s["id"]: s["count"] for s in plan["steps"] if s["kind"] == "s3"} == {f"s3:{bucket}/": 1, f"s3:{bucket}/#versions": 3}
    # the throwaway directory is gone, whatever was read
    assert not list(Path(plan["facts"]["existing"]).glob(".relocate-probe-*"))


def test_probe_that_cannot_read_its_sample_does_not_fail_the_plan(versioned: tuple[Path, str, Any],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An object deleted between the listing and the probe's GET: the probe says it could not
    measure, the plan is built with the conservative defaults and exits as it would have."""
    cfg, bucket, s3 = versioned
    from relocate.execute import probe

    real = probe.pick_sample

    def pick_then_delete(*a: Any, **kw: Any) -> Any:
        picked = real(*a, **kw)
        s3.delete_object(Bucket=bucket, Key="doc.txt")  # the current doc.txt: now a delete marker
        return picked

    monkeypatch.setattr(probe, "pick_sample", pick_then_delete)
    run = cli("plan", "-f", str(cfg), "--probe", "--json",
              env={"RELOCATE_RETRY_ATTEMPTS": "2", "RELOCATE_RETRY_BACKOFF": "0.01"})
    assert run.exit_code == 0, run.stdout + run.stderr
    basis = run.json()["estimate_basis"]
    assert basis.startswith("conservative defaults") and "probe failed" in basis and "doc.txt" in basis, basis
    assert not list(Path(run.json()["facts"]["existing"]).glob(".relocate-probe-*"))


def test_versions_step_is_priced_in_its_buckets_region(versioned: tuple[Path, str, Any], s3_server: Any) -> None:
    cfg, bucket, _ = versioned
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    plan = run.json()
    steps = {s["id"]: s for s in plan["steps"]}
    current, older = steps[f"s3:{bucket}/"], steps[f"s3:{bucket}/#versions"]
    assert older["region"] == current["region"]
    if s3_server.name == "moto":  # moto says where a bucket lives (SeaweedFS may not)
        assert current["region"] == "us-east-1"
        rows = plan["egress"]["by_region"]
        assert [(r["region"], r["rates_region"], r["note"]) for r in rows] == [("us-east-1", "us-east-1", "")], rows
        assert plan["egress"]["bytes"] == current["todo_bytes"] + older["todo_bytes"] > current["todo_bytes"]


def test_versions_step_region_is_the_buckets_own(moto: str, sshd: Any, tmp_path: Path) -> None:
    """A bucket outside relocate.yaml's region: both of its steps are priced where it lives."""
    s3 = aws_client("s3", moto)
    bucket = f"eu-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"old")
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"new!")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / f"eu-{tmp_path.name}"),
                      buckets=[{"bucket": bucket, "to": "data/eu", "versions": "all"}])
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    steps = {s["id"]: s for s in run.json()["steps"]}
    assert (steps[f"s3:{bucket}/"]["region"], steps[f"s3:{bucket}/#versions"]["region"]) == ("eu-west-1", "eu-west-1")
    rows = run.json()["egress"]["by_region"]
    assert [(r["region"], r["bytes"]) for r in rows] == [("eu-west-1", len(b"old") + len(b"new!"))], rows
