#!/usr/bin/env python3
"""Sharded moves (issue 16): does adding workers add throughput, and how many workers does a
70 TB / 100 million-object move need for 24 hours?

On a 2-core machine every worker shares the CPU, so each worker's own network link is
emulated with `--bwlimit B` (move's token bucket over all its lanes). For N = 1, 2, 4 (one
SeaweedFS corpus, one sshd target; both from tests/servers.py):

  plan     `relocate plan --shards N -o plan.json`: the listing and partitioning, timed
  workers  N `relocate move plan.json --shard auto --yes --json --bwlimit B` processes at once,
           each told only RELOCATE_SHARD; the `progress` events on stderr (bytes done, at
           most once a second) timestamp each worker's data phase
  report   the aggregate rate while all N move at once against the goal 0.9 x N x B; the
           same from the first bytes of any to the last of all (start-up skew counts) and
           over the whole wall time; each shard's overhead, from its start to its first
           bytes (start-up, the drift check's listing, SSH connect, its range's first
           listing chunk); the planning time

Each N gets a corpus of its own, N x --per-worker objects, so every worker moves as much.

Then one worker moves a corpus of small objects with no limit (objects per second, CPU-bound
here), and the projection: with each worker on a link of --link bytes/s at the efficiency
measured above, and at the measured small-object rate, how long 70 TB in 100 million objects
takes with N workers, and the fewest workers that finish inside 24 hours. (`plan --shards N
--probe` shows each shard's estimate for the plan's own inventory; the 70 TB projection is
computed here.) Measuring only: it changes nothing.

    python bench/bench_shards.py                         # 60 MiB per worker, B = 2 MiB/s, N = 1,2,4
    python bench/bench_shards.py --bwlimit 4M --per-worker 480 --workers 1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "src"))

MiB = 1024 * 1024
INVENTORY_BYTES, INVENTORY_OBJECTS, DAY = 70e12, 100e6, 86400.0


@dataclass
class Worker:
    shard: int
    proc: subprocess.Popen[str]
    started: float
    progress: list[tuple[float, int]] = field(default_factory=list)  # (time, bytes done) once bytes move
    report: dict = field(default_factory=dict)
    ended: float = 0.0

    def read_events(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "progress" and int(event.get("bytes") or 0) > 0:
                self.progress.append((time.monotonic(), int(event["bytes"])))

    def bytes_at(self, t: float) -> float:
        """Bytes done at time t, interpolated between progress events."""
        for (t0, b0), (t1, b1) in zip(self.progress, self.progress[1:]):
            if t0 <= t <= t1:
                return b0 + (b1 - b0) * (t - t0) / (t1 - t0) if t1 > t0 else b1
        return float(self.progress[-1][1] if t > self.progress[-1][0] else self.progress[0][1])

    def rate(self) -> float:
        """Bytes per second between its first and last progress event."""
        (t0, b0), (t1, b1) = self.progress[0], self.progress[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def relocate(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    run = subprocess.run([sys.executable, "-m", "relocate", *args], env=env, cwd=cwd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"relocate {' '.join(args)}: exit {run.returncode}\n{run.stderr[-3000:]}")
    return run


def seed(s3, bucket: str, count: int, size: int) -> None:
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(size)
    for i in range(count):
        s3.put_object(Bucket=bucket, Key=f"media/{i % 16:02d}/{i:06d}.bin", Body=body[i % 97:] + body[:i % 97])


def run_shards(n: int, bucket: str, rate: str, work: Path, env: dict[str, str], sshd, make_config) -> dict:
    """Plan N shards, run N workers at once, return the measurements."""
    where = work / f"n{n}"
    where.mkdir()
    root = sshd.root / f"{bucket}-n{n}"
    make_config(where / "relocate.yaml", endpoint=None, sshd=sshd, root=str(root), buckets=[{"bucket": bucket, "to": "data"}])
    t0 = time.monotonic()
    relocate("plan", "-f", "relocate.yaml", "--shards", str(n), "-o", "plan.json", env=env, cwd=where)
    plan_s = time.monotonic() - t0
    workers = []
    for k in range(n):
        home = where / f"home-{k}"
        home.mkdir()
        proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "plan.json", "--shard", "auto", "--yes",
                                 "--json", "--bwlimit", rate], env={**env, "HOME": str(home), "RELOCATE_SHARD": str(k)},
                                cwd=where, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        workers.append(Worker(k, proc, time.monotonic()))
    readers = [threading.Thread(target=w.read_events, daemon=True) for w in workers]
    for t in readers:
        t.start()
    cpu = 0.0
    for w in workers:
        out = w.proc.stdout.read() if w.proc.stdout else ""
        _, status, usage = os.wait4(w.proc.pid, 0)  # its CPU, and that of the ssh it ran
        w.proc.returncode = code = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        w.ended = time.monotonic()
        if code != 0:
            raise SystemExit(f"shard {w.shard} of {n}: exit {code}\n{out[-2000:]}")
        w.report = json.loads(out)["shard"]
    for t in readers:
        t.join()
    shutil.rmtree(root, ignore_errors=True)
    total = sum(w.report["bytes_sent"] for w in workers)
    # The data phase while all N move at once: from the last worker's first progress to the
    # first worker's last, each worker's bytes in that window read off its progress line.
    moving = [w for w in workers if len(w.progress) > 1]
    lo, hi = max(w.progress[0][0] for w in moving), min(w.progress[-1][0] for w in moving)
    together = sum(w.bytes_at(hi) - w.bytes_at(lo) for w in moving) / (hi - lo) if hi > lo and len(moving) == n else 0.0
    # and over the whole data phase, first bytes of any to last bytes of all (start-up skew counts)
    first, last = min(w.progress[0][0] for w in moving), max(w.progress[-1][0] for w in moving)
    span = sum(w.progress[-1][1] - w.progress[0][1] for w in moving) / (last - first) if last > first else 0.0
    return {
        "n": n, "plan_s": plan_s, "bytes": total, "cpu_s": cpu, "together_rate": together, "together_s": max(0.0, hi - lo),
        "data_rate": span,
        "wall_rate": total / (max(w.ended for w in workers) - min(w.started for w in workers)),
        "overhead_s": [round(w.progress[0][0] - w.started, 1) if w.progress else None for w in workers],
        "per_worker": [w.rate() for w in moving],
    }


def one_worker(where: Path, env: dict[str, str], *extra: str) -> tuple[float, float, dict]:
    """(CPU seconds of the worker and its ssh, wall seconds, its report) of `move plan.json --shard 0`."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "plan.json", "--shard", "0", "--yes", "--json", *extra],
                            env={**env, "HOME": str(where)}, cwd=where, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"one worker: exit {proc.returncode}: {out[-2000:]}")
    return usage.ru_utime + usage.ru_stime, time.monotonic() - t0, json.loads(out)["shard"]


