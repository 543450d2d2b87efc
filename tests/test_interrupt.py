"""Ctrl-C and SIGTERM (a cancelled CI job, an evicted pod) stop a move the same way: the
lock is given back, the audit log says the move ended in an error, one line says how to
resume, exit 5 (transient: running again resumes); and the next move finishes the job.
A real relocate process against moto and a real sshd."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import aws_client, cli, make_config


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_move_gives_the_lock_back_and_exits_5(tmp_path: Path, moto: str, sshd: Any, sig: int) -> None:
    s3 = aws_client("s3", moto)
    bucket = f"int-{secrets.token_hex(3)}"
    s3.create_bucket(Bucket=bucket)
    for i in range(6):
        s3.put_object(Bucket=bucket, Key=f"f{i}.bin", Body=os.urandom(256 * 1024))
    root = sshd.root / f"int-{tmp_path.name}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data"}])
    # 100 kB/s for 1.5 MiB: the move is still sending when the signal comes
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", "--json",
                             "--bwlimit", "100k", "--lanes", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RELOCATE_BATCH_OBJECTS": "2"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's Ctrl-C finds it
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if '"event": "progress"' in line and '"bytes": 0,' not in line:
            break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    err = "".join(seen) + err
    assert proc.returncode == 5, err
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert f"relocate: interrupted ({name}); running the same command again resumes" in err, err
    assert "Traceback" not in err
    # --json: stdout still holds one document, the error's (docs/json.md), for `jq < move.json`
    assert json.loads(out) == {"format_version": 1, "error": {
        "exit_code": 5, "kind": "interrupted", "message": f"interrupted ({name}); running the same command again resumes"}}
    assert not (root / ".relocate" / "lock").exists()  # given back: the next move (here or elsewhere) may start
    last = json.loads((root / ".relocate" / "audit.log").read_text().splitlines()[-1])
    assert last["action"] == "move-end" and last["result"] == "error", last
    again = cli("move", "-f", str(cfg), "--yes", "--json")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert again.json()["result"]["verify"]["ok"] is True
    assert sorted(p.name for p in (root / "data").iterdir()) == [f"f{i}.bin" for i in range(6)]


def test_an_interrupted_rollback_is_in_the_audit_log(tmp_path: Path, moto: str, sshd: Any) -> None:
    """A rollback switches `current` before its health check: interrupted there, the audit
    log still says who rolled back from what to what, and that it ended in an error."""
    from helpers import stop_app
    from test_deploy import _set_release, _slow_releases

    cfg, root, _ = _slow_releases(tmp_path, moto, sshd, "int-rollback")
    try:
        assert cli("move", "-f", str(cfg), "--yes").exit_code == 0
        _set_release(cfg, tmp_path / "v2")
        assert cli("move", "-f", str(cfg), "--yes").exit_code == 0
        import time

        before = os.readlink(root / "current")
        proc = subprocess.Popen([sys.executable, "-m", "relocate", "rollback", "-f", str(cfg), "--yes"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while os.readlink(root / "current") == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # switched: the restart and the health check follow (SLOW_APP answers after 1.5 s)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        done = subprocess.CompletedProcess([], proc.returncode, out, err)
        assert done.returncode == 5, done.stdout + done.stderr
        assert "relocate: interrupted (SIGTERM)" in done.stderr
        last = json.loads((root / ".relocate" / "audit.log").read_text().splitlines()[-1])
        assert last["action"] == "rollback" and last["result"] == "error" and last["error"] == "Terminated", last
        assert last["to_release"] and last["from_release"]
        assert not (root / ".relocate" / "lock").exists()
    finally:
        stop_app(root)


# SIGTERM only: both signals reach the cleanup as the same exception (cli: Terminated is a
# KeyboardInterrupt), which the move test above checks for each; this one costs ~10 s a run.
@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_an_interrupted_mariadb_restore_exits_5_and_the_rerun_completes(tmp_path: Path, sshd: Any, mariadb_server: Any,
                                                                       sig: int) -> None:
    """Interrupted while the target's mysql client replays the dump (mysqldump's `LOCK
    TABLES ... WRITE` held in that session): the restore's session is ended BEFORE the
    cleanup drops the half-restored database, so that DROP never waits on the lock (it
    waited a year: the move hung, the lock stayed held). Exit 5 in seconds, the lock given
    back, nothing left on the target, and the next move restores the whole database."""
    import time

    from test_databases import env_for, maria, maria_rows_config

    src, dst = f"intbig_{sig}", f"intbig_{sig}_copy"
    # 400k rows (about 80 MB of dump) in a second or two
    cfg = maria_rows_config(tmp_path, sshd, mariadb_server, src, dst, 400_000,
                            "CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(200))",
                            "big SELECT seq, REPEAT('x', 190) FROM @SEQ@")
    root = sshd.root / tmp_path.name
    env = env_for(mariadb_server, mariadb_server)
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        inserting = (f"SELECT COUNT(*) FROM information_schema.processlist WHERE db = '{dst}' "
                     "AND info LIKE 'INSERT INTO%'")
        deadline = time.monotonic() + 180
        while maria(mariadb_server, inserting) == "0":  # the restore is replaying rows: its LOCK TABLES is held
            assert proc.poll() is None and time.monotonic() < deadline, "the restore never started"
            time.sleep(0.02)
        proc.send_signal(sig)
        started = time.monotonic()
        out, err = proc.communicate(timeout=90)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 5, out + err
    assert took < 30, f"{took:.1f} s to stop"
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert f"relocate: interrupted ({name}); running the same command again resumes" in err, err
    assert "Traceback" not in err
    assert not (root / ".relocate" / "lock").exists()
    last = json.loads((root / ".relocate" / "audit.log").read_text().splitlines()[-1])
    assert last["action"] == "move-end" and last["result"] == "error", last
    # The half-restored database is gone, and no session of the restore is left in it.
    assert maria(mariadb_server, f"SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{dst}'") == "0"
    assert maria(mariadb_server, f"SELECT COUNT(*) FROM information_schema.processlist WHERE db = '{dst}'") == "0"
    again = cli("move", "-f", str(cfg), "--yes", env=env)
    assert again.exit_code == 0, again.stdout + again.stderr
    assert maria(mariadb_server, "SELECT COUNT(*) FROM big;", dst) == "400000"
