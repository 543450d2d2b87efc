"""`verify` after a failed deploy, on a real sshd with the `command` runtime: the failed
move's snapshot makes `verify` exit 4 while it is the latest; once `deploy.release` is
back to the content of the release rolled back to, a move that finds nothing to do
writes a fresh snapshot (README, "Snapshots, resume and idempotence"; docs/deploy.md),
and `verify` exits 0 from then on. Also: `move --json`'s progress totals count the
objects' bytes only, not the release's (docs/json.md)."""

from __future__ import annotations

import json
import secrets
import textwrap
from pathlib import Path
from typing import Any

import yaml

import servers
from helpers import aws_client, cli, make_config, stop_app

APP = textwrap.dedent('''
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"v2")
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
''')
CRASHES = 'import sys\nprint("boom", file=sys.stderr)\nsys.exit(3)\n'
BODIES = {"a.bin": b"a" * 3000, "b/c.bin": b"c" * 5000}


def _snapshots(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "snapshots").iterdir() if p.is_dir() and not p.name.endswith(".partial"))


def test_verify_passes_again_once_a_nothing_to_do_move_follows_a_rolled_back_release(tmp_path: Path, moto: str,
                                                                                    sshd: Any) -> None:
    s3 = aws_client("s3", moto)
    bucket = f"vf-{secrets.token_hex(3)}"
    s3.create_bucket(Bucket=bucket)
    for key, body in BODIES.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    port = servers.free_port()
    root = sshd.root / f"vf-{tmp_path.name}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data/media"}])
    doc = yaml.safe_load(cfg.read_text())
    doc["deploy"] = {"runtime": "command", "release": "./build", "command": f"exec python3 app.py {port}",
                     "health": {"url": f"http://127.0.0.1:{port}/healthz", "timeout_s": 6}}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    build = tmp_path / "build"
    build.mkdir()
    (build / "app.py").write_text(APP)
    try:
        # 1. v2 deployed with the data; progress totals are the objects' own
        first = cli("move", "-f", str(cfg), "--yes", "--json")
        assert first.exit_code == 0, first.stdout + first.stderr
        good = first.json()["result"]["release"]
        events = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
        progress = [e for e in events if e["event"] == "progress"]
        objects_bytes = sum(len(b) for b in BODIES.values())
        assert progress and all(e["total_bytes"] == objects_bytes for e in progress), progress
        assert progress[-1]["bytes"] == objects_bytes and progress[-1]["objects"] == progress[-1]["total_objects"] == 2
        # the plan's own total also holds the release: progress must not count against it
        assert first.json()["plan"]["totals"]["todo_bytes"] > objects_bytes

        # 2. a release that crashes: rolled back to v2, exit 4; verify reports the failure
        (build / "app.py").write_text(CRASHES)
        failed = cli("move", "-f", str(cfg), "--yes")
        assert failed.exit_code == 4, failed.stdout + failed.stderr
        assert f"rolled back to {good}: answering again" in failed.stdout, failed.stdout
        after_failure = _snapshots(tmp_path)
        bad = cli("verify", "-f", str(cfg))
        assert bad.exit_code == 4 and "BAD deploy" in bad.stdout, bad.stdout + bad.stderr

        # 3. ./build back to v2's content: nothing to do, but a fresh snapshot replaces the
        # failed move's and is verified; `verify` passes from then on
        (build / "app.py").write_text(APP)
        back = cli("move", "-f", str(cfg), "--yes", "--json")
        assert back.exit_code == 0, back.stdout + back.stderr
        result = back.json()["result"]
        assert result["nothing_to_do"] and result["objects_sent"] == 0 and "deploy" in result["unchanged"], result
        assert result["snapshot"] and result["verify"]["ok"], result
        fresh = _snapshots(tmp_path)
        assert len(fresh) == len(after_failure) + 1 and Path(result["snapshot"]).name == fresh[-1]
        ok = cli("verify", "-f", str(cfg))
        assert ok.exit_code == 0, ok.stdout + ok.stderr
        assert f"ok  deploy {good}" in ok.stdout, ok.stdout

        # 4. and the next nothing-to-do move is the usual one: no snapshot at all
        text = cli("move", "-f", str(cfg), "--yes")
        assert text.exit_code == 0 and "nothing to do" in text.stdout and "no new snapshot" in text.stdout, text.stdout
        assert _snapshots(tmp_path) == fresh
        assert cli("verify", "-f", str(cfg)).exit_code == 0
    finally:
        stop_app(root)
