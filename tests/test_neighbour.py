"""A second, unprivileged local user on the target (issue 13) watches with inotify every
directory relocate writes into (tests/spy.py) and tries to open every file it sees, the
moment it appears, during env-file moves, a PostgreSQL restore and a deploy: it reads
nothing secret. The sshd's login is the ordinary user `relocatetest` (tests/servers.py);
the neighbour is `relocatespy`, made here with useradd (CI runs as root)."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from conftest import in_ci
from helpers import aws_client, cli, make_config, stop_app

SPY = "relocatespy"


@pytest.fixture(scope="module")
def spy_user() -> str:
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("the neighbour tests need root (useradd, runuser); CI runs as root")
        pytest.skip("needs root to create a second local user")
    try:
        pwd.getpwnam(SPY)
    except KeyError:
        r = subprocess.run(["useradd", "-M", "-s", "/bin/sh", SPY], capture_output=True, text=True)
        assert r.returncode in (0, 9), r.stderr
    return SPY


@contextmanager
def neighbour(user: str, *trees: str) -> Iterator[dict[str, Any]]:
    """Run tests/spy.py as `user` over `trees` while the body runs; yields its findings."""
    work = Path(tempfile.mkdtemp(prefix="spy-", dir="/tmp"))
    os.chmod(work, 0o755)
    shutil.copy(Path(__file__).with_name("spy.py"), work / "spy.py")
    out = work / "out"
    out.mkdir()
    pw = pwd.getpwnam(user)
    os.chown(out, pw.pw_uid, pw.pw_gid)
    stop = work / "stop"
    proc = subprocess.Popen(["runuser", "-u", user, "--", "/usr/bin/python3", "-I", str(work / "spy.py"), str(stop), str(out),
                             *trees], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    found: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 30
        while not (out / "ready").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the spy did not start"
            time.sleep(0.05)
        yield found
    finally:
        stop.touch()
        try:
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        if (out / "report.json").exists():
            found.update(json.loads((out / "report.json").read_text()))
            found["read"] = (out / "read.bin").read_bytes()
        shutil.rmtree(work, ignore_errors=True)


def _owned_dir(path: Path, like: Path, mode: int = 0o755) -> Path:
    path.mkdir(exist_ok=True)
    st = like.stat()
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, mode)
    return path


def _reads_nothing_secret(found: dict[str, Any], *values: str) -> None:
    assert "read" in found, "the spy reported nothing"
    for v in values:
        assert v.encode() not in found["read"], f"the neighbour read a secret ({v[:4]}...)"


def test_env_file_moves_leak_nothing_to_a_neighbour(tmp_path: Path, moto: str, sshd: Any, spy_user: str) -> None:
    values = [f"pw-{secrets.token_hex(8)}" for _ in range(3)]
    token = f"tok-{secrets.token_hex(8)}"
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="media")
    s3.put_object(Bucket="media", Key="public.txt", Body=b"public bytes anyone may read\n")
    ssm, sm = aws_client("ssm", moto), aws_client("secretsmanager", moto)
    sm.create_secret(Name="townsquare/prod/api", SecretString=json.dumps({"token": token}))
    root = _owned_dir(sshd.root / f"n-{secrets.token_hex(4)}", sshd.root)
    # shared/ made open by the user (env_dir_mode "0755"), so the neighbour can watch it from
    # the start: what protects the env file is then its own mode, from the first byte.
    _owned_dir(root / "shared", root)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "media", "to": "data/media"}],
                      parameters=[{"path": "/townsquare/prod/", "to": "shared/app.env"}],
                      secrets=[{"name": "townsquare/prod/api", "to": "shared/app.env"}])
    doc = yaml.safe_load(cfg.read_text())
    doc["target"]["env_dir_mode"] = "0755"
    cfg.write_text(yaml.safe_dump(doc))
    with neighbour(spy_user, str(root)) as found:
        for value in values:  # three moves, each rewriting the env file
            ssm.put_parameter(Name="/townsquare/prod/db_password", Value=value, Type="SecureString", Overwrite=True)
            run = cli("move", "-f", str(cfg), "--yes")
            assert run.exit_code == 0, run.stdout + run.stderr
            time.sleep(0.3)
    _reads_nothing_secret(found, token, *values)
    # It really watched: it read the public object, and saw the env file's temporary name appear.
    assert b"public bytes anyone may read" in found["read"]
    assert str(root / "shared") in found["watched"]
    assert str(root / "shared" / ".app.env.relocate-tmp") in found["seen"], found["seen"]
    assert str(root / "shared" / "app.env") in found["denied"]
    assert str(root / "shared" / ".app.env.relocate-tmp") not in found["opened"]
    assert (root / "shared" / "app.env").stat().st_mode & 0o777 == 0o600


def test_default_env_dir_is_closed_to_a_neighbour(tmp_path: Path, moto: str, sshd: Any, spy_user: str) -> None:
    value = f"pw-{secrets.token_hex(8)}"
    aws_client("ssm", moto).put_parameter(Name="/townsquare/prod/db_password", Value=value, Type="SecureString")
    root = _owned_dir(sshd.root / f"n-{secrets.token_hex(4)}", sshd.root)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      parameters=[{"path": "/townsquare/prod/", "to": "config/prod/app.env"}])
    with neighbour(spy_user, str(root)) as found:
        run = cli("move", "-f", str(cfg), "--yes")
        assert run.exit_code == 0, run.stdout + run.stderr
    _reads_nothing_secret(found, value)
    assert str(root) in found["watched"]
    assert (root / "config" / "prod").stat().st_mode & 0o777 == 0o700
    assert str(root / "config" / "prod" / "app.env") not in found["opened"]


def test_database_restore_leaks_no_password_to_a_neighbour(tmp_path: Path, sshd: Any, postgres_server: Any,
                                                          postgres_target: Any, spy_user: str) -> None:
    from test_databases import SMALL, db_config, env_for, psql, reset_db

    reset_db(postgres_server, "spysmall", SMALL)
    reset_db(postgres_target, "spysmall")
    src_url = f"postgresql://{postgres_server.user}@127.0.0.1:{postgres_server.port}/spysmall"
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": src_url, "password_from": "env:SRC_DB_PW"}], target_db="spysmall")
    home = pwd.getpwnam(sshd.user).pw_dir  # where the target's password file goes (README "Databases")
    root = Path(yaml.safe_load(cfg.read_text())["target"]["root"])
    _owned_dir(root, sshd.root)
    with neighbour(spy_user, home + ":0", str(root), tempfile.gettempdir() + ":1") as found:
        run = cli("move", "-f", str(cfg), "--yes", env=env_for(postgres_server, postgres_target))
        assert run.exit_code == 0, run.stdout + run.stderr
    assert psql(postgres_target, "SELECT count(*) FROM items;", "spysmall") == "500"
    _reads_nothing_secret(found, postgres_server.password, postgres_target.password)
    assert home in found["watched"]
    pgpass = [p for p in found["seen"] if os.path.basename(p).startswith((".relocate-db-", "..relocate-db-"))]
    assert pgpass, "the spy never saw the target's password file appear"
    # Other test sessions on this machine share that home (and may run older code), so
    # the proof is what was read (above) and that this run's files were refused.
    assert [p for p in pgpass if p in found["denied"]], {p: found["modes"].get(p) for p in pgpass}


def test_deploy_leaks_nothing_to_a_neighbour(tmp_path: Path, moto: str, sshd: Any, spy_user: str) -> None:
    import servers
    from test_deploy import APP, GREETING, _release, _seed

    _seed(moto)
    port = servers.free_port()
    root = _owned_dir(sshd.root / f"d-{secrets.token_hex(4)}", sshd.root)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "media", "to": "data/media"}],
                      parameters=[{"path": "/townsquare/prod/", "to": "shared/app.env"}])
    doc = yaml.safe_load(cfg.read_text())
    doc["deploy"] = {"runtime": "command", "release": "./build1", "command": f"exec python3 app.py {port}",
                     "health": {"url": f"http://127.0.0.1:{port}/healthz", "timeout_s": 8}}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    _release(tmp_path, "build1", APP.format(version="v1"))
    try:
        with neighbour(spy_user, str(root)) as found:
            run = cli("move", "-f", str(cfg), "--yes")
            assert run.exit_code == 0, run.stdout + run.stderr
        _reads_nothing_secret(found, GREETING)
        assert any(p.endswith("app.py") for p in found["opened"])  # it did watch the release land
        assert (root / "shared").stat().st_mode & 0o777 == 0o700
    finally:
        stop_app(root)
