#!/usr/bin/env python3
"""Database move benchmark (issue 3): relocate vs hand-written pg_dump/pg_restore pipelines.

Starts two PostgreSQL 15 clusters (source, target) and an sshd (tests/servers.py), fills
the source with ~1 GiB x SCALE of rows in four tables, then times, in the same run, each
restoring into a fresh target database:

  peer A   pg_dump -Fc | ssh target pg_restore                 (one stream, no parallelism)
  peer B   pg_dump -Fd -j N ; tar c | ssh tar x ; ssh pg_restore -j N -Fd   (parallel)
  relocate move --no-local-copy   (custom format streamed, + stats + verify)
  relocate move                   (directory format -j N kept in the snapshot, + stats + verify)

and prints the times and the ratios relocate / best peer. relocate's times include
what the peers do not do: per-table exact counts, sample checksums, the check of the
restored copy, and the final verify.

Measured here (2 cores shared with other work, loopback, jobs 4), 554 MiB database
(--scale 0.5 --repeat 3, best of three each):
  before (source stats after the stream, target stats twice):  peer A 8.3 s, peer B 7.1 s,
    relocate --no-local-copy 9.3 s = 1.30x, relocate (dump kept, -j) 8.6 s = 1.20x
  after (source stats during the dump; one fenced target pass in `jobs` sessions, reused by
    the move's verify):  peer A 8.9 s, peer B 8.2 s, relocate --no-local-copy 7.7 s = 0.93x,
    relocate (dump kept, -j) 8.6 s = 1.05x
  issue 18 (the dump's files uploaded through `ssh` as pg_dump closes each, instead of a
    paramiko `tar | tar x` after the dump), same command on a box at load 5-7 (all ~3x
    slower): peer A 27.0 s, peer B 26.6 s, relocate --no-local-copy 26.6 s = 1.00x,
    relocate (dump kept, -j) 26.5 s = 1.00x (before this change, same day: 1.07x)
  2026-12-04 night, same command, load 4-8 (other work running): peer A 25.4 s, peer B 41.5 s,
    relocate --no-local-copy 22.2 s = 0.87x, relocate (dump kept, -j) 20.4 s = 0.80x
Single rounds on this box vary by about +-15% (peers from 7.1 to 16.5 s), hence --repeat.

    python bench/bench_db.py --scale 0.05     # ~50 MiB, quick
    python bench/bench_db.py                  # ~1 GiB
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import servers  # noqa: E402
import yaml  # noqa: E402

ROWS_PER_GIB = 4_000_000  # ~270 bytes a row on disk with the text below


def psql(pg: servers.Postgres, sql: str, db: str = "postgres") -> str:
    r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=sql, text=True,
                       capture_output=True, env={**pg.env(), "PGDATABASE": db})
    if r.returncode != 0:
        raise SystemExit(f"psql failed: {r.stderr}")
    return r.stdout.strip()


def fill(pg: servers.Postgres, rows: int) -> int:
    psql(pg, "DROP DATABASE IF EXISTS bench; CREATE DATABASE bench;")
    per = rows // 4
    for t in range(4):
        psql(pg, f"""CREATE TABLE t{t} (id bigint PRIMARY KEY, a text, b text, n numeric, at timestamptz);
