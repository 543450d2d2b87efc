#!/usr/bin/env python3
"""Rerun and resume benchmark (issue 18): what a second `move` costs against the first.

On the bench corpora (bench_transfer.py's media and tiny, in a SeaweedFS it starts, onto
an sshd it starts; both from tests/servers.py), ROUNDS times each:

  full     `relocate move` into a fresh target root and snapshot dir
  rerun    the same `relocate move` again: nothing to do
           goal: <= 0.15x the full move, and under 1.5 s
  resume   a fresh root; `relocate move` killed with SIGKILL at a random point between
           10% and 90% of the full move's time, then `relocate move` again, timed
           goal: <= (share of the bytes left at the kill x full move) + 1.5 s
           also printed: the resume's CPU seconds, and how many objects already in place
           at the kill (counted 0.5 s after it, once the receivers stopped) it sent again
           (0 since the receivers write receipts, snapshot/receipts.py)

Medians are printed with the ratios and the goals. Measuring only: it changes nothing.

    python bench/bench_rerun.py --corpus media,tiny --rounds 3
    python bench/bench_rerun.py --corpus tiny --scale 0.25 --rounds 1     # quick
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from bench_transfer import BIN, MiB, aws_env, corpus_spec, rclone_env, write_corpus  # noqa: E402


def landed(root: Path) -> tuple[int, int]:
    """(files, bytes) of the corpus already in place under the target's data dir (staging excluded)."""
    files = total = 0
    for dirpath, _, names in os.walk(root / "data"):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
                files += 1
            except OSError:
                pass
    return files, total


