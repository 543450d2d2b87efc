"""Bad input gets one clear line, the documented exit code, no traceback (`--debug`
shows one), and leaves nothing half-written on the target. Real servers throughout."""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import servers
from conftest import in_ci
from helpers import aws_client, cli, make_config, one_line_error as _one_line


def _root(sshd: Any) -> Path:
    return sshd.root / f"t-{secrets.token_hex(4)}"




def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _bucket(moto: str, name: str = "media", objects: dict[str, bytes] | None = None) -> None:
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket=name)
    for k, v in (objects or {"a.txt": b"a", "d/b.txt": b"b"}).items():
        s3.put_object(Bucket=name, Key=k, Body=v)


def test_missing_config_file(tmp_path: Path) -> None:
    line = _one_line(cli("plan", "-f", str(tmp_path / "nope.yaml")), 2)
    assert "nope.yaml: no such file" in line and "relocate init" in line


def test_invalid_yaml(tmp_path: Path) -> None:
    p = tmp_path / "relocate.yaml"
    p.write_text("version: 1\ntarget: {ssh: {host: x}\n  root: /srv\n")
    line = _one_line(cli("plan", "-f", str(p)), 2)
    assert "relocate.yaml:" in line and "invalid YAML" in line


def test_unreachable_host_is_transient(tmp_path: Path, sshd, moto: str) -> None:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(_root(sshd)))
    doc = yaml.safe_load(cfg.read_text())
    doc["target"]["ssh"]["port"] = servers.free_port()  # nobody listens there
    cfg.write_text(yaml.safe_dump(doc))
    line = _one_line(cli("plan", "-f", str(cfg)), 5)
    assert f"cannot reach {sshd.user}@{sshd.host}:{doc['target']['ssh']['port']}" in line


def test_wrong_ssh_key(tmp_path: Path, sshd, sshd2, moto: str) -> None:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(_root(sshd)))
    doc = yaml.safe_load(cfg.read_text())
    doc["target"]["ssh"]["identity_file"] = str(sshd2.identity_file)  # authorized on the other server only
    cfg.write_text(yaml.safe_dump(doc))
    line = _one_line(cli("plan", "-f", str(cfg)), 2)
    assert "login to" in line and "refused" in line and str(sshd2.identity_file) in line


def test_wrong_key_passphrase(tmp_path: Path, sshd, moto: str) -> None:
    key = tmp_path / "id_encrypted"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "right-pass-7", "-f", str(key)], check=True)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(_root(sshd)))
    doc = yaml.safe_load(cfg.read_text())
    doc["target"]["ssh"]["identity_file"] = str(key)
    cfg.write_text(yaml.safe_dump(doc))
    run = cli("plan", "-f", str(cfg), env={"RELOCATE_SSH_KEY_PASSPHRASE": "wrongpass-7"})
    line = _one_line(run, 2)
    assert f"{key}: RELOCATE_SSH_KEY_PASSPHRASE does not decrypt this key" in line, line
    assert "wrongpass-7" not in run.stdout + run.stderr and "right-pass-7" not in run.stdout + run.stderr


def test_missing_identity_file(tmp_path: Path, sshd, moto: str) -> None:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(_root(sshd)))
    doc = yaml.safe_load(cfg.read_text())
    doc["target"]["ssh"]["identity_file"] = str(tmp_path / "no-such-key")
    cfg.write_text(yaml.safe_dump(doc))
    line = _one_line(cli("plan", "-f", str(cfg)), 2)
    assert "no-such-key: no such file" in line


def test_target_root_not_writable(tmp_path: Path, sshd, moto: str) -> None:
    _bucket(moto)
    parent = sshd.root / f"locked-{secrets.token_hex(4)}"
    parent.mkdir()
    if os.geteuid() == 0:
        os.chown(parent, 0, 0)  # root-owned, 755: the login user (relocatetest) cannot write
        os.chmod(parent, 0o755)
    else:
        os.chmod(parent, 0o555)
    root = parent / "app"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "media", "to": "data"}])
    try:
        run = cli("plan", "-f", str(cfg), "--json")
        assert run.exit_code == 3, run.stdout + run.stderr
        blockers = run.json()["blockers"]
        assert [b["code"] for b in blockers] == ["writable"], blockers
        assert str(root) in blockers[0]["message"]
        line = _one_line(cli("move", "-f", str(cfg), "--yes"), 3)
        assert "blocker" in line and "cannot write" in line
        assert list(parent.iterdir()) == []
    finally:
        os.chmod(parent, 0o755)


