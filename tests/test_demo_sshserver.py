"""The demo's embedded SSH server and sample app, exercised for real.

The server runs as a child process (as `relocate demo` runs it) and is reached
by paramiko with the host key pinned; the sample app is seeded into a real
moto server. Nothing here is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import asyncssh
import boto3
import paramiko
import pytest
import yaml

from relocate.demo.seed import SampleApp, sample_objects, seed_sample_app, write_demo_config
from relocate.demo.sshserver import EmbeddedSshd, start_embedded_sshd
from conftest import in_ci

MiB = 1024 * 1024


# --------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedSshd]:
    server = start_embedded_sshd(tmp_path_factory.mktemp("demo-sshd"))
    yield server
    server.stop()
    assert server.process.returncode == 0, "SIGTERM should end the server cleanly"


def _pinned_client(server: EmbeddedSshd) -> paramiko.SSHClient:
    """A client that trusts exactly the advertised host key (never AutoAddPolicy)."""
    algo, b64 = server.host_key_line.split()
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[{server.host}]:{server.port}", algo,
                               paramiko.Ed25519Key(data=base64.b64decode(b64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _connect(server: EmbeddedSshd, pkey: Optional[paramiko.PKey] = None,
             user: Optional[str] = None) -> paramiko.SSHClient:
    client = _pinned_client(server)
    client.connect(server.host, server.port, username=user or server.user,
                   pkey=pkey, key_filename=None if pkey else str(server.identity_file),
                   look_for_keys=False, allow_agent=False, timeout=10)
    return client


@pytest.fixture
def client(sshd: EmbeddedSshd) -> Iterator[paramiko.SSHClient]:
    # A fresh connection per test, so one test's bytes never push another
    # across paramiko's re-key threshold.
    c = _connect(sshd)
    yield c
    c.close()


def _run(client: paramiko.SSHClient, command: str,
         stdin: Optional[bytes] = None) -> tuple[bytes, bytes, int]:
    """Run a command, draining stdout and stderr *together* (reading one after
    the other deadlocks once both pass the window: paramiko issue 1778)."""
    chan = client.get_transport().open_session()
    chan.exec_command(command)
    err: list[bytes] = []

    def drain_stderr() -> None:
        while chunk := chan.recv_stderr(MiB):
            err.append(chunk)

    reader = threading.Thread(target=drain_stderr)
    reader.start()
    if stdin is not None:
        chan.sendall(stdin)
    chan.shutdown_write()
    out = bytearray()
    while chunk := chan.recv(MiB):
        out += chunk
    reader.join()
    status = chan.recv_exit_status()
    chan.close()
    return bytes(out), b"".join(err), status


def _push(client: paramiko.SSHClient, command: str, total: int,
          chunk: int = MiB) -> tuple[bytes, int, float, str]:
    """Stream `total` random bytes into `command`; return stdout, status, MB/s, sha256."""
    block = os.urandom(chunk)
    digest = hashlib.sha256()
    chan = client.get_transport().open_session()
    chan.exec_command(command)
    started = time.perf_counter()
    for _ in range(total // chunk):
        chan.sendall(block)
        digest.update(block)
    chan.shutdown_write()
    out = bytearray()
    while data := chan.recv(MiB):
        out += data
    status = chan.recv_exit_status()
    seconds = time.perf_counter() - started
    chan.close()
    return bytes(out), status, total / 1e6 / seconds, digest.hexdigest()


def _openssh_fingerprint(key_line: str) -> str:
    """What `ssh-keygen -lf` prints: SHA256 of the key blob, base64 without padding."""
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# --------------------------------------------------------------------------
# startup, keys, ready file


def test_ready_file_describes_the_server(sshd: EmbeddedSshd) -> None:
    workdir = sshd.identity_file.parent
    info = json.loads((workdir / "sshd.ready.json").read_text())
    assert info["port"] == sshd.port and info["pid"] == sshd.process.pid
    assert info["user"] == sshd.user
    assert sshd.host_key_line.startswith("ssh-ed25519 AAAA")
    assert sshd.host_key_fingerprint == _openssh_fingerprint(sshd.host_key_line)
    for name in ("host_key", "client_key", "client_key.pub"):
        assert stat.S_IMODE((workdir / name).stat().st_mode) == 0o600, name
    assert (workdir / "home").is_dir()


def test_fingerprint_matches_ssh_keygen(sshd: EmbeddedSshd, tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:  # openssh-client: .ci/run installs it
        if in_ci():
            pytest.fail("ssh-keygen missing (Debian package openssh-client)")
        pytest.skip("needs ssh-keygen")
    pub = tmp_path / "host.pub"
    pub.write_text(sshd.host_key_line + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], check=True,
                         capture_output=True, text=True).stdout
    assert out.split()[1] == sshd.host_key_fingerprint


def test_host_key_survives_a_restart(tmp_path: Path) -> None:
    # known_hosts written by one demo run must still match the next one.
    first = start_embedded_sshd(tmp_path)
    first.stop()
    second = start_embedded_sshd(tmp_path)
    try:
        assert second.host_key_line == first.host_key_line
        assert second.process.pid != first.process.pid
    finally:
        second.stop()


def test_a_child_that_dies_raises_with_its_stderr(tmp_path: Path) -> None:
    (tmp_path / "host_key").write_text("not a key\n")
    with pytest.raises(RuntimeError, match="(?s)exited with status.*Traceback"):
        start_embedded_sshd(tmp_path, timeout=20)


# --------------------------------------------------------------------------
# authentication


def test_pinned_host_key_mismatch_is_refused(sshd: EmbeddedSshd) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    impostor = EmbeddedSshd(sshd.host, sshd.port, sshd.user, sshd.identity_file,
                            "", other.export_public_key().decode().strip(), sshd.process)
    client = _pinned_client(impostor)
    with pytest.raises(paramiko.SSHException):
        client.connect(sshd.host, sshd.port, username=sshd.user,
                       key_filename=str(sshd.identity_file), look_for_keys=False,
                       allow_agent=False, timeout=10)
    client.close()


def _fresh_ed25519() -> paramiko.Ed25519Key:
    pem = asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode()
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem))


def test_wrong_client_key_is_refused(sshd: EmbeddedSshd) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        _connect(sshd, pkey=_fresh_ed25519())


def test_other_user_name_is_refused(sshd: EmbeddedSshd) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        _connect(sshd, user=sshd.user + "-not")


def test_password_auth_is_not_offered(sshd: EmbeddedSshd) -> None:
    client = _pinned_client(sshd)
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(sshd.host, sshd.port, username=sshd.user, password="guess",
                       look_for_keys=False, allow_agent=False, timeout=10)
    client.close()


# --------------------------------------------------------------------------
# exec


def test_exec_returns_output_and_real_exit_status(client: paramiko.SSHClient) -> None:
    out, err, status = _run(client, "echo hi; echo oops >&2; exit 3")
    assert (out, err, status) == (b"hi\n", b"oops\n", 3)


def test_exec_runs_in_home_as_the_current_user(client: paramiko.SSHClient,
                                               sshd: EmbeddedSshd) -> None:
    out, _, status = _run(client, "pwd; id -u")
    cwd, uid = out.decode().split()
    assert status == 0
    assert Path(cwd) == sshd.identity_file.parent / "home"
    assert int(uid) == os.getuid()


def test_stdin_is_closed_on_eof(client: paramiko.SSHClient) -> None:
    out, _, status = _run(client, "wc -c", stdin=b"x" * 12345)
    assert (out.strip(), status) == (b"12345", 0)


def test_64_mib_into_sha256sum_arrives_intact(client: paramiko.SSHClient) -> None:
    out, status, mbps, digest = _push(client, "sha256sum", 64 * MiB)
    print(f"\n64 MiB -> sha256sum: {mbps:.0f} MB/s")
    assert status == 0
    assert out.split()[0].decode() == digest


def test_exec_upload_throughput(client: paramiko.SSHClient) -> None:
    _, status, mbps, _ = _push(client, "cat > /dev/null", 128 * MiB)
    print(f"\n128 MiB -> cat > /dev/null: {mbps:.0f} MB/s")
    assert status == 0
    # Measured ~200-380 MB/s on 2 loopback cores. The floor is low so a busy CI
    # box passes, yet far above the 2 MB/s of an in-process server.
    assert mbps > 20


def test_large_stdout_and_stderr_together(client: paramiko.SSHClient,
                                          tmp_path: Path) -> None:
    blob = os.urandom(24 * MiB)  # each stream well past the 2 MiB window
    src = tmp_path / "blob"
    src.write_bytes(blob)
    started = time.perf_counter()
    out, err, status = _run(client, f"cat {src}; cat {src} >&2")
    print(f"\n2 x 24 MiB out of cat: {48 * MiB / 1e6 / (time.perf_counter() - started):.0f} MB/s")
    assert status == 0
    assert hashlib.sha256(out).digest() == hashlib.sha256(blob).digest()
    assert hashlib.sha256(err).digest() == hashlib.sha256(blob).digest()


def test_tar_stream_extracts(client: paramiko.SSHClient, tmp_path: Path) -> None:
    files = {
        "a.txt": b"alpha\n",
        "nested/deeper/b.bin": os.urandom(3 * MiB + 7),
        "nested/c with space.json": b'{"c": 1}\n',
        "empty": b"",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest = tmp_path / "extracted"
    dest.mkdir()
    _, err, status = _run(client, f"tar -x -C {dest}", stdin=buf.getvalue())
    assert status == 0, err
    for name, data in files.items():
        assert (dest / name).read_bytes() == data, name


def test_failed_command_reports_its_status(client: paramiko.SSHClient) -> None:
    _, err, status = _run(client, "tar -x -C /nonexistent/dir", stdin=b"")
    assert status != 0 and err


def test_shell_sessions_fail_with_a_message(client: paramiko.SSHClient) -> None:
    chan = client.get_transport().open_session()
    chan.invoke_shell()
    assert b"only exec requests and sftp" in chan.makefile_stderr("rb").read()
    assert chan.recv_exit_status() == 1
    chan.close()


# --------------------------------------------------------------------------
# sftp and forwarding


def test_sftp_put_and_get(client: paramiko.SSHClient, tmp_path: Path) -> None:
    local = tmp_path / "up.bin"
    local.write_bytes(os.urandom(5 * MiB + 3))
    remote = tmp_path / "remote" / "up.bin"  # SFTP is rooted at /: the user's own files
    remote.parent.mkdir()
    back = tmp_path / "back.bin"
    with client.open_sftp() as sftp:
        sftp.put(str(local), str(remote))
        assert sftp.stat(str(remote)).st_size == local.stat().st_size
        sftp.get(str(remote), str(back), max_concurrent_prefetch_requests=None)
    assert remote.read_bytes() == local.read_bytes()
    assert back.read_bytes() == local.read_bytes()


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A one-shot TCP echo server on loopback, standing in for an app's health endpoint."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    listener.close()


def test_direct_tcpip_to_loopback(client: paramiko.SSHClient, echo_port: int) -> None:
    chan = client.get_transport().open_channel(
        "direct-tcpip", ("127.0.0.1", echo_port), ("127.0.0.1", 0), timeout=10)
    chan.sendall(b"ping through the tunnel")
    assert chan.recv(100) == b"ping through the tunnel"
    chan.close()


def test_direct_tcpip_elsewhere_is_refused(client: paramiko.SSHClient) -> None:
    with pytest.raises(paramiko.ChannelException):
        client.get_transport().open_channel(
            "direct-tcpip", ("192.0.2.1", 80), ("127.0.0.1", 0), timeout=10)


# --------------------------------------------------------------------------
# the sample app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def seeded(moto_endpoint: str) -> SampleApp:
    return seed_sample_app(moto_endpoint)


def _aws(endpoint: str, service: str):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_seeded_bucket_matches_the_report(moto_endpoint: str, seeded: SampleApp) -> None:
    s3 = _aws(moto_endpoint, "s3")
    objects = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=seeded.bucket)
               for o in page.get("Contents", [])]
    assert 250 <= seeded.object_count <= 350
    assert len(objects) == seeded.object_count
    assert sum(o["Size"] for o in objects) == seeded.total_bytes
    keys = {o["Key"] for o in objects}
    assert "avatars/u123.png" in keys
    assert any(k.startswith("posts/2021/") and k.endswith(".json") for k in keys)
    video = s3.head_object(Bucket=seeded.bucket, Key="video/launch.mp4")
    assert video["ContentLength"] == 6 * MiB
    assert video["ContentType"] == "video/mp4"
    assert video["Metadata"]["uploaded-by"] == "u100"


def test_sample_data_is_deterministic() -> None:
    first = {o.key: hashlib.sha256(o.body).hexdigest() for o in sample_objects()}
    again = {o.key: hashlib.sha256(o.body).hexdigest() for o in sample_objects()}
    assert first == again


def test_seeded_parameters_and_secret(moto_endpoint: str, seeded: SampleApp) -> None:
    ssm = _aws(moto_endpoint, "ssm")
    params = [p for page in ssm.get_paginator("get_parameters_by_path").paginate(
        Path=seeded.parameter_path, Recursive=True, WithDecryption=True)
        for p in page["Parameters"]]
    assert {p["Name"] for p in params} == set(seeded.parameter_names)
    assert {p["Type"] for p in params} == {"String", "StringList", "SecureString"}
    password = next(p for p in params if p["Name"].endswith("/db_password"))
    assert password["Type"] == "SecureString" and password["Value"] in seeded.secret_values

    secret = _aws(moto_endpoint, "secretsmanager").get_secret_value(SecretId=seeded.secret_name)
    api = json.loads(secret["SecretString"])
    assert len(api) == 2 and set(api.values()) <= set(seeded.secret_values)
    assert not any(v in repr(seeded) for v in seeded.secret_values)


def test_demo_config_shape(tmp_path: Path, sshd: EmbeddedSshd) -> None:
    path = tmp_path / "relocate.yaml"
    write_demo_config(path, endpoint_url="http://127.0.0.1:5555", target=sshd,
                      root=tmp_path / "target", known_hosts=tmp_path / "known_hosts")
    cfg = yaml.safe_load(path.read_text())
    assert list(cfg) == ["version", "app", "source", "target"]
    assert cfg["source"]["aws"] == {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:5555"}
    assert cfg["source"]["s3"] == [{"bucket": "townsquare-media", "prefix": "", "to": "data/media"}]
    assert cfg["target"]["ssh"] == {
        "host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
        "identity_file": str(sshd.identity_file), "host_key": sshd.host_key_fingerprint,
        "known_hosts": str(tmp_path / "known_hosts"),
    }
    assert cfg["target"]["root"] == str(tmp_path / "target")


# --------------------------------------------------------------------------
# long-lived connections and shutdown


@pytest.mark.slow
def test_transfers_past_paramikos_rekey_threshold(sshd: EmbeddedSshd) -> None:
    """paramiko re-keys by itself after 2^29 bytes and dies if a channel closes
    meanwhile (issue 822); the server re-keys first, so one connection survives."""
    client = _connect(sshd)
    try:
        for _ in range(3):  # 3 x 256 MiB up: past 2^29 with channel closes in between
            _, status, mbps, _ = _push(client, "cat > /dev/null", 256 * MiB)
            assert status == 0
        print(f"\nlast 256 MiB up: {mbps:.0f} MB/s")
        out, _, status = _run(client, f"head -c {640 * MiB} /dev/zero | wc -c")
        assert (out.strip(), status) == (str(640 * MiB).encode(), 0)
        chan = client.get_transport().open_session()
        chan.exec_command(f"head -c {640 * MiB} /dev/zero")
        received = 0
        while data := chan.recv(MiB):
            received += len(data)
        assert received == 640 * MiB and chan.recv_exit_status() == 0
        assert _run(client, "echo still here") == (b"still here\n", b"", 0)
    finally:
        client.close()


def test_sigterm_stops_server_and_running_commands(tmp_path: Path) -> None:
    server = start_embedded_sshd(tmp_path)
    client = _connect(server)
    try:
        chan = client.get_transport().open_session()
        chan.exec_command("echo $$; exec sleep 300")
        pid = int(chan.makefile("rb").readline())
        started = time.perf_counter()
        server.stop()
        assert server.process.returncode == 0
        assert time.perf_counter() - started < 8
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the command should not outlive the server"
    finally:
        client.close()
        server.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")
