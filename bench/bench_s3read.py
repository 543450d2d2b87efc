#!/usr/bin/env python3
"""S3 read only: rclone copy vs relocate's read leg, run alternately, medians reported.

Single runs mean little on a shared 2-core box (SeaweedFS, rclone and relocate share
the CPU), so this starts SeaweedFS once, seeds the corpora once, then runs every
variant in turn, round after round, and prints each one's median wall time and peak RSS.

    python bench/bench_s3read.py serve --state /tmp/s3read.json   # keep SeaweedFS up (Ctrl-C stops)
    python bench/bench_s3read.py run --state /tmp/s3read.json --rounds 5 --variants rclone,relocate
    python bench/bench_s3read.py all --rounds 5                    # both in one go

Each line also gives the child's own CPU seconds (user+sys), steadier than wall time here.

Variants: rclone (`rclone copy --transfers N --checkers N`, N relocate's default --transfers); relocate
(bench_transfer.py's leg_s3read: ObjectReader.get_many, 4 lanes, small bodies on
relocate's own keep-alive sockets); curl (the same with RELOCATE_S3_GETS=curl: small
bodies on one libcurl multi handle, the default before 2026-12-05); obstore (the same
with RELOCATE_S3_GETS=threads: small bodies by obstore on a thread pool, as before
sources/s3gets.py); lanesN (relocate with N lanes);
threads (the first leg: a 16-thread pool calling ObjectReader.get).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
BIN = Path(sys.executable).parent


def seed(weed, work: Path, corpora: list[str], scale: float) -> dict[str, str]:
    import bench_transfer as bt

    buckets = {}
    for name in corpora:
        src = work / f"corpus-{name}"
        bt.drop(src)
        bt.write_corpus(src, bt.corpus_spec(name, scale))
        bucket = f"s3read-{name}-{os.getpid()}"
        env = bt.rclone_env(weed)
        subprocess.run([str(BIN / "rclone"), "mkdir", f"src:{bucket}"], env=env, check=True)
        subprocess.run([str(BIN / "rclone"), "copy", str(src), f"src:{bucket}", "--transfers", "16", "--s3-upload-concurrency", "8"],
                       env=env, check=True)
        buckets[name] = str(src)
        buckets[name + ":bucket"] = bucket
    return buckets


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.monotonic() - t0
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {argv}\n{out[-2000:]}")
    return dt, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, out.strip()


def run(state: dict, rounds: int, variants: list[str], corpora: list[str], transfers: int, check: bool) -> None:
    import bench_transfer as bt

    class W:  # what rclone_env/aws_env need
        endpoint_url = state["endpoint"]
        access_key = state["access_key"]
        secret_key = state["secret_key"]

    renv, aenv = bt.rclone_env(W), bt.aws_env(W)
    work = Path(state["work"])
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for rnd in range(rounds):
        for name in corpora:
            bucket = state["buckets"][name + ":bucket"]
            order = variants if rnd % 2 == 0 else variants[::-1]  # neither always goes first
            for v in order:
                out = work / f"dl-{v}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                subprocess.run(["sync"])
                if v == "rclone":
                    argv = [str(BIN / "rclone"), "copy", f"src:{bucket}", str(out), "--transfers", str(transfers),
                            "--checkers", str(transfers)]
                    env = renv
                else:
                    argv = [sys.executable, str(HERE / "bench_transfer.py"), "--leg", "s3read", "--endpoint",
                            state["endpoint"], "--bucket", bucket, "--out", str(out), "--transfers", str(transfers),
                            "--lanes", "4"]
                    env = {**aenv, "BENCH_S3READ": v}
                    if v == "obstore":
                        env["RELOCATE_S3_GETS"] = "threads"
                    if v == "curl":
                        env["RELOCATE_S3_GETS"] = "curl"
                    if v.startswith("lanes"):  # lanesN: get_many with N consumers
                        argv += ["--lanes", v[5:]]
                dt, rss, cpu, msg = timed(argv, env)
                results.setdefault((name, v), []).append((dt, rss, cpu))
                print(f"round {rnd} {name:<6} {v:<11} {dt:6.2f} s  cpu {cpu:5.2f} s  rss {rss:6.1f} MiB  "
                      f"{msg.splitlines()[-1] if msg else ''}",
                      flush=True)
                if check and v != "rclone" and bt.tree_digest(out) != bt.tree_digest(Path(state["buckets"][name])):
                    raise SystemExit(f"{v}: the download differs from the corpus")
                shutil.rmtree(out, ignore_errors=True)
    print("\nmedians:")
    for name in corpora:
        base = statistics.median(t for t, _, _ in results[(name, "rclone")]) if (name, "rclone") in results else None
        for v in variants:
            ts = [t for t, _, _ in results[(name, v)]]
            med = statistics.median(ts)
            ratio = f"  {med / base:5.2f}x rclone" if base else ""
            print(f"  {name:<6} {v:<11} median {med:6.2f} s  (min {min(ts):.2f}, max {max(ts):.2f}, n={len(ts)})  "
                  f"cpu {statistics.median(c for _, _, c in results[(name, v)]):5.2f} s  "
                  f"peak RSS {max(r for _, r, _ in results[(name, v)]):6.1f} MiB{ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["serve", "run", "all"])
    ap.add_argument("--state", default=None)
    ap.add_argument("--corpus", default="media,tiny")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variants", default="rclone,relocate")
    from relocate.settings import TRANSFERS

    ap.add_argument("--transfers", type=int, default=TRANSFERS, help="rclone's and relocate's alike (relocate's default)")
    ap.add_argument("--check", action="store_true", help="compare every relocate download with the corpus")
    args = ap.parse_args()
    corpora = args.corpus.split(",")
    variants = args.variants.split(",")
    if args.mode == "run":
        state = json.loads(Path(args.state).read_text())
        return run(state, args.rounds, variants, corpora, args.transfers, args.check)

    import servers

    work = Path(tempfile.mkdtemp(prefix="relocate-s3read-"))
    weed = servers.start_seaweedfs(work / "weed")
    try:
        state = {"endpoint": weed.endpoint_url, "access_key": weed.access_key, "secret_key": weed.secret_key,
                 "work": str(work), "buckets": seed(weed, work, corpora, args.scale)}
        if args.mode == "all":
            run(state, args.rounds, variants, corpora, args.transfers, args.check)
            return
        Path(args.state).write_text(json.dumps(state))
        print(f"serving {weed.endpoint_url}; state in {args.state}", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        weed.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