@pytest.fixture
def small_disk(sshd) -> Any:
    """A 2 MiB tmpfs the login user owns, inside sshd's root."""
    if os.geteuid() != 0:
        if not in_ci():
            pytest.skip("mounting a tmpfs needs root")
        pytest.fail("mounting a tmpfs needs root, and CI must prove the disk check")
    mnt = sshd.root / f"small-{secrets.token_hex(4)}"
    mnt.mkdir()
    pw = pwd.getpwnam(sshd.user)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=2m,mode=0755,uid={pw.pw_uid},gid={pw.pw_gid}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)
    mnt.rmdir()


def test_not_enough_disk(tmp_path: Path, sshd, moto: str, small_disk: Path) -> None:
    _bucket(moto, objects={"big.bin": os.urandom(3 * 1024 * 1024), "small.txt": b"s"})
    root = small_disk / "app"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "media", "to": "data"}])
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 3, run.stdout + run.stderr
    blockers = run.json()["blockers"]
    assert [b["code"] for b in blockers] == ["disk"], blockers
    assert "not enough disk" in blockers[0]["message"]
    run = cli("plan", "-f", str(cfg))
    assert run.exit_code == 3 and "[disk] not enough disk" in run.stdout
    line = _one_line(cli("move", "-f", str(cfg), "--yes"), 3)
    assert "not enough disk" in line
    assert _tree(small_disk) == []


def test_missing_bucket(tmp_path: Path, sshd, moto: str) -> None:
    root = _root(sshd)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "no-such-bucket", "to": "data"}])
    for args in (["plan"], ["move", "--yes"]):
        line = _one_line(cli(*args, "-f", str(cfg)), 2)
        assert "s3://no-such-bucket/" in line and "not found" in line
    assert _tree(root) == []


def test_missing_parameter_path_and_secret(tmp_path: Path, sshd, moto: str) -> None:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(_root(sshd)),
                      secrets=[{"name": "no/such/secret", "to": "app.env"}])
    line = _one_line(cli("plan", "-f", str(cfg)), 2)
    assert "secret no/such/secret" in line and "not found" in line


def test_access_denied(tmp_path: Path, sshd, seaweedfs) -> None:
    s3 = servers.s3_client(seaweedfs.endpoint_url, seaweedfs.access_key, seaweedfs.secret_key)
    bucket = f"denied-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    root = _root(sshd)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=seaweedfs.endpoint_url, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data"}])
    env = {"AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": "wrong-" + secrets.token_hex(8)}
    line = _one_line(cli("plan", "-f", str(cfg), env=env), 2)
    assert f"s3://{bucket}/" in line and "access denied" in line
    assert env["AWS_SECRET_ACCESS_KEY"] not in line
    env["AWS_ACCESS_KEY_ID"] = "nobody-" + secrets.token_hex(4)
    line = _one_line(cli("move", "-f", str(cfg), "--yes", env=env), 2)
    assert "access denied" in line
    assert _tree(root) == []


def test_debug_shows_the_traceback(tmp_path: Path, sshd, moto: str) -> None:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(_root(sshd)),
                      buckets=[{"bucket": "no-such-bucket", "to": "data"}])
    run = cli("--debug", "plan", "-f", str(cfg))
    assert run.exit_code == 2
    assert "Traceback (most recent call last)" in run.stderr
    assert run.stderr.rstrip().splitlines()[-1].startswith("relocate: error: s3://no-such-bucket/")
    run = cli("plan", "-f", str(cfg), env={"RELOCATE_DEBUG": "1"})
    assert run.exit_code == 2 and "Traceback" in run.stderr
    run = cli("plan", "-f", str(tmp_path / "missing.yaml"), env={"RELOCATE_DEBUG": "1"})
    assert run.exit_code == 2 and "Traceback" in run.stderr


