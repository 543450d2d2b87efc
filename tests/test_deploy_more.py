"""Deploy defects found by acceptance testing, each against the real sshd (and moto,
and rootless podman for compose), as tests/test_deploy.py runs them:

- a failed first deploy (nothing to roll back to) is set aside as `<id>.failed`, and
  `relocate rollback` then has nothing to roll back to (exit 2);
- the health check stops waiting once the `command` app has exited;
- releases made in the same UTC second are ordered as they were deployed;
- `keep_releases: N` keeps exactly N;
- an interrupted deploy's audit line names the release it tried;
- a tarball the target's tar refuses leaves no `.partial` and says why;
- compose: a secret passed by name reaches the container without being on the
  `podman run` command line; `${VAR}` puts it there (docs/deploy.md says which to use);
- a rollback (move's own and `relocate rollback`) runs each release with the settings
  it was deployed with, not with a `deploy.command` changed since.
"""

from __future__ import annotations

import calendar
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

import servers
from helpers import aws_client, cli, make_config, one_line_error, stop_app
from relocate.kinds.deploy import release_digest
from test_deploy import APP, BROKEN, _deploy_config, _get, _processes_in, _release, _set_release, _slow_releases


def _releases(root: Path) -> list[str]:
    base = root / "releases"
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


def _app_config(tmp_path: Path, moto: str, sshd, name: str, timeout_s: float = 20,
                **deploy: object) -> tuple[Path, Path, int]:
    port = servers.free_port()
    root = sshd.root / name
    cfg = _deploy_config(tmp_path, moto, sshd, root, {
        "runtime": "command", "release": "./v1", "command": f"exec python3 app.py {port}",
        "health": {"url": f"http://127.0.0.1:{port}/healthz", "timeout_s": timeout_s}, **deploy})
    return cfg, root, port


# --- 1. a failed first deploy; 5. the health check does not wait for an app that exited

def test_failed_first_deploy_is_set_aside_and_nothing_to_roll_back_to(tmp_path: Path, moto: str, sshd) -> None:
    """A fresh target, a release whose app exits at once: the deploy fails (exit 4)
    without waiting out timeout_s, the release is `<id>.failed`, `current` names no
    release, and `rollback` has nothing to roll back to (exit 2, one line). Before the
    fix the release kept its plain name and `rollback --yes` switched to it."""
    cfg, root, port = _app_config(tmp_path, moto, sshd, "deploy-first-fails", timeout_s=60)
    _set_release(cfg, _release(tmp_path, "broken", BROKEN))
    try:
        t0 = time.monotonic()
        r = cli("move", "-f", str(cfg), "--yes")
        took = time.monotonic() - t0
        assert r.exit_code == 4, r.stdout + r.stderr
        out = " ".join(r.stdout.split())  # rich folds long lines
        assert "the app exited" in out, out
        assert "boom: cannot read config/missing.yml" in out, out  # its last log lines, as before
        assert took < 15, f"the move waited {took:.0f} s for an app that had exited"
        names = _releases(root)
        assert len(names) == 1 and names[0].endswith(".failed"), names
        assert not os.path.lexists(root / "current"), os.readlink(root / "current")
        assert _processes_in(root / "releases") == 0
        assert "None" not in r.stdout

        t0 = time.monotonic()
        r = cli("verify", "-f", str(cfg))
        assert time.monotonic() - t0 < 8, "verify waited out a health check no release can answer"
        assert r.exit_code == 4, r.stdout + r.stderr
        assert "current -> no release" in " ".join(r.stdout.split()) and "None" not in r.stdout, r.stdout

        line = one_line_error(cli("rollback", "-f", str(cfg), "--yes"), 2)
        assert "nothing to roll back to: no release is on the target" in line, line
        assert "None" not in line
        assert not os.path.lexists(root / "current")
    finally:
        stop_app(root)


# --- 2. same-second releases keep deploy order; 5. keep_releases is exact