def cpu_per_gib(bucket: str, work: Path, env: dict[str, str], sshd, make_config) -> tuple[float, float]:
    """(CPU seconds per GiB moved, MiB/s) of one worker with no limit: its CPU for the whole
    shard minus its CPU for the same shard again (nothing to do: start-up, listing, checks)."""
    where = work / "cpu"
    where.mkdir()
    root = sshd.root / f"{bucket}-cpu"
    make_config(where / "relocate.yaml", endpoint=None, sshd=sshd, root=str(root), buckets=[{"bucket": bucket, "to": "data"}])
    relocate("plan", "-f", "relocate.yaml", "--shards", "1", "-o", "plan.json", env=env, cwd=where)
    full, wall, report = one_worker(where, env)
    again, _, rerun = one_worker(where, env)
    shutil.rmtree(root, ignore_errors=True)
    assert rerun["objects_sent"] == 0, rerun
    return (full - again) / (report["bytes_sent"] / 1024 ** 3), report["bytes_sent"] / MiB / wall


def small_object_rate(bucket: str, work: Path, env: dict[str, str], sshd, make_config) -> float:
    """Objects per second of one worker on small objects, no bandwidth limit (CPU-bound here):
    its objects over the time from its first bytes to its end."""
    where = work / "small"
    where.mkdir()
    root = sshd.root / f"{bucket}-small"
    make_config(where / "relocate.yaml", endpoint=None, sshd=sshd, root=str(root), buckets=[{"bucket": bucket, "to": "data"}])
    relocate("plan", "-f", "relocate.yaml", "--shards", "1", "-o", "plan.json", env=env, cwd=where)
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "plan.json", "--shard", "0", "--yes", "--json"],
                            env={**env, "HOME": str(where)}, cwd=where, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    w = Worker(0, proc, time.monotonic())
    reader = threading.Thread(target=w.read_events, daemon=True)
    reader.start()
    out = proc.stdout.read() if proc.stdout else ""
    if proc.wait() != 0:
        raise SystemExit(f"small objects: {out[-2000:]}")
    w.ended = time.monotonic()
    reader.join()
    shutil.rmtree(root, ignore_errors=True)
    return json.loads(out)["shard"]["objects_sent"] / (w.ended - w.progress[0][0])


def project(link: float, efficiency: float, objects_per_s: float) -> list[tuple[int, float]]:
    """(workers, hours) for the 70 TB / 100 million-object inventory."""
    rows = []
    for n in (1, 2, 4, 8, 16, 32, 64, 128):
        seconds = max(INVENTORY_BYTES / (n * link * efficiency), INVENTORY_OBJECTS / (n * objects_per_s))
        rows.append((n, seconds / 3600))
    return rows


