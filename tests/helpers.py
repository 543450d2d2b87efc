"""Shared test helpers: write a relocate.yaml for real servers, run the CLI, seed a source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner

from relocate.cli import app


def make_config(path: Path, *, endpoint: str, sshd: Any, root: str, buckets: list[dict] | None = None,
                parameters: list[dict] | None = None, secrets: list[dict] | None = None,
                pin: bool = True, known_hosts: Path | None = None, provider: str | None = None,
                extra_app: dict | None = None) -> Path:
    ssh: dict[str, Any] = {"host": sshd.host, "port": sshd.port, "user": sshd.user, "identity_file": str(sshd.identity_file)}
    if pin:
        ssh["host_key"] = sshd.host_key_fingerprint
    ssh["known_hosts"] = str(known_hosts or path.parent / "known_hosts")
    doc: dict[str, Any] = {
        "version": 1,
        "app": {"name": "townsquare", **(extra_app or {})},
        "source": {"aws": {"region": "us-east-1", "endpoint_url": endpoint}},
        "target": {"ssh": ssh, "root": root},
        "snapshot": {"dir": str(path.parent / "snapshots"), "key_file": str(path.parent / "age.key")},
    }
    if provider:
        doc["target"]["provider"] = provider
    if buckets:
        doc["source"]["s3"] = buckets
    if parameters:
        doc["source"]["parameters"] = parameters
    if secrets:
        doc["source"]["secrets"] = secrets
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        doc = json.loads(self.stdout)
        # every JSON document relocate prints carries its format (docs/json.md)
        assert isinstance(doc, dict) and doc.get("format_version") == 1, f"no format_version: {self.stdout[:200]}"
        return doc


def cli(*args: str, env: dict[str, str] | None = None) -> Run:
    """Run the CLI in-process the way a user does (Typer's CliRunner, through main())."""
    from relocate.cli import main

    runner = CliRunner()
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        result = runner.invoke(_Main(main), list(args), catch_exceptions=False)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Run(result.exit_code, result.stdout, result.stderr)


class _Main:
    """Lets CliRunner drive relocate.cli.main (error mapping included), not just the Typer app.

    click's CliRunner (typer's insists on a real Typer instance) calls `.main(args=...)`."""

    name = "relocate"

    def __init__(self, main) -> None:
        self._fn = main

    def main(self, args=None, prog_name=None, **kw):  # CliRunner calls cli.main(args=..., prog_name=...)
        return self._fn(list(args) if args is not None else None)


def one_line_error(run: Run, code: int = 2) -> str:
    """The CLI failed with `code`, printing exactly one line (progress lines aside) and no
    traceback or internal error; return that line."""
    assert run.exit_code == code, (run.exit_code, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout and "internal error" not in run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip() and not ln.startswith("progress:")]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("relocate: error: "), lines[0]
    return lines[0]


def s3_endpoint(s3_server: Any, moto: str, monkeypatch: Any) -> str | None:
    """relocate.yaml's source.aws.endpoint_url for the parametrized S3 server: moto's own
    URL, or, with SeaweedFS, none: boto3's per-service endpoint variables then route S3 to
    SeaweedFS and the rest (SSM, Secrets Manager) to moto, which accepts any credentials,
    so SeaweedFS's serve both."""
    if s3_server.name == "moto":
        return moto
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
    return None


def subprocess_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None,
                   timeout: float = 300) -> Run:
    """The installed `relocate` as a real process."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "relocate", *args], cwd=cwd, env=full_env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr)


# relocate's entry point in a fresh interpreter: its exit code, its stdout, and which of
# the modules named in argv[1] (comma-separated) it imported; argv[2] is code run first,
# which may fill `seen` (reported too).
_FRESH = """
import contextlib, io, json, sys
watch = sys.argv.pop(1).split(",")
seen = {}
exec(sys.argv.pop(1))
from relocate.cli import main
out = io.StringIO()
code = 0
try:
    with contextlib.redirect_stdout(out):
        main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({**seen, "code": code, "out": out.getvalue(), "loaded": [m for m in watch if m in sys.modules]}))
"""


def fresh_cli(*args: str, watch: tuple[str, ...], prelude: str = "", cwd: Path | None = None,
              timeout: float = 120) -> dict[str, Any]:
    """Run relocate as a user does, in a new interpreter, reporting which of `watch` it
    imported; `prelude` runs before relocate.cli is imported (to count calls into `seen`)."""
    proc = subprocess.run([sys.executable, "-c", _FRESH, ",".join(watch), prelude, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])

def aws_client(service: str, endpoint: str, **kw: Any) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=kw.get("key", "testing"), aws_secret_access_key=kw.get("secret", "testing"))


_ = app


def stop_app(root: Path, service: str = "townsquare") -> None:
    """Stop what the `command` runtime started under `root` (its process group), if anything."""
    pidfile = root / "shared" / "run" / f"{service}.pid"
    if pidfile.exists():
        try:
            os.killpg(int(pidfile.read_text()), 9)  # test clean-up: no app may outlive its test
        except (ProcessLookupError, ValueError):
            pass


def page_cached(path: Path) -> int:
    """Bytes of the file in the page cache (util-linux fincore: mincore(2) on a mapping of it)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip())


def needs_page_cache(where: Path) -> None:
    """Fail (never skip) when files written under `where` are not cached at all (tmpfs):
    a test of what relocate lets go of from the page cache means nothing there."""
    control = where / "page-cache-control"
    control.write_bytes(os.urandom(16 << 20))
    cached = page_cached(control)
    control.unlink()
    if cached < 8 << 20:
        pytest.fail(f"{where} keeps no page cache (tmpfs?): this test needs a disk file system")


def feed_at_network_pace(proc: subprocess.Popen[bytes], data: bytes, chunk: int = 1 << 20, pause: float = 0.02) -> tuple[bytes, bytes]:
    """Write `data` to proc's stdin a chunk at a time (1 MiB per 20 ms: a network's pace,
    not a pipe's), then wait for it; (stdout, stderr)."""
    assert proc.stdin is not None
    for at in range(0, len(data), chunk):
        proc.stdin.write(data[at:at + chunk])
        proc.stdin.flush()
        time.sleep(pause)
    return proc.communicate(timeout=120)
