"""Deploy with the `command` runtime on a real sshd: a real small web app serving a
file from the moved data and a value from the moved env file, reached through
relocate's SSH tunnel; a broken release fails its health check and is rolled back;
the target lock and audit log; `relocate rollback`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

import servers
from helpers import aws_client, cli, make_config, one_line_error, stop_app
from relocate.config import load_config
from relocate.targets import shell
from relocate.targets.health import http_get
from relocate.ssh.connection import Connection

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
        # rollback goes through the gate (issue 17): without --yes and without a terminal it
        # refuses, and nothing changes on the target
        r = cli("rollback", "-f", str(cfg), "--json")
        assert r.exit_code == 2 and "refusing to roll back without confirmation" in r.stderr, r.stdout + r.stderr
        assert _get(cfg, "/version", port) == b"v3"
        r = cli("rollback", "-f", str(cfg), "--yes", "--json")
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
        # the failed move names both the release that stayed active and the one tried (issue 15.3)
        tried = [e for e in events if e["action"] == "move-end" and e["result"] == "failed"]
        assert tried and tried[0]["release"] == first and tried[0]["tried_release"] not in (None, first), tried
        assert GREETING not in audit
        assert "shared/app.env" in audit
    finally:
        stop_app(root)


def test_lock_on_unwritable_root_is_a_target_error_not_lock_held(sshd) -> None:
    from relocate.ssh.via import SshSpec
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


# --- issue 15: the old app is really stopped; the answer comes from the new release

SLOW_APP = textwrap.dedent('''
    import http.server, sys, time
    time.sleep(1.5)  # the health check has to wait (and retry) for this one
    VERSION = {version!r}
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(VERSION.encode())
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
''')


def _deploy_config(tmp_path: Path, moto: str, sshd, root: Path, deploy: dict) -> Path:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    doc["deploy"] = deploy
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


def _slow_releases(tmp_path: Path, moto: str, sshd, name: str, *, run: str = "python3 app.py", timeout_s: float = 20,
                   versions: tuple[str, ...] = ("v1", "v2")) -> tuple[Path, Path, int]:
    """Releases of SLOW_APP (./v1 configured), run by `command: <run> PORT` (no exec)."""
    port = servers.free_port()
    root = sshd.root / name
    cfg = _deploy_config(tmp_path, moto, sshd, root, {
        "runtime": "command", "release": "./v1", "command": f"{run} {port}",
        "health": {"url": f"http://127.0.0.1:{port}/", "timeout_s": timeout_s}})
    for v in versions:
        _release(tmp_path, v, SLOW_APP.format(version=v))
    return cfg, root, port


def test_new_release_replaces_the_old_process_under_dash(tmp_path: Path, moto: str, sshd) -> None:
    """`command: python3 app.py` without exec: dash's `sh -c` keeps the app as its child,
    so only a stop by process group (as dash accepts it) stops the app. Before the fix
    the old app kept the port, v2 could not bind, and its health check passed against v1.
    Also (issue 15.5): the health check's retries print no paramiko lines on stderr."""
    sh = os.path.realpath("/bin/sh")
    assert sh.endswith("dash") or not in_ci_debian(), f"/bin/sh is {sh}: this test is about Debian's dash"
    cfg, root, port = _slow_releases(tmp_path, moto, sshd, "deploy-dash")
    try:
        # a real process, as a user runs it: what reaches the terminal's stderr
        r = subprocess.run([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _get(cfg, "/", port) == b"v1"
        stderr_of_first_move = r.stderr
        _set_release(cfg, tmp_path / "v2")
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert _get(cfg, "/", port) == b"v2"  # the new release answers, not the old one
        assert _processes_in(root / "releases") == 1, "the old release's app still runs"
        r = cli("rollback", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert _get(cfg, "/", port) == b"v1"
        assert _processes_in(root / "releases") == 1
        # issue 15.5: the health check's retries left no library log lines on the terminal
        assert "Secsh channel" not in stderr_of_first_move and "open FAILED" not in stderr_of_first_move, stderr_of_first_move
    finally:
        stop_app(root)


def in_ci_debian() -> bool:
    return os.environ.get("CI") == "true" and Path("/etc/debian_version").exists()


def _processes_in(base: Path) -> int:
    """Live app processes (python3 app.py, not dash's `sh -c` around it) whose working
    directory is under `base`."""
    n = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            if os.path.basename(argv[0]).startswith(b"python") and b"app.py" in argv and \
                    os.path.realpath(d / "cwd").startswith(str(base.resolve())) and \
                    (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                n += 1
        except OSError:
            continue
    return n


def test_health_check_must_reach_the_new_release_not_a_port_squatter(tmp_path: Path, moto: str, sshd) -> None:
    """Something relocate did not start takes the health port after the plan was made
    (the plan looks first: see test_a_port_held_by_another_process_is_a_plan_blocker):
    the release is not started beside it and is reported (first deploy: nothing to roll
    back to). Run past the plan, as a squatter that came later meets it."""
    from relocate.kinds import Context
    from relocate.kinds.deploy import DeployKind

    cfg, root, port = _slow_releases(tmp_path, moto, sshd, "deploy-squat", timeout_s=5, versions=("v1",))
    config = load_config(cfg)
    with Connection(config.ssh) as conn:
        ctx = Context(config=config, aws=None, conn=conn, target_id="t")
        comp = DeployKind()
        gathered = comp.gather(ctx)
        part = comp.plan(ctx, gathered)
        assert not part.blockers, part.blockers
        squatter = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(port)
            out = comp.apply(ctx, gathered, part.steps[0])
        finally:
            squatter.kill()
            squatter.wait()
            stop_app(root)
    text = " ".join(" ".join(out.failed).split())
    assert f"port {port} is still held" in text and "None" not in text, text
    assert _processes_in(root / "releases") == 0
    # set aside like any failed release, `current` names none, so rollback has nothing
    names = sorted(p.name for p in (root / "releases").iterdir())
    assert len(names) == 1 and names[0].endswith(".failed"), names
    assert not os.path.lexists(root / "current")
    line = one_line_error(cli("rollback", "-f", str(cfg), "--yes"), 2)
    assert "nothing to roll back to" in line, line


def _wait_listening(port: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _plan_on_port(cfg: Path, port: int) -> tuple[Any, str]:
    """The app (and its health check) moved to `port` in relocate.yaml, then a plan: its
    result and its text on one line."""
    doc = yaml.safe_load(cfg.read_text())
    doc["deploy"]["command"] = f"python3 app.py {port}"
    doc["deploy"]["health"]["url"] = f"http://127.0.0.1:{port}/"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = cli("plan", "-f", str(cfg))
    return r, " ".join(r.stdout.split())


def test_a_port_held_by_another_process_is_a_plan_blocker(tmp_path: Path, moto: str, sshd) -> None:
    """A plan that says Ready must not fail on the app's port: held by a process that is
    not the running release, it is a `deploy-port` blocker (exit 3) naming the port,
    both on a fresh root (nothing to stop) and beside a running release whose own port it
    is not; `move` refuses before anything is uploaded. Before the fix the plan said
    Ready and the move failed at "free port" (exit 4, the app down)."""
    cfg, root, port = _slow_releases(tmp_path, moto, sshd, "deploy-squat-plan", timeout_s=10, versions=("v1", "v2"))
    other = servers.free_port()
    squatter = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(other)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(other)
        # 1. a fresh root, the app's port taken
        r, out = _plan_on_port(cfg, other)
        assert r.exit_code == 3 and "Ready" not in out, r.stdout + r.stderr
        assert "[deploy-port]" in out and f"port {other} (deploy.health.url) is held by" in out, out
        assert "no release of the app runs there" in out, out
        r = cli("move", "-f", str(cfg), "--yes")
        assert r.exit_code == 3, r.stdout + r.stderr
        assert not (root / "releases").exists()  # refused before the upload

        # 2. a release runs (on its own port, which does not block its redeploy); the
        # next one is configured on the taken port: stopping the running one frees nothing
        _plan_on_port(cfg, port)
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        first = r.json()["result"]["release"]
        _set_release(cfg, tmp_path / "v2")
        r = cli("plan", "-f", str(cfg))
        assert r.exit_code == 0 and "Ready" in r.stdout, r.stdout + r.stderr  # its own port: not a blocker
        r, out = _plan_on_port(cfg, other)
        assert r.exit_code == 3 and "[deploy-port]" in out, r.stdout + r.stderr
        assert f"port {other} (deploy.health.url) is held by" in out and f"not by the running release {first}" in out, out
        r = cli("move", "-f", str(cfg), "--yes")
        assert r.exit_code == 3, r.stdout + r.stderr
        assert os.readlink(root / "current") == f"releases/{first}" and _get(cfg, "/", port) == b"v1"  # untouched
    finally:
        squatter.kill()
        squatter.wait()
        stop_app(root)


# --- issue 15.2: systemd without root or sudo; a failing deploy step rolls back

def test_systemd_without_root_or_sudo_is_a_plan_blocker(tmp_path: Path, moto: str, sshd) -> None:
    root = sshd.root / "deploy-systemd-plan"
    cfg = _deploy_config(tmp_path, moto, sshd, root, {"runtime": "systemd", "release": "./v1", "command": "./bin/server"})
    _release(tmp_path, "v1", SLOW_APP.format(version="v1"))
    r = cli("plan", "-f", str(cfg))
    assert r.exit_code == 3, r.stdout + r.stderr
    assert "Ready" not in r.stdout
    assert "[deploy-runtime]" in r.stdout and "sudo" in r.stdout, r.stdout


def test_a_failing_deploy_step_leaves_current_on_the_previous_release(tmp_path: Path, moto: str, sshd) -> None:
    """Run past the plan (as a saved plan made elsewhere would): the systemd steps fail
    for want of sudo; `current` must still name the release that ran before."""
    from relocate.kinds import Context
    from relocate.kinds.deploy import DeployKind
    from relocate.targets import releases

    cfg, root, port = _slow_releases(tmp_path, moto, sshd, "deploy-anystep")
    try:
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        first = r.json()["result"]["release"]
        stop_app(root)
        doc = yaml.safe_load(cfg.read_text())
        doc["deploy"] = {"runtime": "systemd", "release": str(tmp_path / "v2"), "command": f"python3 app.py {port}"}
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
        config = load_config(cfg)
        with Connection(config.ssh) as conn:
            ctx = Context(config=config, aws=None, conn=conn, target_id="t")
            comp = DeployKind()
            gathered = comp.gather(ctx)
            step = comp.plan(ctx, gathered).steps[0]
            out = comp.apply(ctx, gathered, step)
            assert releases.current_release(conn, str(root)) == first
            assert out.failed and "failed at step" in out.failed[0], out.failed
            assert out.manifest["active"] == first and out.manifest["tried"] != first
    finally:
        stop_app(root)


def test_an_answer_from_outside_the_release_process_group_fails_the_release(tmp_path: Path, moto: str, sshd) -> None:
    """The app escapes relocate's process group (setsid, as a daemonizing app does): it
    answers, but relocate could neither prove it is this release nor stop it later."""
    cfg, root, port = _slow_releases(tmp_path, moto, sshd, "deploy-escape", run="setsid python3 app.py", versions=("v1",))
    try:
        r = cli("move", "-f", str(cfg), "--yes")
        assert r.exit_code == 4, r.stdout + r.stderr
        assert "not by this release's process group" in " ".join(r.stdout.split()), r.stdout  # rich folds lines
    finally:
        stop_app(root)
        for d in Path("/proc").iterdir():  # the escaped app is in a group of its own
            try:
                if d.name.isdigit() and os.path.realpath(d / "cwd").startswith(str(root.resolve())):
                    os.kill(int(d.name), 9)
            except OSError:
                continue
