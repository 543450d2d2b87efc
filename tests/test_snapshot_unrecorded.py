"""The latest snapshot must say what the target holds, or `verify` fails for good while
`move` says there is nothing to do. A move killed after it changed the target (here: in
its deploy, with the new release live) and a `rollback` both leave the target ahead of
the latest snapshot; the next move then records it, even with nothing left to move
(snapshot/store.py UNRECORDED_MARK, execute/runner.py). Real sshd, moto, a real app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import cli, stop_app
from test_deploy import _get, _set_release, _slow_releases


def _kill_in_deploy(cfg: Path) -> None:
    """`move --json` until its deploy phase begins, then SIGKILL (the release is switched
    and starting: SLOW_APP sleeps 1.5 s before it answers)."""
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if '"phase": "deploy"' in line:
                time.sleep(1.0)
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_a_move_killed_in_its_deploy_is_recorded_by_the_next_one(tmp_path: Path, moto: str, sshd) -> None:
    cfg, root, port = _slow_releases(tmp_path, moto, sshd, "unrecorded-kill")
    snapshots = tmp_path / "snapshots"
    try:
        _kill_in_deploy(cfg)
        assert (root / "current").is_symlink()  # the killed move had switched the release
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        result = r.json()["result"]
        assert result["snapshot"], result  # nothing to change, but the target is recorded now
        assert _get(cfg, "/", port) == b"v1"
        v = cli("verify", "-f", str(cfg))
        assert v.exit_code == 0, v.stdout + v.stderr
        # and from then on a rerun does nothing, as before: no new snapshot
        before = sorted(p.name for p in snapshots.iterdir())
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0 and r.json()["result"]["nothing_to_do"] and r.json()["result"]["snapshot"] is None
        assert sorted(p.name for p in snapshots.iterdir()) == before
    finally:
        stop_app(root)


def test_after_a_rollback_the_next_move_records_the_target(tmp_path: Path, moto: str, sshd) -> None:
    cfg, root, port = _slow_releases(tmp_path, moto, sshd, "unrecorded-rollback")
    try:
        assert cli("move", "-f", str(cfg), "--yes").exit_code == 0
        _set_release(cfg, tmp_path / "v2")
        assert cli("move", "-f", str(cfg), "--yes").exit_code == 0
        r = cli("rollback", "-f", str(cfg), "--yes")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert _get(cfg, "/", port) == b"v1"
        # the latest snapshot records v2: verify says the deploy differs (docs/deploy.md)
        v = cli("verify", "-f", str(cfg))
        assert v.exit_code == 4 and "deploy" in v.stdout, v.stdout + v.stderr
        # deploy.release set to what is live again: nothing to deploy, and the target is recorded
        _set_release(cfg, tmp_path / "v1")
        r = cli("move", "-f", str(cfg), "--yes", "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert r.json()["result"]["snapshot"], r.json()["result"]
        v = cli("verify", "-f", str(cfg))
        assert v.exit_code == 0, v.stdout + v.stderr
        assert not (tmp_path / "snapshots" / ".unrecorded").exists()
    finally:
        stop_app(root)