def main() -> None:
    from relocate.cli.options import parse_rate

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `finally` stops the servers on kill too
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2,4", help="the N to run (comma-separated)")
    ap.add_argument("--bwlimit", default="2M", help="each worker's emulated link (move --bwlimit)")
    ap.add_argument("--per-worker", type=int, default=240, help="objects per worker (the corpus of N workers is N times it)")
    ap.add_argument("--size", type=int, default=256 * 1024, help="bytes per object")
    ap.add_argument("--small", type=int, default=2000, help="small (4 KiB) objects for the objects-per-second leg")
    ap.add_argument("--link", type=float, default=1e9, help="a real worker's link for the projection, bytes/s (1e9 = 1 GB/s)")
    args = ap.parse_args()
    limit = parse_rate(args.bwlimit) or 0.0

    import servers
    from helpers import make_config

    work = Path(tempfile.mkdtemp(prefix="relocate-bench-shards-"))
    weed = servers.start_seaweedfs(work / "weed")
    sshd = servers.start_sshd(work / "sshd")
    try:
        s3 = servers.s3_client(weed.endpoint_url, weed.access_key, weed.secret_key)
        ns = [int(x) for x in args.workers.split(",")]
        small = f"small-{os.getpid()}"
        for n in ns:
            seed(s3, f"shards{n}-{os.getpid()}", n * args.per_worker, args.size)
        seed(s3, small, args.small, 4096)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RELOCATE_", "AWS_", "JOB_", "SLURM_"))}
        env.update({"AWS_ACCESS_KEY_ID": weed.access_key, "AWS_SECRET_ACCESS_KEY": weed.secret_key,
                    "AWS_ENDPOINT_URL_S3": weed.endpoint_url, "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_EC2_METADATA_DISABLED": "true", "RELOCATE_NO_INPUT": "1", "RELOCATE_AGE_IDENTITY": ""})
        share = args.per_worker * args.size
        print(f"per worker: {args.per_worker} objects, {share / MiB:.0f} MiB; each worker's link B = {limit / MiB:.2f} MiB/s "
              f"(--bwlimit {args.bwlimit}); {os.cpu_count()} CPUs", flush=True)
        results = []
        for n in ns:
            r = run_shards(n, f"shards{n}-{os.getpid()}", args.bwlimit, work, env, sshd, make_config)
            results.append(r)
            goal = 0.9 * n * limit
            print(f"N={n}: all {n} moving ({r['together_s']:.0f} s): {r['together_rate'] / MiB:.2f} MiB/s = "
                  f"{r['together_rate'] / (n * limit):.2f} x N x B (goal >= 0.9: {'OK' if r['together_rate'] >= goal else 'MISSED'}); "
                  f"first to last bytes {r['data_rate'] / (n * limit):.2f} x N x B; whole wall {r['wall_rate'] / MiB:.2f} MiB/s "
                  f"= {r['wall_rate'] / (n * limit):.2f} x N x B; plan --shards {n}: {r['plan_s']:.2f} s; "
                  f"per shard, start to its first bytes: {r['overhead_s']} s; "
                  f"per worker MiB/s: {[round(x / MiB, 2) for x in r['per_worker']]}", flush=True)
        efficiency = min(r["together_rate"] / (r["n"] * limit) for r in results)
        whole = sum(r["cpu_s"] for r in results) / (sum(r["bytes"] for r in results) / 1024 ** 3)
        per_gib, unlimited = cpu_per_gib(f"shards{max(ns)}-{os.getpid()}", work, env, sshd, make_config)
        print(f"workers' own CPU (relocate and its ssh, not the servers): {whole:.1f} CPU-s per GiB in the runs above, "
              f"start-up and listing included; one worker with no limit: {unlimited:.1f} MiB/s, {per_gib:.1f} CPU-s per "
              f"GiB moved (minus the same shard's rerun). At that cost a worker at 100 MB/s needs about "
              f"{per_gib * 1e8 / 1024 ** 3:.1f} cores, at 1 GB/s about {per_gib * 1e9 / 1024 ** 3:.1f}", flush=True)
        ops = small_object_rate(small, work, env, sshd, make_config)
        print(f"small objects (4 KiB, one worker, no limit): {ops:.0f} objects/s on this machine", flush=True)
        print(f"\nprojection (computed here; plan --probe estimates the plan's own inventory): 70 TB in 100 million "
              f"objects, each worker on a {args.link / 1e9:g} GB/s link at the measured {efficiency:.2f} of it and "
              f"{ops:.0f} objects/s (the slower of the two bounds each worker):")
        rows = project(args.link, efficiency, ops)
        for n, hours in rows:
            print(f"  {n:4d} workers: {hours:7.1f} h{'  <= 24 h' if hours <= 24 else ''}")
        fit = next((n for n, h in rows if h <= 24), None)
        need = math.ceil(max(INVENTORY_BYTES / (args.link * efficiency), INVENTORY_OBJECTS / ops) / DAY)
        print(f"fewest workers for 24 hours: {need} (of the rows above: {fit}); leave room: the target's own link and "
              f"disk, and the source's request rate, are shared by all of them")
    finally:
        sshd.stop()
        weed.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
