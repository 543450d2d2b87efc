"""Safety promises, each against real servers: host keys, ~/.ssh/config, the
read-only source, and secret values never leaking anywhere."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import aws_client, cli, make_config, subprocess_cli
from relocate.config import AwsSpec
from relocate.snapshot import store
from relocate.sources.aws import Aws, ReadOnlyViolation
from relocate.ssh import connection as ssh_mod


def _root(sshd: Any) -> Path:
    return sshd.root / f"t-{secrets.token_hex(4)}"


def _lines(run) -> list[str]:
    return [ln for ln in run.stderr.splitlines() if ln.strip()]


# --------------------------------------------------------------------------- host keys


def test_unknown_host_key_is_refused_with_its_fingerprint(tmp_path: Path, sshd, moto: str) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(_root(sshd)), pin=False, known_hosts=kh)
    run = cli("plan", "-f", str(cfg))
    assert run.exit_code == 6, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and len(_lines(run)) == 1
    assert f"unknown host key for {sshd.user}@{sshd.host}:{sshd.port}: {sshd.host_key_fingerprint}" in run.stderr
    assert "host_key" in run.stderr and "--accept-new-host-key" in run.stderr  # how to pin it
    assert kh.read_text() == ""


def test_accept_new_host_key_records_it(tmp_path: Path, sshd, moto: str) -> None:
    kh = tmp_path / "sub" / "known_hosts"  # the directory does not exist yet either
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(_root(sshd)), pin=False, known_hosts=kh)
    run = cli("plan", "-f", str(cfg), "--accept-new-host-key")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert kh.read_text().splitlines() == [sshd.known_hosts_line()]
    assert kh.stat().st_mode & 0o077 == 0
    # from now on the key is known: no flag needed, and nothing appended twice
    run = cli("plan", "-f", str(cfg))
    assert run.exit_code == 0, run.stdout + run.stderr
    assert kh.read_text().splitlines() == [sshd.known_hosts_line()]


def test_changed_host_key_is_always_refused(tmp_path: Path, sshd, sshd2, moto: str) -> None:
    kh = tmp_path / "known_hosts"
    # sshd's host:port, but the key of another server
    impostor = f"[{sshd.host}]:{sshd.port} {sshd2.host_key_line}"
    kh.write_text(impostor + "\n")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(_root(sshd)), pin=False, known_hosts=kh)
    for extra in ([], ["--accept-new-host-key"]):
        run = cli("plan", "-f", str(cfg), *extra)
        assert run.exit_code == 6, run.stdout + run.stderr
        assert "CHANGED" in run.stderr and sshd.host_key_fingerprint in run.stderr
        assert "Traceback" not in run.stderr and len(_lines(run)) == 1
    assert kh.read_text() == impostor + "\n"


def test_wrong_pin_is_refused_even_with_accept_new(tmp_path: Path, sshd, sshd2, moto: str) -> None:
    root = _root(sshd)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    doc["target"]["ssh"]["host_key"] = sshd2.host_key_fingerprint
    cfg.write_text(yaml.safe_dump(doc))
    for cmd in (["plan"], ["move", "--yes"]):
        run = cli(*cmd, "-f", str(cfg), "--accept-new-host-key")
        assert run.exit_code == 6, run.stdout + run.stderr
        assert f"pins {sshd2.host_key_fingerprint}" in run.stderr and sshd.host_key_fingerprint in run.stderr
    assert not root.exists()


def _ssh_config(alias: str, sshd: Any) -> Path:
    cfg = Path.home() / ".ssh" / "config"
    cfg.parent.mkdir(mode=0o700, exist_ok=True)
    cfg.write_text(f"Host {alias}\n  HostName {sshd.host}\n  Port {sshd.port}\n  User {sshd.user}\n"
                   f"  IdentityFile {sshd.identity_file}\n\nHost *\n  User nobody-else\n")
    return cfg


@pytest.fixture
def ssh_config_alias(sshd) -> Any:
    alias = f"relocate-alias-{secrets.token_hex(3)}"
    path = _ssh_config(alias, sshd)
    yield alias
    path.unlink()


def test_ssh_config_alias_is_honoured(tmp_path: Path, sshd, moto: str, ssh_config_alias: str) -> None:
    """HOME is the session's temp dir (conftest), so this is a private ~/.ssh/config."""
    root = _root(sshd)
    doc = {"version": 1, "app": {"name": "t"},
           "source": {"aws": {"endpoint_url": moto}},
           "target": {"ssh": {"host": ssh_config_alias, "host_key": sshd.host_key_fingerprint}, "root": str(root)},
           "snapshot": {"dir": str(tmp_path / "snap"), "key_file": str(tmp_path / "age.key")}}
    cfg = tmp_path / "relocate.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    plan = run.json()
    assert plan["facts"]["user"] == sshd.user
    assert plan["target"].startswith(f"{sshd.user}@{ssh_config_alias}:{sshd.port}")


