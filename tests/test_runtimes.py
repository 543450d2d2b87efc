"""Runtimes without a live engine: the generated systemd unit is checked by the real
`systemd-analyze verify`; compose's lines here (it runs for real, on podman, in
test_compose.py); deploy settings errors are one line, exit 2."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import in_ci
from helpers import cli
from relocate.kinds.deploy import settings
from relocate.config import parse_config
from relocate.errors import ConfigError
from relocate.targets.runtimes import (CommandRuntime, ComposeRuntime, DeploySettings, SystemdRuntime, runtime_for,
                                       systemd_escape, unit_text)

S = DeploySettings(runtime="systemd", root="/srv/town square", service="townsquare",
                   command="./bin/server --port 8080 --greeting '100% $HOME'", env_file="shared/app.env", user="deploy")


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if in_ci():
            pytest.fail("systemd-analyze missing (Debian package systemd)")
        pytest.skip("systemd-analyze missing")
    unit = tmp_path / "townsquare.service"
    text = unit_text(S, "townsquare (deployed by relocate)")
    unit.write_text(text)
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WorkingDirectory=/srv/town square/current" in text
    assert "EnvironmentFile=-/srv/town square/shared/app.env" in text
    # %, $ and quotes reach sh literally, not as systemd specifiers/variables
    assert "ExecStart=/bin/sh -c \"exec ./bin/server --port 8080 --greeting '100%% $$HOME'\"" in text


def test_systemd_escape_round_trip_chars() -> None:
    assert systemd_escape('a"b\\c%d$e') == '"a\\"b\\\\c%%d$$e"'


def test_systemd_commands_use_sudo_unless_root() -> None:
    rt = SystemdRuntime(S, sudo=True)
    assert rt.start_line("r1")[0] == "sudo -n systemctl restart townsquare.service"
    assert "sudo -n install -m 0644 -- /srv/x.service /etc/systemd/system/townsquare.service" in rt.install_lines("/srv/x.service")
    root_rt = runtime_for(S, login_is_root=True)
    assert isinstance(root_rt, SystemdRuntime) and root_rt.stop_line()[0] == "systemctl stop townsquare.service"
    assert root_rt.logs_line(5) == ("journalctl -u townsquare.service -n 5 --no-pager", b"")


def test_compose_lines_keep_values_off_the_line() -> None:
    s = DeploySettings(runtime="compose", root="/srv/ts", service="townsquare", compose_file="deploy/compose.yaml",
                       env_file="shared/app.env")
    rt = runtime_for(s)
    assert isinstance(rt, ComposeRuntime)
    line, script = rt.start_line("r1")
    assert shlex.split(line) == ["sh", "-s", "--", "/srv/ts/current", "/srv/ts/shared/app.env", "r1", "/srv/ts",
                                 "townsquare", "/srv/ts/current/deploy/compose.yaml", "up"]
    assert b'. "$2"' in script and b"podman-compose" in script and b"docker compose" in script
    assert shlex.split(rt.stop_line()[0])[-1] == "down"
    assert shlex.split(rt.logs_line(20)[0])[-2:] == ["logs", "20"]


def test_command_runtime_keeps_user_commands_off_the_line_as_arguments() -> None:
    s = DeploySettings(runtime="command", root="/srv/ts", service="ts", start="./start.sh; echo $(id)", stop="./stop.sh",
                       env_file="shared/app.env")
    rt = runtime_for(s)
    assert isinstance(rt, CommandRuntime)
    line, script = rt.start_line("r1")
    assert shlex.split(line) == ["sh", "-s", "--", "/srv/ts/current", "/srv/ts/shared/app.env", "r1", "/srv/ts", "./start.sh; echo $(id)"]
    assert b'. "$2"' in script  # the env file is read by sh on the target, never put on a line


def _cfg(tmp_path: Path, deploy: dict) -> Path:
    p = tmp_path / "relocate.yaml"
    p.write_text(yaml.safe_dump({"version": 1, "target": {"ssh": {"host": "h"}, "root": "/srv/a"}, "deploy": deploy}))
    return p


@pytest.mark.parametrize("deploy, message", [
    ({"runtime": "systemd", "release": "./b"}, "deploy.command: required for runtime systemd"),
    ({"runtime": "command", "release": "./b"}, "runtime command needs `command:`"),
    ({"runtime": "command", "release": "./b", "start": "./s"}, "deploy.stop: required with deploy.start"),
    ({"runtime": "compose", "command": "x"}, "deploy.release: required"),
    ({"runtime": "systemd", "release": "./b", "command": "x", "start": "y"}, "deploy.start: only for runtime command"),
])
def test_deploy_settings_errors(tmp_path: Path, deploy: dict, message: str) -> None:
    p = _cfg(tmp_path, deploy)
    with pytest.raises(ConfigError, match=message.replace("`", ".").replace("(", r"\(")):
        settings(parse_config(p.read_text(), p))


@pytest.mark.parametrize("deploy, message", [
    ({"runtime": "docker"}, "deploy.runtime: must be one of systemd, compose, command"),
    ({"runtime": "command", "health": {"url": "https://x/healthz"}}, "deploy.health.url: must be an http://"),
    ({"runtime": "command", "keep_releases": 0}, "deploy.keep_releases: must be between 1 and 100"),
    ({"runtime": "command", "health": {"timeout_s": 3}}, "deploy.health.url: is required"),
])
def test_deploy_schema_errors_are_one_line_exit_2(tmp_path: Path, deploy: dict, message: str) -> None:
    r = cli("plan", "-f", str(_cfg(tmp_path, deploy)))
    assert r.exit_code == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
