"""The compose runtime for real (issue 15.6): Debian's rootless podman and podman-compose
on the SSH target, an image built here from nothing but busybox-static (tests/servers.py
start_podman), and the same release switch, health check and rollback as `command`."""

from __future__ import annotations

import secrets
import textwrap
from pathlib import Path
from typing import Iterator

import pytest
import yaml

import servers
from conftest import require
from helpers import cli, make_config
from relocate.config import load_config
from relocate.targets.health import http_get
from relocate.ssh.connection import Connection


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory, sshd) -> servers.Podman:
    # built once per session: importing the image is the slow part
    return require(servers.start_podman, tmp_path_factory.mktemp("podman"))


# `$$` is compose's escape for a literal `$`: the shell in the container expands it.
# RELEASE comes from relocate's RELOCATE_RELEASE through compose's own interpolation.
COMPOSE = textwrap.dedent('''
    services:
      web:
        image: {image}
        ports: ["127.0.0.1:{port}:8080"]
        environment:
          RELEASE: "${{RELOCATE_RELEASE}}"
        command: ["sh", "-c", "{script}"]
''')
# The shell stays PID 1 and exits on TERM: busybox httpd as PID 1 would ignore it, and
# every `down` would wait out podman's 10 s before KILL.
SERVE = ("mkdir -p /tmp/www; echo {version} $$RELEASE > /tmp/www/version; trap 'exit 0' TERM; "
         "httpd -f -p 8080 -h /tmp/www & wait")
BROKEN = "echo 'boom: no config in this release' >&2; exit 3"


def _release(base: Path, name: str, image: str, port: int, script: str) -> Path:
    d = base / name
    d.mkdir()
    (d / "compose.yaml").write_text(COMPOSE.format(image=image, port=port, script=script))
    return d


def _version(cfg: Path, port: int) -> str:
    with Connection(load_config(cfg).ssh) as conn:
        r = http_get(conn, f"http://127.0.0.1:{port}/version")
    assert r.status == 200, r
    return r.body.decode().strip()


@pytest.fixture
def project(podman: servers.Podman) -> Iterator[str]:
    name = f"rt{secrets.token_hex(3)}"
    yield name
    ids = podman.as_user("podman", "ps", "-aq", "--filter", f"label=io.podman.compose.project={name}").stdout.split()
    if ids:
        podman.as_user("podman", "rm", "-f", *ids)
    podman.as_user("podman", "network", "rm", "-f", f"{name}_default")  # podman-compose makes one per project


def test_compose_release_switch_health_and_rollback(tmp_path: Path, moto: str, sshd, podman: servers.Podman,
                                                    project: str) -> None:
    port = servers.free_port()
    root = sshd.root / f"compose-{project}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    doc["deploy"] = {"runtime": "compose", "release": "./v1", "service": project,
                     "health": {"url": f"http://127.0.0.1:{port}/version", "timeout_s": 8}}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    for name, script in (("v1", SERVE.format(version="v1")), ("v2", SERVE.format(version="v2")), ("v3", BROKEN)):
        _release(tmp_path, name, podman.image, port, script)

    def deploy(name: str) -> tuple[int, str, dict]:
        d = yaml.safe_load(cfg.read_text())
        d["deploy"]["release"] = str(tmp_path / name)
        cfg.write_text(yaml.safe_dump(d, sort_keys=False))
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        return r.exit_code, r.stdout + r.stderr, (r.json() if r.stdout.startswith("{") else {})

    code, out, doc1 = deploy("v1")
    assert code == 0, out
    first = doc1["result"]["release"]
    assert _version(cfg, port) == f"v1 {first}"  # the container got RELOCATE_RELEASE

    code, out, doc2 = deploy("v2")
    assert code == 0, out
    second = doc2["result"]["release"]
    assert _version(cfg, port) == f"v2 {second}"  # the new release answers

    # a release whose container exits: health check fails, v2 comes back
    code, out, _ = deploy("v3")
    assert code == 4, out
    assert f"rolled back to {second}: answering again" in out, out
    assert _version(cfg, port) == f"v2 {second}"
    assert (root / "current").resolve().name == second

    r = cli("rollback", "-f", str(cfg), "--yes", "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.json()["to"] == first
    assert _version(cfg, port) == f"v1 {first}"
    # one container for the project: the old ones were taken down, not left beside it
    running = podman.as_user("podman", "ps", "-q", "--filter", f"label=io.podman.compose.project={project}").stdout.split()
    assert len(running) == 1, running
