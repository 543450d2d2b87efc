"""S3 throttling (503 SlowDown) and 5xx (500 InternalError) on listings and object
reads are retried with backoff; the move completes byte-exact. Only when the source
keeps failing does relocate stop, with exit 5 and 'running again resumes'."""

from __future__ import annotations

import hashlib
from pathlib import Path

from helpers import aws_client, cli, make_config
from httpfaults import HttpFaults


def _seed(moto: str, n: int) -> dict[str, bytes]:
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="busy")
    objects = {f"o/{i:03d}.bin": hashlib.sha256(str(i).encode()).digest() * 64 for i in range(n)}
    for key, body in objects.items():
        s3.put_object(Bucket="busy", Key=key, Body=body)
    return objects


def _upstream(moto: str) -> tuple[str, int]:
    host, port = moto.split("//")[1].split(":")
    return host, int(port)


def test_throttling_and_5xx_are_retried(moto: str, sshd, tmp_path: Path) -> None:
    objects = _seed(moto, 30)
    state = {"list": 0, "get": 0}

    def pick(method: str, path: str) -> int | None:
        if method == "GET" and (path.startswith("/busy?") or path == "/busy"):
            state["list"] += 1
            return 503 if state["list"] <= 2 else None  # the listing is throttled twice
        if method == "GET" and path.startswith("/busy/o/"):
            state["get"] += 1
            if state["get"] in (1, 3, 5):
                return 503
            if state["get"] in (2, 7):
                return 500
        return None

    proxy = HttpFaults(_upstream(moto), pick)
    try:
        root = sshd.root / f"s3faults-{tmp_path.name[-12:]}"
        cfg = make_config(tmp_path / "relocate.yaml", endpoint=proxy.endpoint_url, sshd=sshd, root=str(root),
                          buckets=[{"bucket": "busy", "to": "data"}])
        run = cli("move", "-f", str(cfg), "--yes", "--json", env={"RELOCATE_RETRY_BACKOFF": "0.1"})
    finally:
        proxy.close()
    assert run.exit_code == 0, run.stderr
    statuses = sorted(s for _, _, s in proxy.injected)
    assert statuses.count(503) >= 4 and statuses.count(500) >= 1, proxy.injected
    got = {str(p.relative_to(root / "data")): p.read_bytes() for p in (root / "data").rglob("*") if p.is_file()}
    assert got == objects
    assert run.json()["result"]["verify"]["ok"]


def test_a_source_that_keeps_failing_stops_with_exit_5(moto: str, sshd, tmp_path: Path) -> None:
    _seed(moto, 3)
    proxy = HttpFaults(_upstream(moto), lambda method, path: 503 if method == "GET" and path.startswith("/busy/o/") else None)
    try:
        root = sshd.root / f"s3down-{tmp_path.name[-12:]}"
        cfg = make_config(tmp_path / "relocate.yaml", endpoint=proxy.endpoint_url, sshd=sshd, root=str(root),
                          buckets=[{"bucket": "busy", "to": "data"}])
        run = cli("move", "-f", str(cfg), "--yes",
                  env={"RELOCATE_RETRY_BACKOFF": "0.05", "RELOCATE_RETRY_ATTEMPTS": "2"})
    finally:
        proxy.close()
    assert run.exit_code == 5, (run.exit_code, run.stderr)
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("relocate: error")]
    assert len(lines) == 1 and "running again resumes" in lines[0], run.stderr
    assert "Traceback" not in run.stderr
    # nothing half-written in place
    assert not (root / "data").exists() or not any(p.is_file() for p in (root / "data").rglob("*"))
