#!/usr/bin/env python3
"""`relocate plan --shards 16` over a million objects (issue 16): under a minute, plan.json
under 1 MiB.

Starts SeaweedFS and an sshd (tests/servers.py), fills a bucket with `--objects` tiny
objects (keys spread over 1,000 "directories", as an app's uploads are, so the listing
fans out by common prefix), then times `relocate plan --shards N -o plan.json` and
prints the wall time, CPU, peak RSS, the plan file's size and the shards' balance.
Seeding a million objects through S3 PUTs takes about two hours on a 2-core machine
(~140-250 objects/s); it is not part of the figure.

`--inventory` seeds nothing: it writes an S3 Inventory report of `--objects` rows as AWS
does (manifest.json naming gzip CSV data files, fields quoted, keys URL-encoded; sizes
from 1 byte to 8 KiB, one in a thousand up to 4 MiB, ~6 GB in all), uploads it to a second
bucket and plans the (empty) bucket with `inventory:` pointing at it. `plan` reads only
the report (plus the bucket's location and versioning): no listing, no HEAD per object.
A worker lists its range live, so `--worker` needs the real objects (no `--inventory`).

    python bench/bench_plan_shards.py --inventory           # 1,000,000 objects, 16 shards
    python bench/bench_plan_shards.py                       # the same, seeded as real objects
    python bench/bench_plan_shards.py --objects 60000 --shards 1 --worker

Measured (2-core machine shared with other helpers, 2026-12-04):
- `--inventory`, 1,000,000 objects, 16 shards (two runs): 18.5-22.8 s wall, 17.3-22.4 s
  CPU, peak RSS 443 MiB, plan.json 7.6 KiB; shards hold 366..75,262 objects and
  294..737 MiB (cut on bytes share plus count share). With the machine loaded (load average ~9) the same plan took 58 s wall,
  20.3 s CPU. The report's reading (gzip, CSV, URL-decoding, sort) and the partition
  are most of the CPU; the source fingerprint was hashed twice and is now hashed once.
- `--objects 60000 --shards 1 --worker` (60,000 real tiny objects, one shard): plan
  15.9 s wall, 4.2 s CPU, 106 MiB; the worker listed, compared and moved all 60,000
  over SSH in 109 s wall, 27 s CPU, peak RSS 130 MiB (goal: under 256 MiB). The worker
  streams its range (ListObjectsV2 pages, 10,000-key chunks), never the whole shard:
  the same run with 15,000 objects peaked at 121 MiB (19 s wall, 7 s CPU), so 4x the
  keys cost +9 MiB.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote_plus

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def run(argv: list[str], env: dict[str, str]) -> tuple[int, int, str, float]:
    """(exit status, peak RSS in KiB of that one process, its output, its CPU seconds)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, env=env, stdout=err, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return (proc.returncode, usage.ru_maxrss, err.read().decode(errors="replace"),
                usage.ru_utime + usage.ru_stime)


def key_of(i: int) -> str:
    """Object i's key: 1,000 "directories", as an app's uploads are."""
    return f"u/{i % 1000:03d}/{i:07d}.jpg"


