"""Start-up time of the CLI (issue 18): `relocate --help` and `relocate --version` against the
bare interpreter and against `python -c "import typer"` (the floor any Typer CLI pays), as
medians of alternating runs. Prints wall and CPU seconds and the goal (<= 0.3 s).

    python bench/bench_startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

GOAL_S = 0.3


def _once(argv: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    before = os.times()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return time.perf_counter() - t0, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    py = sys.executable
    legs = {
        "python -c pass": [py, "-c", "pass"],
        "import typer": [py, "-c", "import typer"],
        "relocate --version": [py, "-m", "relocate", "--version"],
        "relocate --help": [py, "-m", "relocate", "--help"],
        "relocate init --help": [py, "-m", "relocate", "init", "--help"],
        "relocate plan --help": [py, "-m", "relocate", "plan", "--help"],
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in legs}
    for _ in range(args.rounds):  # alternate the legs so a busy moment hits all of them
        for name, argv in legs.items():
            results[name].append(_once(argv))
    print(f"{'leg':<24} {'wall s':>8} {'cpu s':>8}   (medians of {args.rounds})")
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        goal = ""
        if name in ("relocate --version", "relocate --help"):
            goal = f"   goal <= {GOAL_S} s: {'met' if wall <= GOAL_S else 'MISSED'}"
        print(f"{name:<24} {wall:8.3f} {cpu:8.3f}{goal}")


if __name__ == "__main__":
    main()
