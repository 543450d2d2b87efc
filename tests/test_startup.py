"""What `relocate` imports to start: help, the version and the commands that need no
cloud and no host must not load boto3, paramiko or the planner (issue 18). The time
itself is measured in bench/bench_startup.py, not asserted here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import fresh_cli
from relocate import __version__

HEAVY = ("boto3", "botocore", "paramiko", "obstore", "pycurl", "relocate.workflow", "relocate.plan.build")

def _start(*args: str, cwd=None) -> dict:
    run = fresh_cli(*args, watch=HEAVY, cwd=cwd, timeout=60)
    return {**run, "heavy": run["loaded"]}


@pytest.mark.parametrize("args", [["--help"], [], ["--version"], ["init", "--help"], ["check", "--help"],
                                  ["profiles", "list"], ["profiles", "lint"], ["plan", "--help"], ["move", "--help"]])
def test_light_commands_load_neither_boto3_nor_paramiko(args: list[str]) -> None:
    run = _start(*args)
    assert run["heavy"] == [], f"relocate {' '.join(args)} imported {run['heavy']}"


def test_init_writes_its_file_without_the_heavy_imports(tmp_path) -> None:
    run = _start("init", str(tmp_path / "relocate.yaml"))
    assert run["code"] == 0 and (tmp_path / "relocate.yaml").exists()
    assert run["heavy"] == []


def test_version_prints_the_package_version() -> None:
    run = _start("--version")
    assert run["code"] == 0
    assert run["out"].strip() == f"relocate {__version__}"


@pytest.mark.parametrize("command", ["plan", "move"])
def test_a_real_command_still_loads_what_it_needs(command: str, tmp_path) -> None:
    # The probe above would pass on a CLI that imports nothing at all: a command that runs
    # must load its machinery (here it stops at the missing relocate.yaml: exit 2).
    run = _start(command, "-f", str(tmp_path / "missing.yaml"))
    assert run["code"] == 2 and "relocate.workflow" in run["heavy"]
    shown = _start(command, "--help")  # light, but still the command's own options
    assert shown["code"] == 0 and ("--yes" if command == "move" else "--probe") in shown["out"]


@pytest.mark.parametrize("missing", ["moto", "asyncssh"])
def test_demo_without_its_extra_says_which_command_adds_it(missing: str) -> None:
    # The demo's embedded cloud and SSH host are an extra: without it, one line and exit 2.
    blocked = ["moto", "moto.server"] if missing == "moto" else [missing]
    code = (f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); "
            "from relocate.cli import main; main(['demo'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "pip install '.[demo]'" in lines[0] and missing in lines[0]
