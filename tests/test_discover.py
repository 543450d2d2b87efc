"""`relocate discover` against the moto server filled with a realistic account."""

from __future__ import annotations

from pathlib import Path

import yaml

from discover_seed import BUCKETS, seed_account
from helpers import cli

from relocate.config import parse_config


def test_discover_lists_every_resource_and_writes_a_starter_that_plans(moto: str, sshd, tmp_path: Path) -> None:
    seeded = seed_account(moto)
    out = tmp_path / "relocate.yaml"
    run = cli("discover", "--endpoint-url", moto, "--region", "us-east-1", "--count-objects", "-o", str(out), "--json")
    assert run.exit_code == 0, run.stderr
    found = run.json()
    res = found["resources"]
    assert found["failures"] == []
    buckets = {b["name"]: b for b in res["s3"]}
    assert set(buckets) == set(BUCKETS)
    for name, n in BUCKETS.items():  # exact counts from the listing pass
        assert buckets[name]["objects"] == n and buckets[name]["size_from"] == "listing"
        assert buckets[name]["bytes"] == sum(1000 + i for i in range(n))
    assert buckets["townsquare-media"]["versioning"] == "Enabled" and buckets["townsquare-media"]["encryption"] == "AES256"
    assert buckets["townsquare-backups"]["lifecycle_rules"] == 1 and buckets["townsquare-site"]["website"] is True
    assert [d["id"] for d in res["rds_instances"]] == ["townsquare-db"] and res["rds_instances"][0]["engine"] == "postgres"
    assert sorted(i["name"] for i in res["ec2"]) == ["bastion", "web-1"]
    assert all(i["volumes"] and i["volumes"][0]["size_gb"] for i in res["ec2"])
    assert len(res["ssm"]) == 4 and {s["name"] for s in res["secrets"]} == {"townsquare/prod/api", "townsquare/prod/db"}
    assert [z["name"] for z in res["route53"]] == ["townsquare.example"] and res["route53"][0]["records"] >= 2
    for kind in ("cloudfront", "ses", "sqs", "sns", "ecr", "lambda", "ecs", "elbv2", "acm"):
        assert res[kind], kind
        assert kind in found["ties"]
    assert len(res["ses"]) == 2 and res["ecs"][0]["service"] == "web"
    for value in seeded["secret_values"]:  # names only, never values
        assert value not in run.stdout and value not in out.read_text()

    # The starter validates as written, and covers what was found.
    text = out.read_text()
    config = parse_config(text, out)
    assert {b.bucket for b in config.s3} == set(BUCKETS)
    # a name never demotes what may be the only copy: backups go first, and each bucket says why
    assert {b.priority for b in config.s3 if b.bucket == "townsquare-backups"} == {"critical"}
    assert {b.priority for b in config.s3 if b.bucket == "townsquare-media"} == {"normal"}
    assert text.count("    # priority ") == len(BUCKETS) and "may hold the only copy" in text
    # the RDS database is listed, not commented out: the plan cannot forget it
    assert [d["rds"] for d in yaml.safe_load(text)["source"]["databases"]] == ["townsquare-db"]
    assert [p.path for p in config.parameters] == ["/townsquare/prod/", "/townsquare/staging/"]
    assert {s.name for s in config.secrets} == {"townsquare/prod/api", "townsquare/prod/db"}
    assert "townsquare-db" in text and "web-1" in text and "cloudfront" in text  # commented, for the user to finish

    # ... and plans once the placeholder target is replaced by a real host.
    doc = yaml.safe_load(text)
    doc["target"] = {"ssh": {"host": sshd.host, "port": sshd.port, "user": sshd.user, "identity_file": str(sshd.identity_file),
                             "host_key": sshd.host_key_fingerprint, "known_hosts": str(tmp_path / "kh")},
                     "root": str(sshd.root / "discovered")}
    doc["snapshot"] = {"dir": str(tmp_path / "snap"), "key_file": str(tmp_path / "age.key")}
    doc.get("source", {}).pop("dns", None)  # the DNS component is not this test's subject
    out.write_text(yaml.safe_dump(doc))
    # the database's password_from is still the placeholder: the plan refuses, naming it
    plan = cli("plan", "-f", str(out), "--json")
    assert plan.exit_code in (2, 3) and "CHANGE-ME" in plan.stderr + plan.stdout, plan.stderr
    # ... and plans once the user has decided about the database (here: not to move it)
    doc["source"].pop("databases")
    out.write_text(yaml.safe_dump(doc))
    plan = cli("plan", "-f", str(out), "--json")
    assert plan.exit_code == 0, plan.stderr
    steps = {s["id"]: s for s in plan.json()["steps"]}
    assert steps["s3:townsquare-media/"]["count"] == BUCKETS["townsquare-media"]
    assert "env:shared/secrets.env" in steps


def test_human_output(moto: str) -> None:
    seed_account(moto)
    run = cli("discover", "--endpoint-url", moto, "--region", "us-east-1")
    assert run.exit_code == 0, run.stderr
    assert "townsquare-media" in run.stdout and "townsquare-db: postgres" in run.stdout
    assert "Services that tie the app to AWS" in run.stdout and "cloudfront (1)" in run.stdout
    assert "cloudwatch" in run.stdout  # sizes from storage metrics unless --count-objects


def test_discover_usage_errors(tmp_path: Path) -> None:
    run = cli("discover", "--region", "us-east-1", "--all-regions")
    assert run.exit_code == 2 and "exclude each other" in run.stderr and "Traceback" not in run.stderr
    existing = tmp_path / "relocate.yaml"
    existing.write_text("keep me")
    run = cli("discover", "-o", str(existing))
    assert run.exit_code == 2 and "--force" in run.stderr and existing.read_text() == "keep me"


def test_unreachable_endpoint_is_reported_per_service(tmp_path: Path) -> None:
    # Nothing listens there: every service fails (after retries), each is listed with why,
    # and the exit code says "partial" (4) rather than aborting at the first.
    run = cli("discover", "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1", "--json")
    assert run.exit_code == 4
    failures = run.json()["failures"]
    assert {f["kind"] for f in failures} >= {"s3", "rds_instances", "route53"}
    assert all("cannot reach" in f["error"] for f in failures)


def test_names_never_demote_what_may_be_the_only_copy() -> None:
    from relocate.starter import bucket_priority

    for name in ("townsquare-backups", "db-archive", "pg-dumps", "snapshots-2020"):
        assert bucket_priority(name)[0] == "critical", name
    for name in ("access-logs", "app-logging"):
        assert bucket_priority(name)[0] == "normal", name  # logs may be the only record
    assert bucket_priority("img-thumbs")[0] == "bulk" and "re-creatable" in bucket_priority("img-thumbs")[1]
    assert bucket_priority("media")[0] == "normal" and bucket_priority("media")[1]
