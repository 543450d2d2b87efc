"""What the plan and verify report, against the real servers (moto for S3 with versioning,
SSM; OpenSSH sshd for the target and the source host):

- older versions and delete markers of keys outside every listed prefix are counted in
  `left_out` and said by `plan` and `verify`'s `not moved:` line (they stay behind);
- the 100 GB egress allowance is one across all regions, never lowering the estimate
  below the bill;
- a host-files check names each difference in words, a removed file included;
- the text plan's host-files row shows its size (the rows add up to the total);
- the text plan shows an env directory's mode change, as README says.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import aws_client, cli, make_config
from relocate.egress_file import load_rates
from relocate.plan import egress


def _flat(text: str) -> str:
    """The output with rich's line folding undone (a long warning wraps at the console's width)."""
    return " ".join(text.split())


# --- 1. versions and delete markers outside the listed prefixes ------------------------


def test_versions_and_delete_markers_outside_the_prefixes_are_left_out_and_said(tmp_path: Path, moto: str, sshd: Any) -> None:
    s3 = aws_client("s3", moto)
    bucket = f"lov-{secrets.token_hex(3)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="uploads/a.jpg", Body=b"a1")
    s3.put_object(Bucket=bucket, Key="uploads/a.jpg", Body=b"a22")  # one older version inside the prefix
    s3.put_object(Bucket=bucket, Key="robots.txt", Body=b"r1")
    s3.put_object(Bucket=bucket, Key="robots.txt", Body=b"r22")  # current outside, with an older version
    s3.put_object(Bucket=bucket, Key="b.txt", Body=b"b-one")
    s3.put_object(Bucket=bucket, Key="b.txt", Body=b"b-two!")
    s3.delete_object(Bucket=bucket, Key="b.txt")  # only older versions + a delete marker left
    s3.put_object(Bucket=bucket, Key="tmp/gone.txt", Body=b"gone")
    s3.delete_object(Bucket=bucket, Key="tmp/gone.txt")
    older_out = len(b"r1") + len(b"b-one") + len(b"b-two!") + len(b"gone")

    root = sshd.root / f"lov-{secrets.token_hex(3)}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "prefix": "uploads/", "to": "data/uploads"}])
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    plan = run.json()
    assert plan["left_out"] == [{"bucket": bucket, "prefixes": ["uploads/"], "count": 1, "bytes": 3, "examples": ["robots.txt"],
                                 "versions": 4, "versions_bytes": older_out, "delete_markers": 2, "version_keys": 3,
                                 "version_examples": ["b.txt", "robots.txt", "tmp/gone.txt"]}], plan["left_out"]
    # the plan's warning says the same in every format (JSON's warnings, markdown, text)
    (warned,) = [w["message"] for w in plan["warnings"] if w["code"] == "s3-left-out"]
    assert "nor are 4 older version(s)" in warned and "of 3 key(s) outside them" in warned, warned
    # what the entry itself leaves behind is still its own (versions_left), unchanged
    assert [(v["prefix"], v["versions"], v["delete_markers"]) for v in plan["versions_left"]] == [("uploads/", 1, 0)]

    text = _flat(cli("plan", "-f", str(cfg)).stdout)
    assert (f"s3://{bucket}: 1 object(s), 3 B outside the listed prefixes ('uploads/') are NOT moved: 'robots.txt'; "
            f"nor are 4 older version(s), {older_out} B, and 2 delete marker(s) of 3 key(s) outside them: "
            "'b.txt', 'robots.txt', 'tmp/gone.txt'") in text, text

    moved = cli("move", "-f", str(cfg), "--yes")
    assert moved.exit_code == 0, moved.stdout + moved.stderr
    verify = cli("verify", "-f", str(cfg))
    assert verify.exit_code == 0, verify.stdout + verify.stderr
    assert (f"not moved: s3://{bucket}: 1 object(s), 3 B outside the listed prefixes ('uploads/') are NOT moved: "
            f"'robots.txt'; nor are 4 older version(s), {older_out} B, and 2 delete marker(s) of 3 key(s)") in verify.stdout, verify.stdout
    got = cli("verify", "-f", str(cfg), "--json").json()["left_out"]
    assert [(o["count"], o["versions"], o["delete_markers"]) for o in got] == [(1, 4, 2)], got

    # Only older versions and delete markers outside (no current object there): still said,
    # as its own entry, never a "0 object(s)" line in the text plan.
    s3.delete_object(Bucket=bucket, Key="robots.txt")
    plan = cli("plan", "-f", str(cfg), "--json").json()
    assert [(o["count"], o["versions"], o["delete_markers"], o["version_keys"]) for o in plan["left_out"]] == [(0, 5, 3, 3)]
    text = _flat(cli("plan", "-f", str(cfg)).stdout)
    assert f"s3://{bucket}: 5 older version(s)" in text and "of 3 key(s) outside the listed prefixes ('uploads/') are NOT moved" in text, text
    assert "0 object(s)" not in text, text
    (warned,) = [w["message"] for w in plan["warnings"] if w["code"] == "s3-left-out"]
    assert "0 object(s)" not in warned and "are NOT moved: ;" not in warned, warned

    # A bucket-wide entry covers every key: nothing is left out, versions or not.
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "prefix": "uploads/", "to": "data/uploads"},
                               {"bucket": bucket, "to": "data/rest"}])
    plan = cli("plan", "-f", str(cfg), "--json").json()
    assert plan["left_out"] == [] and not [w for w in plan["warnings"] if w["code"] == "s3-left-out"]


# --- 2. the egress free allowance, across regions ---------------------------------------

TODAY = dt.date(2026, 12, 4)


def test_the_free_allowance_is_one_across_all_regions_never_below_the_bill() -> None:
    rates = load_rates()
    gb = egress.GB
    # 60 GB from us-east-1 (0.09) and 60 GB from Singapore (0.12): the 100 free GB cover
    # both regions together. AWS does not say whose GB they are: the cheapest go first
    # (60 at 0.09, 40 at 0.12), so what is left (20 GB at 0.12) is the most the bill can be.
    est = egress.estimate({"us-east-1": 60 * gb, "ap-southeast-1": 60 * gb}, rates, TODAY)
    assert est["cost"] == pytest.approx(60 * 0.09 + 60 * 0.12)
    assert est["cost_after_free_allowance"] == pytest.approx(20 * 0.12), est
    # Under the allowance in all: nothing to pay, even spread over three regions.
    est = egress.estimate({"us-east-1": 30 * gb, "sa-east-1": 30 * gb, "ap-southeast-1": 30 * gb}, rates, TODAY)
    assert est["cost"] > 0 and est["cost_after_free_allowance"] == 0.0, est
    # One region, as before: the allowance off its cheapest (top) tier.
    est = egress.estimate({"us-east-1": 20480 * gb}, rates, TODAY)
    assert est["cost_after_free_allowance"] == pytest.approx(egress.tiered_cost(20480 - 100, rates.regions["us-east-1"]), abs=0.01)
    # Never below any reading of the rule: the allowance taken in one region only, or
    # split any way between them, saves at least as much as the figure assumes.
    spread = {"us-east-1": 11000 * gb, "ap-southeast-1": 40 * gb, "sa-east-1": 70 * gb}
    est = egress.estimate(spread, rates, TODAY)
    exact = {r: egress.tiered_cost(b / gb, rates.regions[r]) for r, b in spread.items()}
    for split in ((100, 0, 0), (0, 40, 60), (30, 40, 30), (0, 30, 70), (60, 40, 0)):
        bill = sum(egress.tiered_cost(b / gb - f, rates.regions[r]) for (r, b), f in zip(spread.items(), split))
        assert est["cost_after_free_allowance"] >= round(bill, 2) - 0.005, (split, bill, est)
    assert est["cost_after_free_allowance"] <= round(sum(exact.values()), 2)


def test_the_free_allowance_is_subtracted_from_exact_gb_not_rounded_ones(tmp_path: Path) -> None:
    # 1.0004 GB at 1000 USD/GB with a 1 GB allowance: 0.40 to pay; rounded first to
    # 1.000 GB it came out as 0.00.
    rates_file = tmp_path / "rates.yaml"
    rates_file.write_text("as_of: '2026-12-01'\nfree_gb: 1\nregions:\n  us-east-1: {tiers: [[null, 1000]]}\n")
    rates = load_rates(rates_file)
    est = egress.estimate({"us-east-1": int(1.0004 * egress.GB)}, rates, TODAY)
    assert est["cost_after_free_allowance"] == pytest.approx(0.4, abs=0.01), est


def test_plan_takes_the_allowance_across_the_buckets_regions(tmp_path: Path, moto: str, sshd: Any) -> None:
    """`relocate plan` on real buckets in two regions: one allowance for both."""
    s3 = aws_client("s3", moto)
    east, west = f"ega-{secrets.token_hex(3)}", f"egb-{secrets.token_hex(3)}"
    s3.create_bucket(Bucket=east)
    s3.create_bucket(Bucket=west, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket=east, Key="a", Body=b"e" * 1000)
    s3.put_object(Bucket=west, Key="b", Body=b"w" * 1000)
    # 1,500 bytes free (a tiny allowance to fit a test), us-east-1 dearer than eu-west-1
    rates_file = tmp_path / "rates.yaml"
    rates_file.write_text(yaml.safe_dump({"as_of": "2026-12-01", "free_gb": 1500 / egress.GB, "regions": {
        "us-east-1": {"tiers": [[None, 2e9]]}, "eu-west-1": {"tiers": [[None, 1e9]]}}}))
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / f"ega-{tmp_path.name}"),
                      buckets=[{"bucket": east, "to": "data/east"}, {"bucket": west, "to": "data/west"}])
    run = cli("plan", "-f", str(cfg), "--json", "--egress-rates", str(rates_file))
    assert run.exit_code == 0, run.stdout + run.stderr
    e = run.json()["egress"]
    assert {r["region"]: r["bytes"] for r in e["by_region"]} == {"us-east-1": 1000, "eu-west-1": 1000}, e
    per_byte_west, per_byte_east = 1e9 / egress.GB, 2e9 / egress.GB
    assert e["cost"] == pytest.approx(1000 * (per_byte_east + per_byte_west), abs=0.02)
    # free: the 1,000 cheapest bytes (eu-west-1) and 500 of us-east-1's; left: 500 at us-east-1's rate
    assert e["cost_after_free_allowance"] == pytest.approx(500 * per_byte_east, abs=0.02), e
    text = cli("plan", "-f", str(cfg), "--egress-rates", str(rates_file)).stdout
    assert f"({500 * per_byte_east:.2f} if the" in text, text


# --- 3. host files: each difference in words ---------------------------------------------


def _ssh(server: Any) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, "user": server.user,
            "identity_file": str(server.identity_file), "host_key": server.host_key_fingerprint}


OLD = 1_600_000_000


def _host_source(base: Path, owner: Path) -> Path:
    src = base / "etc-app"
    (src / "conf.d").mkdir(parents=True)
    (src / "app.conf").write_text("listen 8080\n")
    (src / "conf.d" / "db.conf").write_text("host=db\n")
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "current.conf").symlink_to("app.conf")
    os.chmod(src / "app.conf", 0o644)
    for p in (src / "app.conf", src / "run.sh", src / "conf.d" / "db.conf", src / "conf.d", src):
        os.utime(p, (OLD, OLD))
    if os.geteuid() == 0:
        for p in [base, src, *src.rglob("*")]:
            os.lchown(p, owner.stat().st_uid, owner.stat().st_gid)
    return src


def _hosts_config(tmp_path: Path, moto: str, sshd: Any, sshd2: Any, src: Path, root: Path) -> Path:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["hosts"] = [{"ssh": _ssh(sshd2), "paths": [str(src)], "to": "data/host"}]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


def test_host_files_verify_names_each_difference_in_words(tmp_path: Path, moto: str, sshd: Any, sshd2: Any) -> None:
    src = _host_source(sshd2.root / f"hfw-{secrets.token_hex(3)}", sshd2.root)
    root = sshd.root / f"hfw-{secrets.token_hex(3)}"
    cfg = _hosts_config(tmp_path, moto, sshd, sshd2, src, root)
    moved = cli("move", "-f", str(cfg), "--yes")
    assert moved.exit_code == 0, moved.stdout + moved.stderr
    assert cli("verify", "-f", str(cfg)).exit_code == 0
    landed = root / "data" / "host" / str(src).lstrip("/")
    rel = str(src).lstrip("/")

    (landed / "conf.d" / "db.conf").unlink()  # removed: also moves conf.d's mtime
    os.chmod(landed / "app.conf", 0o600)
    (landed / "run.sh").write_text("#!/bin/sh\necho HI\n")  # same size, other bytes
    os.utime(landed / "run.sh", (OLD, OLD))
    (landed / "current.conf").unlink()
    (landed / "current.conf").symlink_to("run.sh")
    (landed / "stray.txt").write_text("not from the source\n")

    v = cli("verify", "-f", str(cfg), "--json")
    assert v.exit_code == 4, v.stdout + v.stderr
    detail = next(c["detail"] for c in v.json()["checks"] if c["label"].startswith("host files"))
    assert "[" not in detail and "!=" not in detail, detail  # words, not Python lists
    for want in (f"{rel}/conf.d/db.conf: missing",
                 f"{rel}/app.conf: mode 0644 -> 0600",
                 f"{rel}/run.sh: content (sha256 ",
                 f"{rel}/current.conf: link target app.conf -> run.sh",
                 f"{rel}/stray.txt: extra (file not in the copy moved)",
                 f"{rel}/conf.d: mtime 2020-09-13 12:26:40Z -> "):
        assert want in detail, (want, detail)
    assert f"{rel}/run.sh: size" not in detail  # same size: only the content is said
    assert detail.index("db.conf: missing") < detail.index("conf.d: mtime"), detail  # what was lost comes first
    text = cli("verify", "-f", str(cfg))
    assert text.exit_code == 4 and f"{rel}/conf.d/db.conf: missing" in text.stdout, text.stdout

    # Past the limit: the first ones named, then how many more.
    for i in range(12):
        (landed / f"extra-{i:02d}.txt").write_text("x")
    v = cli("verify", "-f", str(cfg), "--json")
    detail = next(c["detail"] for c in v.json()["checks"] if c["label"].startswith("host files"))
    count = int(re.search(r"; (\d+) differ", detail).group(1))  # type: ignore[union-attr]
    # the six above, the top directory's mtime (entries added and replaced in it), twelve extra
    assert count == 6 + 1 + 12, detail
    assert f"; and {count - 10} more" in detail and f"{rel}/conf.d/db.conf: missing" in detail, detail
    # by weight: the removed file, then changed contents, then extras (in name order)
    assert f"{rel}/run.sh: content" in detail and f"{rel}/current.conf: link target" in detail, detail
    assert f"{rel}/extra-00.txt: extra" in detail and f"{rel}/extra-11.txt" not in detail, detail


# --- 4. host-file bytes in the text plan's row ------------------------------------------


def test_text_plan_host_files_row_shows_its_size(tmp_path: Path, moto: str, sshd: Any, sshd2: Any) -> None:
    from relocate.plan.build import human_bytes

    src = _host_source(sshd2.root / f"hfs-{secrets.token_hex(3)}", sshd2.root)
    (src / "big.bin").write_bytes(b"z" * 30000)
    if os.geteuid() == 0:
        os.lchown(src / "big.bin", sshd2.root.stat().st_uid, sshd2.root.stat().st_gid)
    cfg = _hosts_config(tmp_path, moto, sshd, sshd2, src, sshd.root / f"hfs-{secrets.token_hex(3)}")
    step = next(s for s in cli("plan", "-f", str(cfg), "--json").json()["steps"] if s["kind"] == "hostfiles")
    assert step["bytes"] > 30000
    text = cli("plan", "-f", str(cfg))
    assert text.exit_code == 0, text.stdout + text.stderr
    row = next(line for line in text.stdout.splitlines() if line.strip("│ ").startswith("hostfiles"))
    cells = [c.strip() for c in row.strip().strip("│").split("│")]
    assert cells[4] == human_bytes(step["bytes"]), row  # not "-"
    assert cells[5] == f"1 path(s) ({human_bytes(step['bytes'])})", row
    # the rows add up to the total: here the one row with bytes
    assert f"total {human_bytes(step['bytes'])}," in text.stdout, text.stdout


# --- 5. the text plan shows an env directory's mode change ------------------------------


def test_text_plan_shows_the_env_directory_mode_change(tmp_path: Path, moto: str, sshd: Any) -> None:
    aws_client("ssm", moto).put_parameter(Name="/envtxt/prod/token", Value="v", Type="SecureString")
    aws_client("ssm", moto).put_parameter(Name="/envtxt/prod/other", Value="w", Type="String")
    root = sshd.root / f"envtxt-{secrets.token_hex(4)}"
    root.mkdir()
    os.chown(root, sshd.root.stat().st_uid, sshd.root.stat().st_gid)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      parameters=[{"path": "/envtxt/prod/", "to": "shared/app.env"}])
    assert cli("move", "-f", str(cfg), "--yes").exit_code == 0
    (root / "shared").chmod(0o755)

    text = cli("plan", "-f", str(cfg))
    assert text.exit_code == 0, text.stdout + text.stderr
    assert "env file shared/app.env: set directory shared to mode 0700 (it is 0755; target.env_dir_mode)" in text.stdout, text.stdout
    row = next(line for line in text.stdout.splitlines() if line.strip("│ ").startswith("env"))
    assert "directory mode only" in row, row  # the file itself is unchanged: not "2 parameter(s)/secret(s)"

    # a new parameter: the file is written, and the directory's mode set back, both said
    aws_client("ssm", moto).put_parameter(Name="/envtxt/prod/third", Value="x", Type="String")
    text = cli("plan", "-f", str(cfg))
    row = next(line for line in text.stdout.splitlines() if line.strip("│ ").startswith("env"))
    assert "3 parameter(s)/secret(s); directory mode" in row, row
    assert "env file shared/app.env: set directory shared to mode 0700 (it is 0755" in text.stdout, text.stdout