def test_releases_of_one_second_keep_deploy_order_and_keep_releases_is_exact(tmp_path: Path, moto: str, sshd,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The UTC clock stands still (every deploy in the same second) and v2's content
    hash sorts before v1's: before the fix v2's id sorted before v1's, and `rollback`
    from v2 refused ("no release before ...")."""
    cfg, root, port = _app_config(tmp_path, moto, sshd, "deploy-same-second", keep_releases=5)
    _release(tmp_path, "v1", APP.format(version="v1"))
    v1_hash = release_digest(tmp_path / "v1")[0][:12]
    for nonce in range(1000):  # v2's content chosen so its hash sorts before v1's
        d = tmp_path / f"v2-{nonce}"
        _release(tmp_path, d.name, APP.format(version="v2") + f"# {nonce}\n")
        if release_digest(d)[0][:12] < v1_hash:
            v2 = d
            break
    else:
        raise AssertionError("no v2 content whose hash sorts before v1's")
    _release(tmp_path, "v3", APP.format(version="v3"))

    frozen = time.gmtime(calendar.timegm((2026, 12, 6, 3, 21, 20, 0, 0, 0)))
    real = time.gmtime
    monkeypatch.setattr(time, "gmtime", lambda *a: real(*a) if a and a[0] is not None else frozen)
    try:
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        first = r.json()["result"]["release"]
        _set_release(cfg, v2)
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        second = r.json()["result"]["release"]
        assert _get(cfg, "/version", port) == b"v2"
        assert first.startswith("20261206T032120Z-") and second > first, (first, second)
        assert len(second) == len(first) and second.endswith("-" + release_digest(v2)[0][:12])  # the documented id format

        r = cli("rollback", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert r.json()["to"] == first
        assert _get(cfg, "/version", port) == b"v1"

        # keep_releases: 1 keeps exactly one release, the current one (README: "the last N kept")
        doc = yaml.safe_load(cfg.read_text())
        doc["deploy"]["keep_releases"] = 1
        doc["deploy"]["release"] = str(tmp_path / "v3")
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        third = r.json()["result"]["release"]
        assert third > second and _releases(root) == [third], _releases(root)
        assert _get(cfg, "/version", port) == b"v3"
    finally:
        stop_app(root)


# --- 3. an interrupted deploy's audit line names the release it tried

HANGS = 'import time\ntime.sleep(600)  # never answers, never exits\n'


def test_interrupted_deploy_audit_line_names_the_tried_release(tmp_path: Path, moto: str, sshd) -> None:
    cfg, root, port = _app_config(tmp_path, moto, sshd, "deploy-interrupted", timeout_s=120)
    _set_release(cfg, _release(tmp_path, "hangs", HANGS))
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not os.path.lexists(root / "current") and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert os.path.lexists(root / "current"), proc.communicate(timeout=30)
        tried = os.path.basename(os.readlink(root / "current"))
        time.sleep(1.0)  # inside the health check's wait
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0, out + err
        assert "Traceback" not in err, err
        events = [json.loads(line) for line in (root / ".relocate" / "audit.log").read_text().splitlines()]
        end = events[-1]
        assert end["action"] == "move-end" and end["result"] == "error", events
        assert end["tried_release"] == tried, end
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop_app(root)


# --- 4. a tarball the target's tar refuses

def test_tarball_the_target_refuses_leaves_no_partial_and_says_why(tmp_path: Path, moto: str, sshd) -> None:
    cfg, root, port = _app_config(tmp_path, moto, sshd, "deploy-bad-tar")
    ball = tmp_path / "release.tar.gz"
    with tarfile.open(ball, "w:gz") as tar:
        for name, data in (("app.py", APP.format(version="v1").encode()), ("../../escape.txt", b"out of the release\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _set_release(cfg, ball)
    try:
        line = one_line_error(cli("move", "-f", str(cfg), "--yes"), 2)
        assert "Member name contains '..'" in line, line  # tar's own reason, not only its last line
        assert "Exiting with failure status" not in line, line
        assert not [n for n in _releases(root) if n.endswith(".partial")], _releases(root)
        assert not (root / "escape.txt").exists() and not (root.parent / "escape.txt").exists()
        assert not os.path.lexists(root / "current")
    finally:
        stop_app(root)


# --- 6. compose: which way a secret reaches the container

COMPOSE = textwrap.dedent('''
    services:
      web:
        image: {image}
        ports: ["127.0.0.1:{port}:8080"]
        environment: {environment}
        command: ["sh", "-c", "mkdir -p /tmp/www; echo \\"$$GREETING\\" > /tmp/www/greeting; trap 'exit 0' TERM; httpd -f -p 8080 -h /tmp/www & wait"]
''')


def test_compose_secret_by_name_stays_off_the_podman_command_line(tmp_path: Path, moto: str, sshd, podman,
                                                                   project: str) -> None:
    """docs/deploy.md: list a secret in `environment:` by name only; podman-compose runs
    `podman run -e NAME`, podman takes the value from the environment relocate loaded
    the env file into. `${NAME}` is interpolated by the compose tool into the file, and
    podman-compose passes it as `-e NAME=value` on the command line (podman keeps that
    command line: `podman inspect` CreateCommand, what `ps` showed)."""
    secret = f"it's-a-secret-{project}"  # a quote too: the env file's quoting must not leak into the value
    path = f"/{project}/prod/"
    aws_client("ssm", moto).put_parameter(Name=path + "greeting", Value=secret, Type="SecureString")
    port = servers.free_port()
    root = sshd.root / f"compose-secret-{project}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      parameters=[{"path": path, "to": "shared/app.env"}])
    doc = yaml.safe_load(cfg.read_text())
    doc["deploy"] = {"runtime": "compose", "release": "./by-name", "service": project,
                     "health": {"url": f"http://127.0.0.1:{port}/greeting", "timeout_s": 30}}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    for name, environment in (("by-name", "[GREETING]"), ("interpolated", '{GREETING: "${GREETING}"}')):
        d = tmp_path / name
        d.mkdir()
        (d / "compose.yaml").write_text(COMPOSE.format(image=podman.image, port=port, environment=environment))

    def create_command() -> str:
        ids = podman.as_user("podman", "ps", "-q", "--filter", f"label=io.podman.compose.project={project}").stdout.split()
        assert len(ids) == 1, ids
        return podman.as_user("podman", "inspect", "--format", "{{json .Config.CreateCommand}}", ids[0]).stdout

    r = cli("move", "-f", str(cfg), "--yes")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert _get(cfg, "/greeting", port).decode().strip() == secret
    command = create_command()
    assert "GREETING" in command and secret not in command, command

    _set_release(cfg, tmp_path / "interpolated")
    r = cli("move", "-f", str(cfg), "--yes")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert _get(cfg, "/greeting", port).decode().strip() == secret
    assert f"GREETING={secret}" in json.loads(create_command()), "docs/deploy.md says ${VAR} puts the value on the line"


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory, sshd) -> servers.Podman:
    from conftest import require

    return require(servers.start_podman, tmp_path_factory.mktemp("podman"))


@pytest.fixture
def project(podman: servers.Podman):
    import secrets

    name = f"rs{secrets.token_hex(3)}"
    yield name
    ids = podman.as_user("podman", "ps", "-aq", "--filter", f"label=io.podman.compose.project={name}").stdout.split()
    if ids:
        podman.as_user("podman", "rm", "-f", *ids)
    podman.as_user("podman", "network", "rm", "-f", f"{name}_default")


def test_a_saved_plan_pins_the_release_content_it_was_reviewed_with(tmp_path: Path, moto: str, sshd) -> None:
    """`plan -o plan.json`, review, `move plan.json`: the release that goes live is the one
    reviewed. Code changed in deploy.release after the plan is drift (exit 6, naming it),
    as a changed object or parameter is; --allow-drift deploys what is there now."""
    cfg, root, port = _slow_releases(tmp_path, moto, sshd, "pinned-release")
    plan = tmp_path / "plan.json"
    try:
        r = cli("plan", "-f", str(cfg), "-o", str(plan))
        assert r.exit_code == 0, r.stdout + r.stderr
        assert json.loads(plan.read_text())["fingerprint"]["inputs"] == {
            f"deploy.release {tmp_path / 'v1'}": release_digest(tmp_path / "v1")[0]}
        with open(tmp_path / "v1" / "app.py", "a") as fh:
            fh.write("# changed after the review\n")
        r = cli("move", str(plan), "--yes")
        assert r.exit_code == 6, r.stdout + r.stderr
        assert r.stderr.count("\n") == 1 and "source changed" in r.stderr, r.stderr
        assert f"deploy.release {tmp_path / 'v1'} (its content)" in r.stderr, r.stderr
        assert not (root / "current").exists()  # nothing was deployed
        r = cli("move", str(plan), "--yes", "--allow-drift")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert (root / "current" / "app.py").read_text().endswith("# changed after the review\n")
    finally:
        stop_app(root)


# --- a rollback runs each release as it was deployed

def test_rollback_runs_each_release_with_the_settings_it_was_deployed_with(tmp_path: Path, moto: str, sshd) -> None:
    """v1 runs on port A. `deploy.command` changes to port B (health still on A): that
    release fails, and move's own rollback must start v1 with ITS command (port A), not
    the new one. Then v3 on port B with its health on B, and `relocate rollback` brings
    v1 back on port A, checked on A. A release without its record (made by an older
    relocate) runs with the current settings, with a warning. Before the fix the
    rollback started v1 as `python3 app.py B`: "NOT answering either", the app down."""
    port_a, port_b = servers.free_port(), servers.free_port()
    cfg, root, _ = _app_config(tmp_path, moto, sshd, "deploy-own-settings", timeout_s=5, keep_releases=5)
    doc = yaml.safe_load(cfg.read_text())
    doc["deploy"]["command"] = f"exec python3 app.py {port_a}"
    doc["deploy"]["health"]["url"] = f"http://127.0.0.1:{port_a}/healthz"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    _release(tmp_path, "v1", APP.format(version="v1"))
    _release(tmp_path, "v2", APP.format(version="v2"))
    _release(tmp_path, "v3", APP.format(version="v3"))

    def deploy(release: str, command_port: int, health_port: int) -> None:
        doc = yaml.safe_load(cfg.read_text())
        doc["deploy"].update(release=str(tmp_path / release), command=f"exec python3 app.py {command_port}")
        doc["deploy"]["health"]["url"] = f"http://127.0.0.1:{health_port}/healthz"
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))

    try:
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        first = r.json()["result"]["release"]
        record = json.loads((root / "releases" / first / ".relocate-release.json").read_text())
        assert record["command"] == f"exec python3 app.py {port_a}" and record["runtime"] == "command", record
        assert record["health"]["url"] == f"http://127.0.0.1:{port_a}/healthz"

        # 1. move's own rollback: v2 answers on B only, its health check (on A) fails
        deploy("v2", port_b, port_a)
        r = cli("move", "-f", str(cfg), "--yes")
        out = " ".join(r.stdout.split())
        assert r.exit_code == 4, r.stdout + r.stderr
        assert "failed its health check" in out and f"rolled back to {first}: answering again" in out, out
        assert os.readlink(root / "current") == f"releases/{first}"
        assert _get(cfg, "/version", port_a) == b"v1" and _processes_in(root / "releases") == 1

        # 2. `relocate rollback` from v3 (on B, healthy) to v1: started on A and checked there
        deploy("v3", port_b, port_b)
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        third = r.json()["result"]["release"]
        assert _get(cfg, "/version", port_b) == b"v3"
        r = cli("rollback", "-f", str(cfg), "--to", first, "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        doc = r.json()
        assert doc["to"] == first and doc["warnings"] == [], doc
        assert _get(cfg, "/version", port_a) == b"v1" and _processes_in(root / "releases") == 1

        # 3. a release without its record: the current deploy: settings (B), said in a warning
        (root / "releases" / third / ".relocate-release.json").unlink()
        r = cli("rollback", "-f", str(cfg), "--to", third, "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        warnings = r.json()["warnings"]
        assert len(warnings) == 1 and third in warnings[0] and "older relocate" in warnings[0], warnings
        assert _get(cfg, "/version", port_b) == b"v3" and _processes_in(root / "releases") == 1
        r = cli("rollback", "-f", str(cfg), "--to", first, "--yes")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert f"release {third}" in " ".join(r.stderr.split()) and "warning:" in r.stderr, r.stderr
        assert _get(cfg, "/version", port_a) == b"v1"
    finally:
        stop_app(root)


def test_changed_deploy_settings_are_a_redeploy_of_the_same_content(tmp_path: Path, moto: str, sshd) -> None:
    """Kamal or Terraform apply a changed config: the same release content with a new
    `deploy.command` (another port) and health URL is not "nothing to do". The plan says
    what changed, the move makes a new release of the same content that runs as deploy:
    says now, and the next move has nothing to do. A changed health timeout alone
    restarts nothing."""
    port_a, port_b = servers.free_port(), servers.free_port()
    cfg, root, _ = _app_config(tmp_path, moto, sshd, "deploy-settings-change", timeout_s=5, keep_releases=5)
    _release(tmp_path, "v1", APP.format(version="v1"))

    def use(port: int, timeout_s: int = 5) -> None:
        doc = yaml.safe_load(cfg.read_text())
        doc["deploy"].update(release=str(tmp_path / "v1"), command=f"exec python3 app.py {port}")
        doc["deploy"]["health"].update(url=f"http://127.0.0.1:{port}/healthz", timeout_s=timeout_s)
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))

    try:
        use(port_a)
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        first = r.json()["result"]["release"]
        use(port_a, timeout_s=9)
        r = cli("plan", "-f", str(cfg), "--json")
        assert r.exit_code == 0 and next(s for s in r.json()["steps"] if s["kind"] == "deploy")["todo_count"] == 0

        use(port_b)
        r = cli("plan", "-f", str(cfg), "--json")
        step = next(s for s in r.json()["steps"] if s["kind"] == "deploy")
        assert r.exit_code == 0 and step["todo_count"] == 1, r.stdout + r.stderr
        assert "deploy: changed since it was deployed (command, health)" in step["change"], step
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        second = r.json()["result"]["release"]
        assert second != first and second.endswith(first.rsplit("-", 1)[1])  # the same content, a new release
        assert _get(cfg, "/version", port_b) == b"v1" and _processes_in(root / "releases") == 1
        record = json.loads((root / "releases" / second / ".relocate-release.json").read_text())
        assert record["command"] == f"exec python3 app.py {port_b}"
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0 and r.json()["result"]["release"] in (None, second), r.stdout + r.stderr
        assert "deploy" in r.json()["result"]["unchanged"], r.json()["result"]
    finally:
        stop_app(root)