def test_known_hosts_entry_from_openssh_matches_an_alias(tmp_path: Path, sshd, moto: str, ssh_config_alias: str) -> None:
    """`ssh alias` records the key under the HostName ([127.0.0.1]:port), not the alias:
    relocate must find it there, as OpenSSH does."""
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line() + "\n")
    doc = {"version": 1, "app": {"name": "t"}, "source": {"aws": {"endpoint_url": moto}},
           "target": {"ssh": {"host": ssh_config_alias, "known_hosts": str(kh)}, "root": str(_root(sshd))},
           "snapshot": {"dir": str(tmp_path / "snap"), "key_file": str(tmp_path / "age.key")}}
    cfg = tmp_path / "relocate.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    run = cli("plan", "-f", str(cfg))
    assert run.exit_code == 0, run.stdout + run.stderr
    assert kh.read_text() == sshd.known_hosts_line() + "\n"


# --------------------------------------------------------------------------- read-only source


def _mutations(bucket: str) -> list[tuple[str, str, dict]]:
    return [
        ("s3", "put_object", {"Bucket": bucket, "Key": "new", "Body": b"x"}),
        ("s3", "delete_object", {"Bucket": bucket, "Key": "k"}),
        ("s3", "delete_objects", {"Bucket": bucket, "Delete": {"Objects": [{"Key": "k"}]}}),
        ("s3", "copy_object", {"Bucket": bucket, "Key": "copy", "CopySource": {"Bucket": bucket, "Key": "k"}}),
        ("s3", "create_bucket", {"Bucket": bucket + "-new"}),
        ("s3", "delete_bucket", {"Bucket": bucket}),
        ("s3", "put_bucket_policy", {"Bucket": bucket, "Policy": "{}"}),
        ("s3", "create_multipart_upload", {"Bucket": bucket, "Key": "mp"}),
        ("ssm", "put_parameter", {"Name": "/ro/p", "Value": "changed", "Type": "String", "Overwrite": True}),
        ("ssm", "delete_parameter", {"Name": "/ro/p"}),
        ("ssm", "label_parameter_version", {"Name": "/ro/p", "Labels": ["x"]}),
        ("secretsmanager", "put_secret_value", {"SecretId": "ro/s", "SecretString": "changed"}),
        ("secretsmanager", "update_secret", {"SecretId": "ro/s", "SecretString": "changed"}),
        ("secretsmanager", "delete_secret", {"SecretId": "ro/s", "ForceDeleteWithoutRecovery": True}),
        ("secretsmanager", "create_secret", {"Name": "ro/new", "SecretString": "x"}),
        ("secretsmanager", "rotate_secret", {"SecretId": "ro/s"}),
        ("ssm", "send_command", {"InstanceIds": ["i-0123456789abcdef0"], "DocumentName": "AWS-RunShellScript"}),
        ("s3", "put_object_acl", {"Bucket": bucket, "Key": "k", "ACL": "public-read"}),
        ("s3", "restore_object", {"Bucket": bucket, "Key": "k", "RestoreRequest": {"Days": 1}}),
    ]


def _state(moto: str, buckets: list[str]) -> dict[str, Any]:
    """What a change at the source would show: objects, parameter versions, secret versions."""
    s3, ssm, sm = aws_client("s3", moto), aws_client("ssm", moto), aws_client("secretsmanager", moto)
    out: dict[str, Any] = {"buckets": sorted(b["Name"] for b in s3.list_buckets()["Buckets"])}
    for b in buckets:
        out[b] = sorted((o["Key"], o["ETag"], o["Size"], str(o["LastModified"]))
                        for o in s3.list_objects_v2(Bucket=b).get("Contents", []))
    out["params"] = sorted((p["Name"], p["Version"], str(p["LastModifiedDate"])) for p in ssm.describe_parameters()["Parameters"])
    out["secrets"] = sorted((s["Name"], json.dumps(s.get("SecretVersionsToStages"), sort_keys=True), str(s.get("LastChangedDate")))
                            for s in sm.list_secrets()["SecretList"])
    return out


def test_every_mutating_call_is_refused(moto: str) -> None:
    s3, ssm, sm = aws_client("s3", moto), aws_client("ssm", moto), aws_client("secretsmanager", moto)
    s3.create_bucket(Bucket="ro-src")
    s3.put_object(Bucket="ro-src", Key="k", Body=b"v")
    ssm.put_parameter(Name="/ro/p", Value="v", Type="String")
    sm.create_secret(Name="ro/s", SecretString="v")
    before = _state(moto, ["ro-src"])
    aws = Aws(AwsSpec(endpoint_url=moto))
    for service, op, kwargs in _mutations("ro-src"):
        with pytest.raises(ReadOnlyViolation) as e:
            getattr(aws.client(service), op)(**kwargs)
        assert "relocate never changes the source" in str(e.value)
        assert e.value.exit_code == 6
    assert _state(moto, ["ro-src"]) == before
    # reads still work through the same guarded clients
    assert aws.client("s3").get_object(Bucket="ro-src", Key="k")["Body"].read() == b"v"
    assert aws.client("ssm").get_parameter(Name="/ro/p")["Parameter"]["Value"] == "v"


