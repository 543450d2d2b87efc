#!/usr/bin/env python3
"""Where a `relocate move`'s wall time goes: a timeline of its bulk engine (issue 18).

Starts SeaweedFS and an sshd (tests/servers.py), seeds one corpus (bench_transfer's),
then runs `relocate move` `--runs` times (with `--baseline OLD/src`, old and new code
in turn), each traced by bench/timeline/sitecustomize.py, and prints per run:

- start-up: the process's start to the bulk engine's start (imports, plan, listing);
- the first GET, the last GET's end, the last answer, the engine's end, the process's end;
- the S3 GETs: time with none in flight between the first and the last (the read side
  idle) and the mean number in flight;
- per lane and batch: stream start, tail written, answer read, commit end (seconds
  from the engine's start), and each lane's time between a tail and its next batch's
  first bytes (what a lane waiting for its answer costs).

    python bench/bench_timeline.py --corpus tiny --scale 0.5 --runs 3 --baseline /tmp/base/src
    python bench/bench_timeline.py --corpus tiny --scale 1 --runs 3 --phases   # the steps before and after the engine
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_transfer as bt  # noqa: E402  (corpora, environments, servers)

TRACE = str(HERE / "timeline")


def analyse(run: dict, verbose: bool) -> dict[str, float]:
    ev = run["events"]
    boot = run["boot"]
    t = {k: [e for e in ev if e[1] == k] for k in {e[1] for e in ev}}
    r0 = t["run0"][0][0]
    gets = sorted(run["gets"])
    figures: dict[str, float] = {"startup": boot + r0}
    inflight, idle, area, last = 0, 0.0, 0.0, None
    for when, d in gets:
        if last is not None:
            if inflight == 0:
                idle += when - last
            area += inflight * (when - last)
        inflight += d
        last = when
    if gets:
        span = gets[-1][0] - gets[0][0]
        figures.update(first_get=gets[0][0] - r0, last_get=gets[-1][0] - r0, get_idle=idle,
                       get_mean_inflight=area / span if span else 0.0)
    answers = [e[0] for e in ev if e[1] == "answer"]
    figures.update(last_answer=max(answers) - r0 if answers else 0.0, engine=t["run1"][0][0] - r0,
                   after_engine=t["exit"][0][0] - t["run1"][0][0], total=boot + t["exit"][0][0])
    # per lane: gaps between a tail and the same lane's next stream start
    lanes = sorted({e[2] for e in ev if e[1] == "send"})
    gap = 0.0
    for lane in lanes:
        seq = sorted((e for e in ev if e[2] == lane and e[1] in ("send", "tail", "answer")), key=lambda e: e[0])
        sends = [e[0] for e in seq if e[1] == "send"]
        for e in seq:
            if e[1] == "tail":
                nxt = [s for s in sends if s >= e[0]]
                if nxt:
                    gap += nxt[0] - e[0]
        if verbose:
            line = " ".join(f"{e[1][0]}{e[3] if e[3] >= 0 else ''}@{e[0] - r0:.2f}" for e in seq)
            print(f"      lane {lane}: {line}")
    figures["lane_wait"] = gap
    if verbose:
        commits = [e for e in ev if e[1] in ("commit1", "commit")]  # old code wrapped, new code traced
        print("      commits end at " + " ".join(f"{e[0] - r0:.2f}" for e in commits))
    return figures


def print_phases(run: dict) -> None:
    """Each timed step of one run: start and end in seconds from the process's start
    (interpreter start-up included), its length, its thread."""
    for thread, name, start, end in sorted(run.get("phases", ()), key=lambda p: p[2]):
        print(f"      {run['boot'] + start:6.3f} {run['boot'] + end:6.3f} {end - start:6.3f}  {thread[:12]:12s} {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="tiny")
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--runs", type=int, default=3)
    from relocate.settings import TRANSFERS

    ap.add_argument("--transfers", type=int, default=TRANSFERS)
    ap.add_argument("--lanes", type=int, default=None)
    ap.add_argument("--baseline", default=None, metavar="SRC")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every lane's events")
    ap.add_argument("--phases", action="store_true",
                    help="print when each main step ran (login, listing, gather, plan, engine, sidecar, manifest, check)")
    args = ap.parse_args()
    import servers
    from helpers import make_config
    from relocate.settings import default_lanes

    lanes = args.lanes or default_lanes()
    bt.compile_bytecode()
    if args.baseline:
        bt.compile_bytecode(args.baseline)
    with contextlib.ExitStack() as cleanup:  # servers stopped and the work dir removed, whatever happens
        work = Path(tempfile.mkdtemp(prefix="relocate-timeline-"))
        cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        weed = servers.start_seaweedfs(work / "weed")
        cleanup.callback(weed.stop)
        sshd = servers.start_sshd(work / "sshd")
        cleanup.callback(sshd.stop)
        compare(args, lanes, work, weed, sshd, make_config)


def compare(args: argparse.Namespace, lanes: int, work: Path, weed, sshd, make_config) -> None:
    """Seed the corpus, then the traced moves, old and new in turn, and their medians."""
    out = work / "timeline.jsonl"
    spec = bt.corpus_spec(args.corpus, args.scale)
    src = work / "corpus"
    bt.write_corpus(src, spec)
    bucket = f"tl-{args.corpus}-{os.getpid()}"
    renv = bt.rclone_env(weed)
    rclone = str(bt.BIN / "rclone")
    subprocess.run([rclone, "mkdir", f"src:{bucket}"], env=renv, check=True)
    subprocess.run([rclone, "copy", str(src), f"src:{bucket}", "--transfers", "16"], env=renv, check=True)
    shutil.rmtree(src)
    sides = [("old", args.baseline), ("new", None)] if args.baseline else [("new", None)]
    results: dict[str, list[dict[str, float]]] = {s: [] for s, _ in sides}
    for i in range(args.runs):
        for label, code in (sides if i % 2 == 0 else sides[::-1]):
            root = sshd.root / f"tl-{label}-{i}"
            cfg = make_config(work / f"r-{label}-{i}.yaml", endpoint=weed.endpoint_url, sshd=sshd, root=str(root),
                              buckets=[{"bucket": bucket, "to": "data"}])
            shutil.rmtree(work / "snapshots", ignore_errors=True)
            env = bt.relocate_env({**bt.aws_env(weed), "RELOCATE_AGE_IDENTITY": "", **({"PYTHONPATH": code} if code else {})})
            env["PYTHONPATH"] = os.pathsep.join([TRACE] + env["PYTHONPATH"].split(os.pathsep)[1:])
            env.update(BENCH_TIMELINE_OUT=str(out), BENCH_TIMELINE_LABEL=label)
            subprocess.run(["sync"])
            p = subprocess.run([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", "--transfers",
                                str(args.transfers), "--lanes", str(lanes)], env=env, capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"move failed:\n{p.stderr[-2000:]}")
            run = json.loads(out.read_text().splitlines()[-1])
            print(f"  run {i} {label}:", flush=True)
            f = analyse(run, args.verbose)
            if args.phases:
                print_phases(run)
            print("    " + "  ".join(f"{k} {v:.2f}" for k, v in f.items()), flush=True)
            results[label].append(f)
    for label, runs in results.items():
        keys = runs[0].keys()
        print(f"median {label}: " + "  ".join(f"{k} {statistics.median(r[k] for r in runs):.2f}" for k in keys))

if __name__ == "__main__":
    main()