CPU: list[float] = []  # CPU seconds (user + sys, relocate and the ssh it started) of each run_move, in order


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_move(cfg: Path, env: dict[str, str], kill_after: float | None = None, *extra: str) -> tuple[float, str]:
    """(seconds, stdout) of one `relocate move`; killed with SIGKILL after `kill_after` s if given.
    Its CPU seconds (the stable figure on a shared machine; the servers' not included) go to CPU."""
    t0, c0 = time.monotonic(), _children_cpu()
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if kill_after is not None:
        try:
            out, _ = proc.communicate(timeout=kill_after)
            CPU.append(_children_cpu() - c0)
            return time.monotonic() - t0, out.decode(errors="replace")  # finished before the kill
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            CPU.append(_children_cpu() - c0)
            return time.monotonic() - t0, "killed"
    out, _ = proc.communicate()
    CPU.append(_children_cpu() - c0)
    if proc.returncode != 0:
        raise SystemExit(f"relocate move failed ({proc.returncode}):\n{out.decode(errors='replace')[-2000:]}")
    return time.monotonic() - t0, out.decode(errors="replace")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="media,tiny")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=None, help="for the kill points (default: random)")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    import servers
    from helpers import make_config

    # relocate as a user runs it: `pip install` compiles the package's bytecode, an editable
    # checkout run with PYTHONDONTWRITEBYTECODE=1 (as this machine sets it) compiles relocate's
    # own modules again on every start, ~0.1 s of CPU per move. Compiled once here instead.
    import compileall
    import relocate

    compileall.compile_dir(str(Path(relocate.__file__).parent), quiet=1)

    work = Path(tempfile.mkdtemp(prefix="relocate-bench-rerun-"))
    weed = servers.start_seaweedfs(work / "weed")
    sshd = servers.start_sshd(work / "sshd")
    verdicts: list[str] = []
    try:
        for name in args.corpus.split(","):
            spec = corpus_spec(name, args.scale)
            total = sum(s for _, s in spec)
            src = work / f"corpus-{name}"
            write_corpus(src, spec)
            bucket = f"rerun-{name}-{os.getpid()}"
            renv, rclone = rclone_env(weed), str(BIN / "rclone")
            subprocess.run([rclone, "mkdir", f"src:{bucket}"], env=renv, check=True)
            subprocess.run([rclone, "copy", str(src), f"src:{bucket}", "--transfers", "16"], env=renv, check=True)
            shutil.rmtree(src)
            print(f"\n== corpus {name}: {len(spec)} objects, {total / MiB:.0f} MiB", flush=True)
            env = {**aws_env(weed), "RELOCATE_AGE_IDENTITY": ""}
            n = 0

            def fresh() -> tuple[Path, Path]:
                nonlocal n
                n += 1
                where = sshd.root / f"rerun-{name}-{n}"
                (work / f"c-{name}-{n}").mkdir(parents=True)
                cfg = make_config(work / f"c-{name}-{n}" / "relocate.yaml", endpoint=weed.endpoint_url, sshd=sshd,
                                  root=str(where), buckets=[{"bucket": bucket, "to": "data"}])
                return cfg, where

            fulls, reruns, resumes, resent = [], [], [], []
            full_cpu, rerun_cpu, resume_cpu = [], [], []
            for r in range(args.rounds):
                cfg, where = fresh()
                full, _ = run_move(cfg, env)
                full_cpu.append(CPU[-1])
                again, out = run_move(cfg, env)
                rerun_cpu.append(CPU[-1])
                if "nothing to do" not in out:
                    raise SystemExit(f"the rerun did something:\n{out[-2000:]}")
                fulls.append(full)
                reruns.append(again)
                shutil.rmtree(where, ignore_errors=True)
                cfg, where = fresh()
                at = rng.uniform(0.1, 0.9) * full
                took, out = run_move(cfg, env, kill_after=at)
                left = 1.0 - landed(where)[1] / total if out == "killed" else 0.0
                time.sleep(0.5)  # the receivers place what was already on its way, then stop
                files = landed(where)[0]
                resume, out = run_move(cfg, env, None, "--json")
                resume_cpu.append(CPU[-1])
                # objects sent again although they were in place at the kill (journalled or not)
                doc = out.splitlines()
                doc = doc[doc.index("{"):]  # the --json document, after the progress events (one line each)
                resent.append(json.loads("\n".join(doc))["result"]["objects_sent"] - (len(spec) - files))
                goal = left * full + 1.5
                resumes.append((resume, left, goal))
                shutil.rmtree(where, ignore_errors=True)
                print(f"round {r + 1}: full {full:.2f} s, rerun {again:.2f} s ({again / full:.2f}x); "
                      f"killed at {at:.2f} s with {left:.0%} left, resume {resume:.2f} s (goal <= {goal:.2f} s), "
                      f"CPU {resume_cpu[-1]:.2f} s, {resent[-1]} object(s) in place sent again", flush=True)
            f, rr = statistics.median(fulls), statistics.median(reruns)
            ok_rerun = rr / f <= 0.15 and rr < 1.5
            print(f"{name}: full move {f:.2f} s (median of {args.rounds}); relocate's CPU: full {statistics.median(full_cpu):.2f} s, "
                  f"rerun {statistics.median(rerun_cpu):.2f} s, resume {statistics.median(resume_cpu):.2f} s")
            print(f"  rerun, nothing to do : {rr:.2f} s = {rr / f:.2f}x   (goal <= 0.15x and < 1.5 s) {'OK' if ok_rerun else 'MISSED'}")
            over = [res - goal for res, _, goal in resumes]
            ok_resume = all(o <= 0 for o in over)
            print(f"  resume after SIGKILL : median {statistics.median(res for res, _, _ in resumes):.2f} s; "
                  f"over the goal (share left x full + 1.5 s) by median {statistics.median(over):+.2f} s, worst {max(over):+.2f} s "
                  f"{'OK' if ok_resume else 'MISSED'}; objects in place at the kill sent again: median {statistics.median(resent):g}, "
                  f"most {max(resent)}")
            verdicts.append(f"{name}: rerun {'OK' if ok_rerun else 'MISSED'}, resume {'OK' if ok_resume else 'MISSED'}")
        print("\n" + "\n".join(verdicts))
    finally:
        sshd.stop()
        weed.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
