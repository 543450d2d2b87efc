"""A reader that stops reading (`relocate plan | head -c 10`, `| grep -m1 ...`) is not a
bug: the command ends with its own exit code and prints nothing more (click's answer to
EPIPE was exit 1 with nothing said). Real processes, real pipes closed early."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _closed_early(args: list[str], env: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    """Run `relocate ARGS` with stdout a pipe of one page (F_SETPIPE_SZ: the output cannot
    all fit in it, so a write meets the closed pipe), read 10 bytes, close it; (exit code,
    what was read, stderr)."""
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen([sys.executable, "-m", "relocate", *args], stdout=write_fd, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    os.close(write_fd)
    head = os.read(read_fd, 10)  # unbuffered: the rest stays in the pipe, which stays full
    os.close(read_fd)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, head, err.decode()


@pytest.mark.parametrize("args", [
    ["check", "--content", "spam"],  # a rich table
    ["check", "--content", "spam", "--json"],  # one JSON document of 150 kB
    ["check", "--content", "spam", "--format", "markdown"],
    ["profiles", "list"],  # typer.echo line by line
])
def test_a_reader_that_stops_early_leaves_the_exit_code_alone(args: list[str]) -> None:
    whole = subprocess.run([sys.executable, "-m", "relocate", *args], capture_output=True, timeout=120)
    assert len(whole.stdout) > 5000, len(whole.stdout)  # more than the pipe holds
    code, head, err = _closed_early(args)
    assert head == whole.stdout[:10]
    assert code == whole.returncode, err
    assert err == whole.stderr.decode(), err  # nothing more said: no error, no debug log


def test_a_plan_piped_into_head_exits_with_its_own_code(tmp_path: Path, sshd, moto: str) -> None:
    """The acceptance report: `relocate plan | head -c 10` exited 1, with nothing said."""
    from helpers import aws_client, make_config

    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="pipe")
    for i in range(60):  # a plan longer than the pipe
        s3.put_object(Bucket="pipe", Key=f"k{i}", Body=b"x")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / f"pipe-{tmp_path.name}"),
                      buckets=[{"bucket": "pipe", "prefix": f"k{i}", "to": f"d{i}"} for i in range(60)])
    code, head, err = _closed_early(["plan", "-f", str(cfg)])
    assert (code, head[:9], err) == (0, b"Plan for ", ""), err
