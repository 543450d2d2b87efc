#!/usr/bin/env python3
"""Would GETs started while the bucket is still being listed shorten a first move?

A `move` sends nothing before its listing is whole (the plan and the gate need it). The
idea measured here: on a first move, start reading the first objects' bodies into memory
while the listing runs, so the engine finds them read. It only pays if those GETs do not
slow the listing, which is on the critical path, by more than they save.

This starts SeaweedFS once, seeds the tiny corpus (10,000 x 4 KiB by default), then in
turns, round after round: relocate's listing alone (`list_prefix`, as `move` runs it), and
the same listing with `--gets` GETs of listed keys submitted beside it (`ObjectReader`'s
own GET loop, `--inflight` at once). Each line gives the listing's time, how many GETs had
finished when it ended, and when the last one did.

    python bench/bench_listing_overlap.py --rounds 3 --gets 3000 --inflight 16,32,64

Measured 2026-12-06 (docs/transfer.md, "Reads during the listing"): alone 0.16-0.19 s;
with GETs beside it 0.33-0.41 s, by which time 100-500 GETs had finished. The listing
got slower by about as much as the engine would save: not built.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))


def one(bucket: str, env: dict[str, str], gets: int, inflight: int, keys: list) -> tuple[float, int, float]:
    """(listing seconds, GETs finished by then, seconds until the last GET finished)."""
    from relocate.config import AwsSpec
    from relocate.sources.aws import Aws
    from relocate.sources.inventory import list_prefix
    from relocate.sources.s3data import ObjectReader

    aws = Aws(AwsSpec(endpoint_url=env["AWS_ENDPOINT_URL_S3"]))
    aws.client("s3")  # made before the clock starts, as a move's listing has its client by then
    reader = ObjectReader(aws, bucket)
    futures: list = []
    try:
        t0 = time.perf_counter()
        feeder = None
        if gets:
            start = reader.whole_reads(inflight)

            def feed() -> None:
                for o in keys[:gets]:
                    futures.append(start(o))
            feeder = threading.Thread(target=feed)
            feeder.start()
        list_prefix(aws, bucket, "")
        listed = time.perf_counter() - t0
        if feeder is not None:
            feeder.join()
        finished = sum(f.done() for f in futures)
        for f in futures:
            f.result()
        return listed, finished, time.perf_counter() - t0
    finally:
        reader.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gets", type=int, default=3000)
    ap.add_argument("--inflight", default="16,32,64", help="GETs in flight beside the listing, comma-separated")
    ap.add_argument("--corpus", default="tiny")
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()

    import bench_transfer as bt
    import servers
    from bench_s3read import seed

    work = Path(tempfile.mkdtemp(prefix="bench-listing-"))
    weed = servers.start_seaweedfs(work / "weed")
    try:
        buckets = seed(weed, work, [args.corpus], args.scale)
        bucket = buckets[args.corpus + ":bucket"]
        env = {**bt.aws_env(weed), "AWS_ENDPOINT_URL_S3": weed.endpoint_url}
        os.environ.update(env)
        from relocate.config import AwsSpec
        from relocate.sources.aws import Aws
        from relocate.sources.inventory import list_prefix

        keys = list_prefix(Aws(AwsSpec(endpoint_url=weed.endpoint_url)), bucket, "")
        variants = [("alone", 0, 0)] + [(f"beside {n}", args.gets, n) for n in (int(x) for x in args.inflight.split(","))]
        got: dict[str, list[tuple[float, int, float]]] = {v[0]: [] for v in variants}
        for r in range(args.rounds):
            for label, gets, inflight in variants:
                res = one(bucket, env, gets, inflight, keys)
                got[label].append(res)
                print(f"round {r + 1} {label:>10}: listing {res[0]:.3f} s, GETs done by then {res[1]}, "
                      f"last GET at {res[2]:.3f} s", flush=True)
        print(f"\n{len(keys)} keys listed; medians of {args.rounds} rounds:")
        for label, rows in got.items():
            print(f"  {label:>10}: listing {statistics.median(x[0] for x in rows):.3f} s, "
                  f"GETs done by then {statistics.median(x[1] for x in rows):.0f}")
    finally:
        weed.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
