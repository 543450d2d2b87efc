"""`--debug`'s log file (README, "Every command takes `--debug`"): what it holds after a
run that went well, and what never reaches the terminal (library log lines, Python
warnings from libraries)."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

from helpers import aws_client, make_config, subprocess_cli

_NAMED = re.compile(r"^relocate: debug log \(every library's log lines\): (\S+)$", re.M)


def _log_named(stderr: str) -> str:
    found = _NAMED.search(stderr)
    assert found, stderr
    return Path(found.group(1)).read_text()


def test_a_debug_move_logs_its_commands_listings_and_steps(tmp_path: Path, sshd, moto: str) -> None:
    bucket = f"dbg-{secrets.token_hex(3)}"
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket=bucket)
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"k{i}.txt", Body=b"x" * (i + 1))
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / f"t-{bucket}"),
                      buckets=[{"bucket": bucket, "to": "data"}])
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    run = subprocess_cli("--debug", "move", "-f", str(cfg), "--yes", cwd=tmp_path, env={"TMPDIR": str(tmp)})
    assert run.exit_code == 0, run.stderr
    log = _log_named(run.stderr)
    assert str(tmp) in run.stderr  # the file is where TMPDIR says
    # relocate's own lines: the listing, each step, the remote commands and their exits
    assert re.search(rf"DEBUG relocate\.execute\.gather: listed s3://{bucket}/ \(current\): 3 object\(s\), 6 byte\(s\)", log), log
    assert re.search(rf"DEBUG relocate\.execute\.runner: step s3:{bucket}/\S* \(s3\): 3 item\(s\)", log), log
    assert re.search(r"DEBUG relocate\.ssh\.connection: on \S+: \S", log) and "exit 0" in log, log
    # a library's INFO line (paramiko's login) is there too
    assert re.search(r"INFO paramiko\.transport: ", log), log
    # and none of it on the terminal, which keeps relocate's own warnings only
    assert "DEBUG" not in run.stderr and "paramiko" not in run.stderr


_WARNS = """
import sys, warnings
import relocate.cli as cli
setup = cli._setup_logging
def noisy(debug):
    setup(debug)
    warnings.warn("a library's deprecation notice", UserWarning)  # as asyncssh's under a newer cryptography
cli._setup_logging = noisy
cli.main(sys.argv[1:])
"""


def test_a_library_warning_goes_to_the_debug_log_not_the_terminal(tmp_path: Path) -> None:
    for debug in ([], ["--debug"]):
        proc = subprocess.run([sys.executable, "-c", _WARNS, *debug, "profiles", "list"], capture_output=True,
                              text=True, env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "deprecation notice" not in proc.stderr and "UserWarning" not in proc.stderr, proc.stderr
        if debug:
            assert "a library's deprecation notice" in _log_named(proc.stderr)