def upload_inventory(s3: object, bucket: str, inv_bucket: str, n: int, per_file: int = 250_000) -> str:
    """An S3 Inventory report of `n` objects of `bucket`, as AWS writes it: gzip CSV data
    files (every field quoted, keys URL-encoded, no header) named by a manifest.json whose
    fileSchema gives the columns. Returns the manifest's s3:// URL."""
    base = f"{bucket}/daily/2026-12-04T00-00Z"
    schema = "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass, IsLatest"
    files = []
    for f, start in enumerate(range(0, n, per_file)):
        text = io.StringIO()
        out = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for i in range(start, min(n, start + per_file)):
            # most small (1 byte to 8 KiB), one in a thousand up to 4 MiB: about 6 GB in all, so the
            # plan's disk check passes on a small machine
            size = 1 + (i * 7919) % (4 << 20) if i % 1000 == 0 else 1 + (i * 31) % 8192
            out.writerow([bucket, quote_plus(key_of(i)), size, "2026-11-30T12:00:00.000Z",
                          f"{i:032x}", "STANDARD", "true"])
        body = gzip.compress(text.getvalue().encode(), compresslevel=6)
        key = f"{base}/data/{f:04d}.csv.gz"
        s3.put_object(Bucket=inv_bucket, Key=key, Body=body)  # type: ignore[attr-defined]
        files.append({"key": key, "size": len(body), "MD5checksum": ""})
    manifest = {"sourceBucket": bucket, "destinationBucket": f"arn:aws:s3:::{inv_bucket}", "version": "2016-11-30",
                "creationTimestamp": "1733270400000", "fileFormat": "CSV", "fileSchema": schema, "files": files}
    s3.put_object(Bucket=inv_bucket, Key=f"{base}/manifest.json", Body=json.dumps(manifest).encode())  # type: ignore[attr-defined]
    return f"s3://{inv_bucket}/{base}/manifest.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--threads", type=int, default=32, help="seeding PUTs in parallel")
    ap.add_argument("--worker", action="store_true", help="then run shard 0's worker and report its peak RSS")
    ap.add_argument("--inventory", action="store_true",
                    help="plan from an S3 Inventory report of --objects rows (uploaded, not seeded as objects)")
    args = ap.parse_args()

    import servers
    from helpers import make_config

    work = Path(tempfile.mkdtemp(prefix="relocate-bench-shards-"))
    weed = servers.start_seaweedfs(work / "weed")
    sshd = servers.start_sshd(work / "sshd")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": weed.access_key, "AWS_SECRET_ACCESS_KEY": weed.secret_key,
           "HOME": str(work / "home")}
    s3 = servers.s3_client(weed.endpoint_url, weed.access_key, weed.secret_key)
    try:
        bucket = "plan-shards"
        s3.create_bucket(Bucket=bucket)
        entry = {"bucket": bucket, "to": "data"}
        t0 = time.monotonic()
        if args.inventory:
            s3.create_bucket(Bucket="plan-shards-inventory")
            entry["inventory"] = upload_inventory(s3, bucket, "plan-shards-inventory", args.objects)
            print(f"inventory report of {args.objects:,} objects written and uploaded in {time.monotonic() - t0:.0f}s",
                  flush=True)
        put = lambda i: s3.put_object(Bucket=bucket, Key=key_of(i), Body=b"x" * (1 + i % 97))
        with ThreadPoolExecutor(args.threads) as pool:
            for start in range(0, 0 if args.inventory else args.objects, 20_000):  # a block at a time: no million futures held
                list(pool.map(put, range(start, min(args.objects, start + 20_000))))
                if start and start % 100_000 == 0 or args.objects <= 300_000:
                    print(f"  seeded {start:,} in {time.monotonic() - t0:.0f}s", flush=True)
        if not args.inventory:
            print(f"seeded {args.objects:,} objects in {time.monotonic() - t0:.0f}s", flush=True)
        cfg = make_config(work / "relocate.yaml", endpoint=weed.endpoint_url, sshd=sshd, root=str(sshd.root / "t"),
                          buckets=[entry])
        plan = work / "plan.json"
        t0 = time.monotonic()
        code, rss, err, cpu = run([sys.executable, "-m", "relocate", "plan", "-f", str(cfg), "--shards",
                                   str(args.shards), "-o", str(plan)], env)
        wall = time.monotonic() - t0
        if code != 0:
            raise SystemExit(f"plan failed ({code}): {err[-2000:]}")
        doc = json.loads(plan.read_text())
        ranges = next(iter(doc["shards"]["steps"].values()))
        counts = [r["objects"] for r in ranges]
        sizes = [r["bytes"] / 2**20 for r in ranges]
        print(f"plan --shards {args.shards} over {args.objects:,} objects: {wall:.1f} s wall, plan.json "
              f"{plan.stat().st_size / 1024:.1f} KiB; objects per shard {min(counts):,}..{max(counts):,}, "
              f"MiB per shard {min(sizes):,.0f}..{max(sizes):,.0f}")
        print(f"plan's CPU {cpu:.1f} s, peak RSS {rss / 1024:.0f} MiB")
        print("goal: under 60 s, under 1024 KiB:", "met" if wall < 60 and plan.stat().st_size < 1 << 20 else "NOT met")
        if args.worker:
            t0 = time.monotonic()
            code, rss, err, cpu = run([sys.executable, "-m", "relocate", "move", str(plan), "--shard", "0", "--yes"], env)
            print(f"worker of shard 0 ({counts[0]:,} objects): exit {code}, {time.monotonic() - t0:.0f} s, "
                  f"CPU {cpu:.0f} s, peak RSS {rss / 1024:.0f} MiB (goal: under 256 MiB)" + ("" if code == 0 else f"\n{err[-1500:]}"))
    finally:
        weed.stop()
        sshd.stop()


if __name__ == "__main__":
    main()
