"""`move --json`'s NDJSON events mean what docs/json.md says, on real servers (moto S3,
a real sshd): `bytes` grow as bodies stream, `objects` and `item` events only a whole
batch at a time, once the target has answered it and it is journalled."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from helpers import aws_client, cli, make_config

BIG = 12 * 1024 * 1024  # streamed chunk by chunk (bodies over 8 MiB), so its bytes count before its batch lands


def test_progress_counts_bytes_as_they_stream_and_objects_per_journalled_batch(tmp_path: Path, moto: str,
                                                                               sshd: Any) -> None:
    s3 = aws_client("s3", moto)
    bucket = f"pe-{secrets.token_hex(3)}"
    s3.create_bucket(Bucket=bucket)
    sizes = {"big.bin": BIG, **{f"s/{i}.txt": 1000 + i for i in range(7)}}  # 8 objects: 4 batches of 2
    for key, size in sizes.items():
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size)
    root = sshd.root / f"pe-{tmp_path.name}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data"}])
    # 4 MB/s for 12 MiB: about 3 s, so progress events come while the big batch streams
    run = cli("move", "-f", str(cfg), "--yes", "--json", "--bwlimit", "4M", "--lanes", "1",
              env={"RELOCATE_BATCH_OBJECTS": "2"})
    assert run.exit_code == 0, run.stdout + run.stderr
    events = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    total = sum(sizes.values())

    items_before = 0
    seen: list[dict[str, Any]] = []
    for e in events:
        if e["event"] == "item":
            items_before += 1
        elif e["event"] == "progress":
            # `objects` is exactly what the item events have named so far: whole batches only
            assert e["objects"] == items_before, (e, items_before)
            assert e["objects"] % 2 == 0, e  # batches of 2, never a file as it lands
            assert e["total_objects"] == len(sizes) and e["total_bytes"] == total, e
            seen.append(e)
    items = [e for e in events if e["event"] == "item"]
    assert sorted(e["key"] for e in items) == sorted(sizes)
    assert all(e["size"] == sizes[e["key"]] and len(e["sha256"]) == 64 for e in items)
    # bytes ran ahead of the objects counted: counted as they streamed, before any batch was answered
    assert any(e["objects"] == 0 and e["bytes"] > 0 for e in seen), seen
    assert seen[-1]["objects"] == len(sizes) and seen[-1]["bytes"] == total, seen[-1]
    assert all(e["rate"] >= 0 for e in seen)


def test_a_move_whose_stderr_reader_went_away_still_ends_whole(tmp_path: Path, moto: str, sshd: Any) -> None:
    """`relocate move --json 2>&1 >out.json | head -c 100`: the events on stderr lose their
    reader after 100 bytes. The move still runs to its end (every object, its JSON on
    stdout, exit 0), instead of dying with exit 1 and a half-done target."""
    import os
    import subprocess
    import sys

    s3 = aws_client("s3", moto)
    bucket = f"pe-{secrets.token_hex(3)}"
    s3.create_bucket(Bucket=bucket)
    for i in range(12):
        s3.put_object(Bucket=bucket, Key=f"k/{i}.txt", Body=b"y" * (500 + i))
    root = sshd.root / f"pe-{tmp_path.name}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data"}])
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read the events: the first write meets EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", "--json"],
                              stdout=subprocess.PIPE, stderr=write_end, text=True, timeout=300,
                              env={**os.environ, "RELOCATE_BATCH_OBJECTS": "3"})
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["result"]["objects_sent"] == 12 and doc["result"]["verify"]["ok"] is True
    assert sorted(p.name for p in (root / "data" / "k").iterdir()) == sorted(f"{i}.txt" for i in range(12))
