"""The target's sshd is killed mid-move (every connection dropped) and comes back
a few seconds later: relocate reconnects, resumes the batches in flight, and the
move completes and verifies."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import servers
from conftest import require
from helpers import aws_client, make_config

MiB = 1024 * 1024


@pytest.fixture
def own_sshd(tmp_path_factory: pytest.TempPathFactory):
    server = require(servers.start_sshd, tmp_path_factory.mktemp("sshd-restart"))
    yield server
    server.stop()


def test_sshd_restarted_mid_move(moto: str, own_sshd, tmp_path: Path) -> None:
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="restart")
    objects = {f"f/{i:02d}.bin": os.urandom(MiB) for i in range(12)}
    for key, body in objects.items():
        s3.put_object(Bucket="restart", Key=key, Body=body)
    root = own_sshd.root / "t"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=own_sshd, root=str(root),
                      buckets=[{"bucket": "restart", "to": "data"}])
    env = {**os.environ, "RELOCATE_RETRY_BACKOFF": "1", "RELOCATE_BATCH_OBJECTS": "3", "RELOCATE_STALL_TIMEOUT": "10"}
    # A rate limit keeps the move going long enough to be cut in the middle.
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", "--json",
                             "--bwlimit", "2M", "--lanes", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    restarted = threading.Event()
    killed: list[int] = []
    stderr_lines: list[str] = []

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr_lines.append(line)
            # Cut while a batch is streaming: bytes on the wire, the first batch not yet in place.
            if not restarted.is_set() and '"event": "progress"' in line and json.loads(line)["bytes"] >= MiB // 2:
                killed.extend(own_sshd.restart(down_for=2.0))
                restarted.set()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    assert proc.stdout is not None
    out = proc.stdout.read()  # stderr belongs to the watcher thread; communicate() would race it
    proc.wait(timeout=240)
    t.join(10)
    assert restarted.is_set(), "the move finished before sshd could be restarted"
    assert len(killed) >= 2, "sshd was serving the move's connections when it was killed"
    assert proc.returncode == 0, "".join(stderr_lines[-20:])
    result = json.loads(out)["result"]
    assert result["verify"]["ok"]
    got = {str(p.relative_to(root / "data")): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in (root / "data").rglob("*") if p.is_file()}
    assert got == {k: hashlib.sha256(v).hexdigest() for k, v in objects.items()}
