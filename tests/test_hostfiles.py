"""Host files from a real source sshd, through a real bastion sshd, onto a real target."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
import yaml

from helpers import cli, fresh_cli, make_config
from relocate.config import parse_config
from relocate.ssh.via import ssh_spec
from relocate.errors import ConfigError

OLD = 1_600_000_000  # a fixed past mtime that must survive the move


def _ssh(server) -> dict:
    return {"host": server.host, "port": server.port, "user": server.user,
            "identity_file": str(server.identity_file), "host_key": server.host_key_fingerprint}


def _seed_source(base: Path, owner: Path) -> Path:
    src = base / "etc-townsquare"
    (src / "conf.d").mkdir(parents=True)
    (src / "app.conf").write_text("listen 8080\n")
    (src / "conf.d" / "db.conf").write_text("host=db\n")
    (src / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "debug.log").write_text("noise\n")
    (src / "current.conf").symlink_to("app.conf")
    os.link(src / "run.sh", src / "run-hardlink.sh")
    os.chmod(src / "app.conf", 0o640)
    os.chmod(src / "run.sh", 0o750)
    for p in (src / "app.conf", src / "run.sh", src / "conf.d" / "db.conf", src / "conf.d"):
        os.utime(p, (OLD, OLD))
    if os.geteuid() == 0:  # the sshd login user must read them, as on a real host
        for p in [base, src, *src.rglob("*")]:
            os.lchown(p, owner.stat().st_uid, owner.stat().st_gid)
    return src


def test_host_files_via_bastion_keep_modes_links_mtimes(tmp_path: Path, moto: str, sshd, sshd2) -> None:
    src = _seed_source(sshd2.root / "hf1", sshd2.root)
    root = sshd.root / "hf1"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    # sshd (the target) doubles as the bastion; the source sshd2 is reached through it.
    doc["source"]["hosts"] = [{"ssh": _ssh(sshd2), "via": _ssh(sshd), "paths": [str(src)], "to": "data/host",
                               "exclude": ["*.log"]}]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))

    plan = cli("plan", "-f", str(cfg), "--json")
    assert plan.exit_code == 0, plan.stderr
    step = next(s for s in plan.json()["steps"] if s["kind"] == "hostfiles")
    assert step["bytes"] > 0 and step["dest"] == "data/host"

    r = cli("move", "-f", str(cfg), "--yes", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    checks = [c for c in r.json()["result"]["verify"]["checks"] if c["label"].startswith("host files")]
    assert checks and all(c["ok"] for c in checks), checks

    landed = root / "data" / "host" / str(src).lstrip("/")
    assert (landed / "app.conf").read_text() == "listen 8080\n"
    assert stat.S_IMODE((landed / "app.conf").stat().st_mode) == 0o640
    assert stat.S_IMODE((landed / "run.sh").stat().st_mode) == 0o750
    assert (landed / "current.conf").is_symlink() and os.readlink(landed / "current.conf") == "app.conf"
    assert int((landed / "conf.d" / "db.conf").stat().st_mtime) == OLD
    assert int((landed / "conf.d").stat().st_mtime) == OLD
    assert not (landed / "debug.log").exists()  # excluded
    assert (landed / "run-hardlink.sh").samefile(landed / "run.sh")  # hard links stay links
    assert not (root / ".relocate" / "staging" / "hosts" / "0").exists()
    # the snapshot keeps the tar itself, owners included
    tar_copy = next((tmp_path / "snapshots").glob("*/hosts/0.tar"))
    with tarfile.open(tar_copy) as tar:
        names = tar.getnames()
        assert any(n.endswith("conf.d/db.conf") for n in names) and not any(n.endswith("debug.log") for n in names)
        assert tar.getmember(str(src / "app.conf").lstrip("/")).uname == sshd2.user

    # changed on the target behind relocate's back -> verify says so (exit 4)
    (landed / "app.conf").write_text("tampered\n")
    v = cli("verify", "-f", str(cfg), "--json")
    assert v.exit_code == 4, v.stdout + v.stderr


def test_missing_source_path_blocks_the_plan(tmp_path: Path, moto: str, sshd, sshd2) -> None:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / "hf2"))
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["hosts"] = [{"ssh": _ssh(sshd2), "paths": ["/nonexistent/townsquare"], "to": "data/host"}]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = cli("plan", "-f", str(cfg), "--json")
    assert r.exit_code == 3
    assert any(b["code"] == "hosts-missing" and "/nonexistent/townsquare" in b["message"] for b in r.json()["blockers"])


def test_a_host_files_only_move_never_loads_boto3(tmp_path: Path, sshd, sshd2) -> None:
    # Nothing in the config reads AWS: boto3 and botocore (~0.2 s of CPU to import) stay
    # unloaded through plan, move and the final check (issue 18); the endpoint is a port
    # nothing listens on, so any read of AWS would fail the move too.
    src = _seed_source(sshd2.root / "hf3", sshd2.root)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint="http://127.0.0.1:9", sshd=sshd, root=str(sshd.root / "hf3"))
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["hosts"] = [{"ssh": _ssh(sshd2), "paths": [str(src)], "to": "data/host"}]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    got = fresh_cli("move", "-f", str(cfg), "--yes", "--json", watch=("boto3", "botocore"))
    assert got["code"] == 0, got["out"][-2000:]
    result = json.loads(got["out"])["result"]
    assert not result["nothing_to_do"] and result["verify"]["ok"]
    assert got["loaded"] == [], f"a host-files-only move imported {got['loaded']}"



def test_a_file_the_source_login_cannot_read_stays_failed_until_a_move_copies_it(tmp_path: Path, sshd, sshd2) -> None:
    """tar c skips a file it may not open: the stream holds the rest, so the trees compare
    equal. The move names it failed (exit 4) and so must every check after it (the move's
    own, `relocate verify`) until a move copies it: never "OK" while it is not there."""
    src = _seed_source(sshd2.root / "hf4", sshd2.root)
    secret = src / "root-only"
    secret.write_text("only root reads this\n")
    # Mode 000: the source login (relocatetest when the tests run as root, else this user,
    # who owns it) may not open it; root's own file when created as root.
    os.chmod(secret, 0)
    root = sshd.root / "hf4"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint="http://127.0.0.1:9", sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["hosts"] = [{"ssh": _ssh(sshd2), "paths": [str(src)], "to": "data/host"}]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    where = f"data/host/{str(secret).lstrip('/')}"

    moved = cli("move", "-f", str(cfg), "--yes")
    assert moved.exit_code == 4, moved.stdout + moved.stderr
    assert "root-only: Cannot open: Permission denied" in moved.stdout
    last = moved.stdout.strip().splitlines()[-1]
    assert "OK" not in last and "Differences found" in last, moved.stdout
    assert (root / "data" / "host" / str(src).lstrip("/") / "app.conf").exists()  # the readable rest is in place

    v = cli("verify", "-f", str(cfg), "--json")
    assert v.exit_code == 4, v.stdout + v.stderr
    got = v.json()
    assert got["failed"] == 1 and got["failed_items"][0]["path"] == where, got
    assert "Permission denied" in got["failed_items"][0]["error"]
    text = cli("verify", "-f", str(cfg))
    assert text.exit_code == 4 and f"failed    {where}: " in text.stdout, text.stdout

    # Readable now: the next move copies it, and the checks are clean again.
    os.chmod(secret, 0o644)
    if os.geteuid() == 0:
        os.lchown(secret, sshd2.root.stat().st_uid, sshd2.root.stat().st_gid)
    again = cli("move", "-f", str(cfg), "--yes", "--json")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert again.json()["result"]["verify"]["failed"] == 0
    assert (root / where).read_text() == "only root reads this\n"
    assert cli("verify", "-f", str(cfg)).exit_code == 0

def _doc(hosts: list) -> str:
    return yaml.safe_dump({"version": 1, "source": {"hosts": hosts}, "target": {"ssh": {"host": "h"}, "root": "/srv/a"}})


def test_ssh_short_form_and_errors(tmp_path: Path) -> None:
    cfg = parse_config(_doc([{"ssh": "ec2-user@10.0.0.5:2222", "via": "bastion.example", "paths": ["/etc/app"], "to": "data/host"}]),
                       tmp_path / "relocate.yaml")
    entry = cfg.data["source"]["hosts"][0]
    spec = ssh_spec(entry["ssh"])
    assert (spec.user, spec.host, spec.port) == ("ec2-user", "10.0.0.5", 2222)
    assert ssh_spec(entry["via"]).host == "bastion.example" and ssh_spec(entry["via"]).user is None
    with pytest.raises(ConfigError, match=r"relocate.yaml:\d+: source.hosts\[0\].ssh: must be user@host\[:port\]"):
        parse_config(_doc([{"ssh": "a@b@c", "paths": ["/etc"], "to": "x"}]), tmp_path / "relocate.yaml")
    with pytest.raises(ConfigError, match=r"source.hosts\[0\].paths\[0\]: must be an absolute path on the source host"):
        parse_config(_doc([{"ssh": "a@b", "paths": ["etc"], "to": "x"}]), tmp_path / "relocate.yaml")
    with pytest.raises(ConfigError, match=r"source.hosts\[0\].ssh.hots: unknown key \(did you mean 'host'\?\)"):
        parse_config(_doc([{"ssh": {"hots": "b"}, "paths": ["/etc"], "to": "x"}]), tmp_path / "relocate.yaml")
