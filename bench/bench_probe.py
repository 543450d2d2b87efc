#!/usr/bin/env python3
"""How close `relocate plan --probe` gets to the move it predicts (issue 15 item 15).

Starts SeaweedFS and an sshd (tests/servers.py), puts a corpus in a bucket, then on the
same machine, `--rounds` times: `relocate plan --probe --json` (its estimate_range for the
whole plan) and `relocate move --yes` into a fresh root (wall time). Prints each round's
range, the move's time and where it fell: the goal is a move within 1.5x of the range
(low / 1.5 <= move <= high * 1.5), and inside it most of the time.

    python bench/bench_probe.py                         # tiny (10,000 x 4 KiB) and mixed
    python bench/bench_probe.py --corpus tiny --scale 0.3 --rounds 2

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
KiB, MiB = 1024, 1024 * 1024


def corpus(name: str, scale: float) -> list[tuple[str, int]]:
    if name == "tiny":  # per-object cost decides
        return [(f"t/{i // 500:03d}/note-{i:05d}.txt", 4 * KiB) for i in range(int(10000 * scale))]
    if name == "mixed":  # small files and photos, as an app's uploads look
        return ([(f"m/{i:05d}.json", 2 * KiB) for i in range(int(4000 * scale))]
                + [(f"p/{i:05d}.jpg", 256 * KiB) for i in range(int(1000 * scale))]
                + [(f"v/{i:03d}.mp4", 24 * MiB) for i in range(max(1, int(4 * scale)))])
    raise SystemExit(f"unknown corpus {name!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="tiny,mixed")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    import servers
    from helpers import make_config
    from bench_transfer import aws_env

    work = Path(tempfile.mkdtemp(prefix="relocate-bench-probe-"))
    weed = servers.start_seaweedfs(work / "weed")
    sshd = servers.start_sshd(work / "sshd")
    env = {**aws_env(weed), "RELOCATE_AGE_IDENTITY": ""}
    s3 = servers.s3_client(weed.endpoint_url, weed.access_key, weed.secret_key)
    results = []
    try:
        for name in args.corpus.split(","):
            spec = corpus(name, args.scale)
            bucket = f"probe-{name}-{os.getpid()}"
            s3.create_bucket(Bucket=bucket)
            blob = os.urandom(24 * MiB)
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda ks: s3.put_object(Bucket=bucket, Key=ks[0], Body=blob[:ks[1]]), spec))
            total = sum(s for _, s in spec)
            print(f"== {name}: {len(spec)} objects, {total / MiB:.1f} MiB", flush=True)
            for r in range(args.rounds):
                root = sshd.root / f"probe-{name}-{r}"
                cfg = make_config(work / f"relocate-{name}-{r}.yaml", endpoint=weed.endpoint_url, sshd=sshd,
                                  root=str(root), buckets=[{"bucket": bucket, "to": "data"}])
                shutil.rmtree(work / "snapshots", ignore_errors=True)
                t0 = time.monotonic()
                plan = subprocess.run([sys.executable, "-m", "relocate", "plan", "-f", str(cfg), "--probe", "--json"],
                                      env=env, capture_output=True, text=True)
                probe_s = time.monotonic() - t0
                if plan.returncode != 0:
                    raise SystemExit(plan.stderr)
                doc = json.loads(plan.stdout)
                rng, basis = doc["estimate_range"], doc["estimate_basis"]
                t0 = time.monotonic()
                move = subprocess.run([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes"],
                                      env=env, capture_output=True, text=True)
                move_s = time.monotonic() - t0
                if move.returncode != 0:
                    raise SystemExit(move.stderr[-2000:])
                low, high = rng["low_s"], rng["high_s"]
                inside = low <= move_s <= high
                within = low / 1.5 <= move_s <= high * 1.5
                off = move_s / high if move_s > high else (low / move_s if move_s < low else 1.0)
                print(f"  round {r + 1}: probe {probe_s:.1f}s -> estimate {low:.1f}-{high:.1f}s; move {move_s:.1f}s; "
                      f"{'inside' if inside else f'outside by {off:.2f}x'}; within 1.5x: {within}\n    {basis}", flush=True)
                results.append({"corpus": name, "objects": len(spec), "bytes": total, "low_s": low, "high_s": high,
                                "move_s": round(move_s, 1), "probe_s": round(probe_s, 1), "inside": inside,
                                "within_1_5x": within})
                subprocess.run(["rm", "-rf", str(root)], check=False)
    finally:
        sshd.stop()
        weed.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
