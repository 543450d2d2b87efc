"""The fixtures start real servers that really work (and nothing is mocked)."""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from pathlib import Path

import boto3
import paramiko
import pytest

import servers


def _connect(server: servers.Sshd) -> paramiko.SSHClient:
    """Connect with the host key pinned to the fixture's key (no AutoAddPolicy)."""
    kind, blob = server.host_key_line.split()
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[{server.host}]:{server.port}", kind, paramiko.Ed25519Key(data=base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(server.host, port=server.port, username=server.user, key_filename=str(server.identity_file),
                   look_for_keys=False, allow_agent=False, timeout=10)
    return client


def _run(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, stdout, _ = client.exec_command(command, timeout=10)
    out = stdout.read().decode()
    return stdout.channel.recv_exit_status(), out


@pytest.mark.parametrize("which", ["sshd", "sshd2"])
def test_sshd_login_pinned_key_and_write_root(which: str, request: pytest.FixtureRequest) -> None:
    server: servers.Sshd = request.getfixturevalue(which)
    with _connect(server) as client:
        status, uid = _run(client, "id -u")
        assert status == 0
        if os.geteuid() == 0:
            assert int(uid) != 0, "the fixture must log in as a non-root user"
        else:
            assert int(uid) == os.geteuid()
        name = f"probe-{uuid.uuid4().hex}"
        status, _ = _run(client, f"echo hello > {server.root}/{name} && cat {server.root}/{name}")
        assert status == 0
        with client.open_sftp() as sftp:  # the sftp subsystem works too
            with sftp.open(f"{server.root}/{name}") as f:
                assert f.read() == b"hello\n"
    assert server.host_key_fingerprint == servers.fingerprint(server.host_key_line)
    assert server.known_hosts_line() == f"[127.0.0.1]:{server.port} {server.host_key_line}"


def test_sshd_rejects_a_different_host_key(sshd: servers.Sshd, sshd2: servers.Sshd) -> None:
    """Pinning is real: sshd2's key does not verify sshd."""
    assert sshd.port != sshd2.port and sshd.host_key_line != sshd2.host_key_line
    kind, blob = sshd2.host_key_line.split()
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[{sshd.host}]:{sshd.port}", kind, paramiko.Ed25519Key(data=base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.BadHostKeyException):
        client.connect(sshd.host, port=sshd.port, username=sshd.user, key_filename=str(sshd.identity_file),
                       look_for_keys=False, allow_agent=False, timeout=10)
    client.close()


def test_sshd_passes_no_client_env(sshd: servers.Sshd) -> None:
    with _connect(sshd) as client:
        _, stdout, _ = client.exec_command("echo ${LC_RELOCATE_PROBE:-unset}", environment={"LC_RELOCATE_PROBE": "x"})
        assert stdout.read().decode().strip() == "unset"


def test_moto_ssm_roundtrip(moto: str) -> None:
    ssm = boto3.client("ssm", endpoint_url=moto, region_name="us-east-1")
    ssm.put_parameter(Name="/townsquare/prod/DB_HOST", Value="db.internal", Type="String")
    got = ssm.get_parameter(Name="/townsquare/prod/DB_HOST")["Parameter"]["Value"]
    assert got == "db.internal"


def test_moto_is_reset_between_tests(moto: str) -> None:
    ssm = boto3.client("ssm", endpoint_url=moto, region_name="us-east-1")
    assert ssm.describe_parameters()["Parameters"] == []


def test_s3_put_get(s3_server: servers.S3Server) -> None:
    s3 = s3_server.client()
    bucket = s3_server.new_bucket()
    body = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="dir/object.bin", Body=body)
    assert s3.get_object(Bucket=bucket, Key="dir/object.bin")["Body"].read() == body
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["dir/object.bin"]


def test_postgres_psql_select_1(postgres_server: servers.Postgres) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = postgres_server.password
    out = subprocess.run(
        [str(postgres_server.bin_dir / "psql"), "-h", postgres_server.host, "-p", str(postgres_server.port),
         "-U", postgres_server.user, "-d", postgres_server.database, "-w", "-tAc", "select 1"],
        env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_postgres_rejects_wrong_password(postgres_server: servers.Postgres) -> None:
    env = {**postgres_server.env(), "PGPASSWORD": "wrong"}
    out = subprocess.run([str(postgres_server.bin_dir / "psql"), "-w", "-tAc", "select 1"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "password authentication failed" in out.stderr


def test_mariadb_client_select_1(mariadb_server: servers.MariaDB) -> None:
    # --defaults-extra-file must come first; the password lives only in that 0600 file.
    assert oct(mariadb_server.defaults_file.stat().st_mode & 0o777) == "0o600"
    out = subprocess.run(
        ["mariadb", f"--defaults-extra-file={mariadb_server.defaults_file}", "-h", mariadb_server.host,
         "-P", str(mariadb_server.port), "-N", "-e", "select 1"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def _unavailable() -> None:
    raise servers.ServerUnavailable("frobd not found")


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_require_fails_in_ci_and_skips_elsewhere(ci: str, outcome: type[BaseException],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import require

    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="frobd not found"):
        require(_unavailable)


def test_missing_binary_is_server_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(servers, "PG_BIN", tmp_path)
    with pytest.raises(servers.ServerUnavailable, match="mariadb-install-db not found"):
        servers.start_mariadb(tmp_path)