def test_a_file_that_does_not_fit_is_refused_and_leaves_nothing(sshd, small_disk: Path) -> None:
    """write_file_atomic (sidecars, env files, manifests on the target) sends its pieces
    without waiting for each answer (pipelined SFTP writes); a write the target refused
    (here ENOSPC, 3 MiB into 2 MiB) still fails the call, before the rename, and neither the
    file nor its temporary is left behind."""
    from relocate.errors import RelocateError
    from relocate.ssh.connection import Connection
    from relocate.ssh.via import SshSpec
    from relocate.targets import files

    root = small_disk / "app"
    root.mkdir()
    os.chown(root, pwd.getpwnam(sshd.user).pw_uid, -1)
    path = str(root / "sidecar.json")
    conn = Connection(SshSpec(host=sshd.host, port=sshd.port, user=sshd.user, identity_file=str(sshd.identity_file),
                              host_key=sshd.host_key_fingerprint))
    with conn:
        with pytest.raises(RelocateError) as err:
            files.write_file_atomic(conn, path, (os.urandom(64 * 1024) for _ in range(48)), mode=0o644, root=str(root))
        assert "sidecar.json" in err.value.message
        files.write_file_atomic(conn, path, [b"{}", b"\n"], mode=0o644, root=str(root))  # what fits is written whole
    assert sorted(p.name for p in root.iterdir()) == ["sidecar.json"]
    assert (root / "sidecar.json").read_bytes() == b"{}\n"


def test_an_unreachable_source_endpoint_is_one_short_line() -> None:
    """botocore names the whole request URL: a listing resumed after a key of 255
    non-ASCII characters put kilobytes of percent-encoding into the one error line."""
    import botocore.exceptions

    from relocate.errors import TransientError
    from relocate.sources.aws import translate

    query = "list-type=2&start-after=" + "%F4%8F%BF%BF" * 255
    exc = botocore.exceptions.EndpointConnectionError(endpoint_url=f"http://127.0.0.1:9/media?{query}")
    err = translate(exc, "s3://media/")
    assert isinstance(err, TransientError)
    assert "http://127.0.0.1:9/media" in err.message and "start-after" not in err.message
    assert len(err.message) < 200, err.message


@pytest.mark.parametrize("where", ["dir", "key_file", "key_file_is_dir", "key_readable"])
def test_an_unusable_snapshot_place_is_exit_2_before_anything_changes(tmp_path: Path, sshd, moto: str, where: str) -> None:
    """The acceptance report: `snapshot: {dir: /tmp/x/afile/snap}` with `afile` a plain file
    was "Ready" in the plan, then `move` took the target's lock, made `.relocate/buckets/`,
    wrote a move-start line and died as an internal error (exit 1). Now `plan` and `move`
    refuse it (exit 2, naming the field) before any connection."""
    _bucket(moto)
    root = _root(sshd)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "media", "to": "data"}])
    afile = tmp_path / "afile"
    afile.write_text("a plain file\n")
    doc = yaml.safe_load(cfg.read_text())
    field = "snapshot.key_file" if where.startswith("key") else "snapshot.dir"
    if where == "dir":
        doc["snapshot"]["dir"] = str(afile / "snap")
    elif where == "key_file":
        doc["snapshot"]["key_file"] = str(afile / "k.key")
    elif where == "key_file_is_dir":
        doc["snapshot"]["key_file"] = str(tmp_path)
    else:
        key = tmp_path / "loose.key"
        key.write_text("AGE-SECRET-KEY-1XXXX\n")
        key.chmod(0o644)
        doc["snapshot"]["key_file"] = str(key)
        field = "key file is readable by others"
    cfg.write_text(yaml.safe_dump(doc))
    line = _one_line(cli("plan", "-f", str(cfg)), 2)
    assert field in line, line
    run = cli("move", "-f", str(cfg), "--yes", "--json")
    line = _one_line(run, 2)
    assert field in line, line
    assert run.json()["error"] == {"exit_code": 2, "kind": "usage", "message": line.removeprefix("relocate: error: ")}
    assert _tree(root) == []  # no lock taken, no `.relocate/`, no audit line
    assert afile.read_text() == "a plain file\n"


def test_the_snapshot_store_says_what_it_cannot_write(tmp_path: Path) -> None:
    """What the early check cannot see (the disk changing under a running move) is still
    one line and exit 2, not an internal error."""
    from relocate.errors import ConfigError
    from relocate.snapshot import crypto, store
    from relocate.snapshot.journal import Journal

    afile = tmp_path / "afile"
    afile.write_text("x")
    for call in (lambda: store.begin(afile / "snap"), lambda: store.mark_unrecorded(afile / "snap", "why"),
                 lambda: Journal(afile / "snap" / "journal.sqlite"),
                 lambda: crypto.load_identity(afile / "k.key", create=True)):
        with pytest.raises(ConfigError) as err:
            call()
        assert str(afile) in err.value.line() and "snapshot." in err.value.line(), err.value.line()