def test_a_full_move_leaves_the_source_unchanged(tmp_path: Path, sshd, moto: str) -> None:
    s3, ssm, sm = aws_client("s3", moto), aws_client("ssm", moto), aws_client("secretsmanager", moto)
    s3.create_bucket(Bucket="media")
    for i in range(5):
        s3.put_object(Bucket="media", Key=f"k{i}", Body=os.urandom(64), Metadata={"m": str(i)})
    ssm.put_parameter(Name="/ro/prod/a", Value="1", Type="SecureString")
    ssm.put_parameter(Name="/ro/prod/a", Value="2", Type="SecureString", Overwrite=True)
    sm.create_secret(Name="ro/prod/api", SecretString='{"k": "v"}')
    before = _state(moto, ["media"])
    root = _root(sshd)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "media", "to": "data"}], parameters=[{"path": "/ro/prod/", "to": "app.env"}],
                      secrets=[{"name": "ro/prod/api", "to": "app.env"}])
    for args in (["plan"], ["move", "--yes"], ["move", "--yes"], ["verify"]):
        run = cli(*args, "-f", str(cfg))
        assert run.exit_code == 0, (args, run.stdout, run.stderr)
    assert (root / "app.env").read_text().count("=") == 2
    assert _state(moto, ["media"]) == before


# --------------------------------------------------------------------------- secret leakage


def test_secret_values_never_leak(tmp_path: Path, sshd, moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = secrets.token_hex(6)
    values = {
        "ssm_secure": f"SSMSECURE{tag}",
        "ssm_plain": f"SSMPLAIN{tag}",
        "sm_json": f"SMJSON{tag}",
        "sm_plain": f"SMPLAIN{tag}",
    }
    s3, ssm, sm = aws_client("s3", moto), aws_client("ssm", moto), aws_client("secretsmanager", moto)
    s3.create_bucket(Bucket="media")
    s3.put_object(Bucket="media", Key="a.txt", Body=b"public data")
    ssm.put_parameter(Name="/leak/prod/db_password", Value=values["ssm_secure"], Type="SecureString")
    ssm.put_parameter(Name="/leak/prod/mode", Value=values["ssm_plain"], Type="String")
    sm.create_secret(Name="leak/prod/api", SecretString=json.dumps({"token": values["sm_json"]}))
    sm.create_secret(Name="leak/prod/raw", SecretString=values["sm_plain"])
    root = _root(sshd)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "media", "to": "data"}], parameters=[{"path": "/leak/prod/", "to": "shared/app.env"}],
                      secrets=[{"name": "leak/prod/api", "to": "shared/app.env"}, {"name": "leak/prod/raw", "to": "shared/raw.env"}])
    debug_dir = tmp_path / "tmpdir"
    debug_dir.mkdir()
    plan_file = tmp_path / "plan.json"

    # every remote command line relocate starts, recorded on the way out
    commands: list[str] = []
    real_start = ssh_mod.Connection.start

    def spy(self, command, *a, **kw):
        commands.append(command)
        return real_start(self, command, *a, **kw)

    monkeypatch.setattr(ssh_mod.Connection, "start", spy)
    outputs: list[str] = []
    for args in (["plan"], ["plan", "--json", "-o", str(plan_file)], ["--debug", "move", "--yes"],
                 ["move", "--yes", "--json"], ["--debug", "verify", "--json"], ["verify"]):
        run = cli(*args, "-f", str(cfg))
        assert run.exit_code == 0, (args, run.stdout, run.stderr)
        outputs += [run.stdout, run.stderr]
    # and as real processes, with --debug, their temp files in a dir we can search
    for args in (["--debug", "plan", "--json"], ["--debug", "move", "--yes", "--json"], ["--debug", "verify"]):
        run = subprocess_cli(*args, "-f", str(cfg), cwd=tmp_path, env={"TMPDIR": str(debug_dir)})
        assert run.exit_code == 0, (args, run.stdout, run.stderr)
        outputs += [run.stdout, run.stderr]

    # the values did arrive where they belong (so the search below means something)
    env = (root / "shared" / "app.env").read_text()
    assert values["ssm_secure"] in env and values["sm_json"] in env
    assert values["sm_plain"] in (root / "shared" / "raw.env").read_text()
    assert commands, "the spy saw no remote commands"

    haystacks: dict[str, bytes] = {f"output {i}": o.encode() for i, o in enumerate(outputs)}
    haystacks["remote command lines"] = "\n".join(commands).encode()
    haystacks["plan.json"] = plan_file.read_bytes()
    haystacks["sshd log"] = Path(sshd.log).read_bytes()
    for base in (tmp_path / "snapshots", debug_dir, root / ".relocate"):
        for p in base.rglob("*"):
            if p.is_file():
                haystacks[str(p)] = p.read_bytes()
    assert any(name.endswith("journal.sqlite") for name in haystacks)
    assert any(name.endswith("manifest.json") for name in haystacks)
    assert any(name.endswith("secrets.age") for name in haystacks)
    leaks = [(where, name) for where, blob in haystacks.items() for name, v in values.items() if v.encode() in blob]
    assert not leaks, leaks
    snap = store.latest(tmp_path / "snapshots")
    assert snap is not None and snap.secrets_path.exists()
