"""Deploy with the `command` runtime on a real sshd: a real small web app serving a
file from the moved data and a value from the moved env file, reached through
relocate's SSH tunnel; a broken release fails its health check and is rolled back;
the target lock and audit log; `relocate rollback`."""

from __future__ import annotations

import json
import os
import socket
import textwrap
from pathlib import Path

import yaml

import servers
from helpers import aws_client, cli, make_config, stop_app
from relocate.config import load_config
from relocate.targets import shell
from relocate.targets.health import http_get
from relocate.targets.ssh import Connection

GREETING = "hello-from-ssm-7Qx"  # a SecureString: must reach the app, never the audit log
MEDIA = b"the moved media file\n"

APP = textwrap.dedent('''
    import http.server, os, sys
    VERSION = {version!r}
    root = os.environ["RELOCATE_ROOT"]
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/healthz":
                body = b"ok"
            elif self.path == "/file":
                body = open(os.path.join(root, "data/media/hello.txt"), "rb").read()
            elif self.path == "/env":
                body = os.environ["GREETING"].encode()
            elif self.path == "/version":
                body = VERSION.encode()
            else:
                self.send_error(404); return
            self.send_response(200); self.end_headers(); self.wfile.write(body)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
''')

BROKEN = 'import sys\nprint("boom: cannot read config/missing.yml", file=sys.stderr)\nsys.exit(3)\n'


def _release(base: Path, name: str, source: str) -> Path:
    d = base / name
    d.mkdir()
    (d / "app.py").write_text(source)
    return d


def _seed(endpoint: str) -> None:
    s3 = aws_client("s3", endpoint)
    s3.create_bucket(Bucket="media")
    s3.put_object(Bucket="media", Key="hello.txt", Body=MEDIA)
    aws_client("ssm", endpoint).put_parameter(Name="/townsquare/prod/greeting", Value=GREETING, Type="SecureString")


def _set_release(cfg: Path, release: Path) -> None:
    doc = yaml.safe_load(cfg.read_text())
    doc["deploy"]["release"] = str(release)
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))


def _get(cfg: Path, path: str, port: int) -> bytes:
    """Through relocate's own tunnel (paramiko direct-tcpip on the target connection)."""
    config = load_config(cfg)
    with Connection(config.ssh) as conn:
        r = http_get(conn, f"http://127.0.0.1:{port}{path}")
    assert r.status == 200, r
    return r.body


def test_command_runtime_deploy_health_rollback_lock_audit(tmp_path: Path, moto: str, sshd) -> None:
    _seed(moto)
    port = servers.free_port()
    root = sshd.root / "deploy1"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "media", "to": "data/media"}],
                      parameters=[{"path": "/townsquare/prod/", "to": "shared/app.env"}])
    doc = yaml.safe_load(cfg.read_text())
    doc["deploy"] = {"runtime": "command", "release": "./build1", "command": f"exec python3 app.py {port}",
                     "health": {"url": f"http://127.0.0.1:{port}/healthz", "timeout_s": 8}, "keep_releases": 2}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    v1 = _release(tmp_path, "build1", APP.format(version="v1"))
    try:
        # 1. first deploy: data, env file, app up, answering through the tunnel
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        first = r.json()["result"]["release"]
        assert first and (root / "current").is_symlink() and os.readlink(root / "current") == f"releases/{first}"
        assert _get(cfg, "/file", port) == MEDIA
        assert _get(cfg, "/env", port) == GREETING.encode()

        # 2. a second move while one holds the lock is refused (exit 6), naming the holder
        lock = root / ".relocate" / "lock"
        lock.mkdir()
        (lock / "owner").write_text(json.dumps({"who": "ops@elsewhere", "host": "elsewhere", "pid": 4242, "since": "2021-01-10T23:00:00Z"}))
        for p in (lock, lock / "owner"):  # as if the login user had made it (the test runs as root)
            os.chown(p, root.stat().st_uid, root.stat().st_gid)
        r = cli("move", "-f", str(cfg), "--yes")
        assert r.exit_code == 6, r.stdout + r.stderr
        assert "locked by ops@elsewhere (pid 4242" in r.stderr and "Traceback" not in r.stderr
        # a lock left by a dead process of this machine is stale: taken over
        (lock / "owner").write_text(json.dumps({"who": "me", "host": socket.gethostname(), "pid": 2 ** 22 + 17}))

        # 3. a broken release fails its health check, is rolled back; v1 still answers (exit 4)
        _release(tmp_path, "build2", BROKEN)
        _set_release(cfg, tmp_path / "build2")
        r = cli("move", "-f", str(cfg), "--yes")
        assert r.exit_code == 4, r.stdout + r.stderr
        assert "failed its health check" in r.stdout and f"rolled back to {first}: answering again" in r.stdout
        assert "boom: cannot read config/missing.yml" in r.stdout  # the app's last log lines are shown
        assert os.readlink(root / "current") == f"releases/{first}"
        assert _get(cfg, "/version", port) == b"v1" and _get(cfg, "/env", port) == GREETING.encode()
        assert not lock.exists()  # released after the move
        assert any(p.name.endswith(".failed") for p in (root / "releases").iterdir())

        # 4. a good v3, then `relocate rollback` goes back to v1 (the failed one is skipped)
        _release(tmp_path, "build3", APP.format(version="v3"))
        _set_release(cfg, tmp_path / "build3")
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert _get(cfg, "/version", port) == b"v3"
        r = cli("rollback", "-f", str(cfg), "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert r.json()["to"] == first
        assert _get(cfg, "/version", port) == b"v1"

        # 5. the audit log: who/what/which release, never the secret value
        audit = (root / ".relocate" / "audit.log").read_text()
        events = [json.loads(line) for line in audit.splitlines()]
        assert [e["action"] for e in events].count("move-start") == 3  # the locked-out move never started
        assert any(e["action"] == "move-end" and e.get("release") == first and e["result"] == "ok" for e in events)
        assert events[-1]["action"] == "rollback" and events[-1]["to_release"] == first
        assert all("who" in e and "at" in e for e in events)
        assert GREETING not in audit
        assert "shared/app.env" in audit
    finally:
        stop_app(root)


def test_lock_on_unwritable_root_is_a_target_error_not_lock_held(sshd) -> None:
    from relocate.config import SshSpec
    from relocate.errors import SafetyError, TargetError
    from relocate.execute.lock import TargetLock

    spec = SshSpec(host=sshd.host, port=sshd.port, user=sshd.user, identity_file=str(sshd.identity_file),
                   host_key=sshd.host_key_fingerprint)
    with Connection(spec) as conn:
        try:
            with TargetLock(conn, "/proc/relocate-no-such-root"):
                raise AssertionError("a lock under /proc cannot be taken")
        except SafetyError as exc:
            raise AssertionError(f"reported as a held lock: {exc}") from None
        except TargetError as exc:
            assert "cannot create the lock" in exc.message
        # and a free root: taken, then released
        root = str(sshd.root / "lock-ok")
        with TargetLock(conn, root) as lock:
            assert conn.run(shell.line(["test", "-d", lock.path]), check=False).status == 0
        assert conn.run(shell.line(["test", "-d", lock.path]), check=False).status != 0