INSERT INTO t{t} SELECT g, md5(g::text) || md5((g * {t + 3})::text), repeat(md5((g + {t})::text), 4),
  g * 1.5, '2021-01-10'::timestamptz + g * interval '1 second' FROM generate_series(1, {per}) g;""", "bench")
    return int(psql(pg, "SELECT pg_database_size('bench');"))


def fresh_target(tgt: servers.Postgres, name: str) -> None:
    psql(tgt, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE); CREATE DATABASE "{name}";')


def timed(label: str, argv: list[str] | str, env: dict[str, str] | None = None, shell: bool = False) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, env=env, shell=shell, capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{label} failed ({r.returncode}): {r.stderr[-2000:]} {r.stdout[-2000:]}")
    print(f"  {label:<44} {took:7.1f} s", flush=True)
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of ~1 GiB")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1, help="rounds; each contender's best time counts")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-db-"))
    src = servers.start_postgres(work / "src")
    tgt = servers.start_postgres(work / "tgt")
    sshd = servers.start_sshd(work / "sshd")
    try:
        size = fill(src, int(ROWS_PER_GIB * args.scale))
        print(f"source database: {size / 2**20:.0f} MiB, jobs {args.jobs}", flush=True)
        known = work / "known_hosts"
        known.write_text(sshd.known_hosts_line() + "\n")
        ssh = ["ssh", "-i", str(sshd.identity_file), "-p", str(sshd.port), "-o", f"UserKnownHostsFile={known}",
               "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"{sshd.user}@{sshd.host}"]
        # The peers' target password: a 0600 pgpass in the login user's home, like relocate's.
        subprocess.run([*ssh, "umask 077; cat > .bench.pgpass"], input=f"*:*:*:*:{tgt.password}\n", text=True, check=True)
        remote_env = f"PGPASSFILE=.bench.pgpass PGHOST=127.0.0.1 PGPORT={tgt.port} PGUSER={tgt.user}"
        local_env = {**src.env(), "PGDATABASE": "bench"}
        runs: dict[str, list[float]] = {}

        def peer_a() -> float:
            fresh_target(tgt, "peer_a")
            return timed("peer A: pg_dump -Fc | ssh pg_restore",
                         f"pg_dump -Fc bench | {' '.join(ssh)} '{remote_env} pg_restore -d peer_a'", env=local_env, shell=True)

        def peer_b() -> float:
            fresh_target(tgt, "peer_b")
            dump = work / "peer_b.dir"
            shutil.rmtree(dump, ignore_errors=True)
            remote_dir = str(sshd.root / "peer_b.dir")
            b = timed("peer B1: pg_dump -Fd -j", ["pg_dump", "-Fd", "-j", str(args.jobs), "-f", str(dump), "bench"], env=local_env)
            b += timed("peer B2: tar | ssh tar x", f"tar -c -C {dump} . | {' '.join(ssh)} 'rm -rf {remote_dir} && mkdir -p {remote_dir} && tar -x -C {remote_dir}'", shell=True)
            b += timed("peer B3: ssh pg_restore -j -Fd", [*ssh, f"{remote_env} pg_restore -j {args.jobs} -d peer_b -Fd {remote_dir}"])
            print(f"  {'peer B total':<44} {b:7.1f} s")
            return b

        def relocate(label: str, extra: list[str], db: str, n: int) -> float:
            cfgdir = work / f"{db}.{n}"
            cfgdir.mkdir()
            psql(tgt, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE);')
            doc = {"version": 1, "app": {"name": "bench"},
                   "source": {"aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:1"},
                              "databases": [{"url": f"postgresql://{src.user}@127.0.0.1:{src.port}/bench",
                                             "password_from": "env:SRC_PW", "jobs": args.jobs}]},
                   "target": {"ssh": {"host": sshd.host, "port": sshd.port, "user": sshd.user,
                                      "identity_file": str(sshd.identity_file), "host_key": sshd.host_key_fingerprint,
                                      "known_hosts": str(known)},
                              "root": str(sshd.root / f"{db}.{n}"),
                              "database": {"url": f"postgresql://{tgt.user}@127.0.0.1:{tgt.port}/{db}",
                                           "password_from": "env:TGT_PW"}},
                   "snapshot": {"dir": str(cfgdir / "snapshots"), "key_file": str(cfgdir / "age.key")}}
            (cfgdir / "relocate.yaml").write_text(yaml.safe_dump(doc))
            env = {**os.environ, "SRC_PW": src.password, "TGT_PW": tgt.password, "HOME": str(cfgdir),
                   "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
            took = timed(label, [sys.executable, "-m", "relocate", "move", "-f", str(cfgdir / "relocate.yaml"),
                                 "--yes", *extra], env=env)
            shutil.rmtree(cfgdir / "snapshots", ignore_errors=True)
            return took

        contenders = [
            ("peer A: pg_dump -Fc | ssh pg_restore", lambda n: peer_a()),
            ("peer B: dump -Fd -j, tar|ssh, restore -j", lambda n: peer_b()),
            ("relocate move --no-local-copy", lambda n: relocate("relocate move --no-local-copy", ["--no-local-copy"], "reloc_stream", n)),
            ("relocate move (dump kept, -j)", lambda n: relocate("relocate move (dump kept, -j)", [], "reloc_dir", n)),
        ]
        for n in range(args.repeat):
            if args.repeat > 1:
                print(f"round {n + 1}/{args.repeat}", flush=True)
            # Rotate the order each round so neither side always runs on a warmer cache.
            for label, run in contenders[n % len(contenders):] + contenders[:n % len(contenders)]:
                runs.setdefault(label, []).append(run(n))
        results = {k: min(v) for k, v in runs.items()}
        if args.repeat > 1:
            print("best of each (the machine is shared: the minimum is the least disturbed run):")
            for k, v in results.items():
                print(f"  {k:<44} {v:7.1f} s   (all: {', '.join(f'{x:.1f}' for x in runs[k])})")

        for db in ("peer_a", "peer_b", "reloc_stream", "reloc_dir"):
            n = psql(tgt, "SELECT sum(c) FROM (SELECT count(*) c FROM t0 UNION ALL SELECT count(*) FROM t1 "
                          "UNION ALL SELECT count(*) FROM t2 UNION ALL SELECT count(*) FROM t3) x;", db)
            print(f"  rows in target {db}: {n}")
        best = min(v for k, v in results.items() if k.startswith("peer"))
        # Issue 18's goal is the default mode (dump kept) at or under the best hand pipeline;
        # issue 3 allowed 1.1x for both.
        goals = {"relocate move --no-local-copy": 1.1, "relocate move (dump kept, -j)": 1.0}
        print("ratios (relocate / best peer, lower is better):")
        for k, v in results.items():
            if k.startswith("relocate"):
                ratio = v / best
                verdict = "met" if ratio <= goals[k] else "MISSED"
                print(f"  {k:<44} {ratio:5.2f}x   goal <= {goals[k]:.1f}x: {verdict}")
    finally:
        sshd.stop()
        tgt.stop()
        src.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
