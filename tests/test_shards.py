"""Sharded moves (issue 16): the partition's property, the engine variables, and N real
worker processes of the CLI against SeaweedFS and a real sshd, each given only its index
through an engine's own variable, as Kubernetes or Slurm would pass it.

The end-to-end tests take longer than 10 s each on purpose: they start real `relocate`
processes (a worker is a process the engine starts, with nothing but its environment),
several per test, on a corpus kept to a few dozen objects."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import aws_client, cli, make_config
from relocate.errors import UsageError
from relocate.shards.engines import shard_from_env
from relocate.shards.partition import partition, start_after
from relocate.snapshot.keymap import chunk_paths, map_keys

# the hostile keys of the key-mapping rules (snapshot/keymap.py): '/', '//', '..', '%',
# control characters, non-ASCII, over-long segments, keys that are others' "directories"
PIECES = ["a", "b", "/", "//", ".", "..", "%", "%2F", "é", "ü/", "\x01", "-", " ", "x" * 210, "日本", "\U0001F600"]
hostile = st.lists(st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("".join), max_size=60, unique=True)


@settings(max_examples=150, deadline=None)
@given(keys=hostile, sizes=st.randoms(use_true_random=False))
def test_partition_covers_every_key_exactly_once(keys: list[str], sizes: random.Random) -> None:
    keys = sorted(k for k in keys if k)
    objs = [(k, sizes.choice([0, 1, 10, 1000, 10**6]), "e") for k in keys]
    total_b = sum(o[1] for o in objs)
    for n in range(1, 21):
        ranges = partition(iter(objs), n, len(objs), total_b)
        assert len(ranges) == n and ranges[0].start == "" and ranges[-1].end is None
        owners = [[r.index for r in ranges if r.contains(k)] for k in keys]
        assert all(len(o) == 1 for o in owners), (n, keys, owners)
        assert sum(r.objects for r in ranges) == len(keys) and sum(r.bytes for r in ranges) == total_b
        # contiguous: each shard's end is the next non-empty one's start
        live = [r for r in ranges if r.start is not None]
        assert all(a.end == b.start for a, b in zip(live, live[1:]))
        # keys added later fall in exactly one shard too
        for extra in ("", "\x00", "zzz", keys[0] + "\x00" if keys else "q"):
            if extra:
                assert sum(r.contains(extra) for r in ranges) == 1
        for r in live:
            after = start_after(r.start or "")
            assert after is None or after < (r.start or "")


@settings(max_examples=200, deadline=None)
@given(keys=hostile, chunk=st.integers(1, 7), strip=st.sampled_from(["", "a", "/"]))
def test_chunked_paths_equal_whole_listing_paths(keys: list[str], chunk: int, strip: str) -> None:
    keys = sorted(k for k in keys if k.startswith(strip))
    got: dict[str, str] = {}
    for i in range(0, len(keys), chunk):
        got.update(chunk_paths(keys[i:i + chunk], strip, lambda s: next((k for k in keys if k > s), None)))
    assert got == map_keys(keys, strip)


def test_partition_balances_bytes_and_count() -> None:
    rng = random.Random(7)
    objs = sorted((f"k/{i:05d}", rng.randint(1, 2000), "e") for i in range(4000))
    ranges = partition(iter(objs), 4, len(objs), sum(o[1] for o in objs))
    for r in ranges:
        assert 800 <= r.objects <= 1200, ranges


@pytest.mark.parametrize("env,want", [
    ({"RELOCATE_SHARD": "2", "JOB_COMPLETION_INDEX": "0"}, 2),
    ({"JOB_COMPLETION_INDEX": "3"}, 3),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "1"}, 1),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "2"}, 3),
    ({"SLURM_ARRAY_TASK_ID": "0"}, 0),
    ({"NOMAD_ALLOC_INDEX": "2"}, 2),
    ({"CI_NODE_INDEX": "4"}, 3),
])
def test_shard_from_engine_variables(env: dict[str, str], want: int) -> None:
    assert shard_from_env(4, env)[0] == want


@pytest.mark.parametrize("env", [{}, {"JOB_COMPLETION_INDEX": "4"}, {"CI_NODE_INDEX": "0"}, {"SLURM_ARRAY_TASK_ID": "x"}])
def test_shard_from_env_refuses(env: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        shard_from_env(4, env)


# --- real workers -------------------------------------------------------------------

KEYS = ["a", "a/b", "a//c", "../up", "ünï/cødé.txt", "p/%41", "x" * 230 + "/long", "sp ace", "dir/", "dir/f"]


def _seed(s3, bucket: str, n: int, size: int = 300) -> dict[str, bytes]:
    s3.create_bucket(Bucket=bucket)
    rng = random.Random(1)
    bodies = {k: rng.randbytes(rng.randint(0, size)) for k in KEYS}
    for i in range(n):
        bodies[f"media/{i % 7}/{i:04d}.bin"] = rng.randbytes(rng.randint(1, size))
    stored: dict[str, bytes] = {}
    for k, v in bodies.items():
        try:  # SeaweedFS refuses some hostile keys (`..` segments) and normalises others (`//`)
            s3.put_object(Bucket=bucket, Key=k, Body=v)
            stored[k] = v
        except ClientError:
            pass
    listed = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", ())}
    # what the server lists is the truth (a normalised key holds its body under another name)
    # (SeaweedFS keeps "dir/" as an empty folder object)
    stored = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in listed}
    assert len(stored) >= n + 5
    return stored


@pytest.fixture
def env_s3(seaweedfs, moto: str, tmp_path: Path) -> dict[str, str]:
    """The environment a worker gets: S3 at SeaweedFS, the rest at moto, and a HOME of its own."""
    return {"AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
            "AWS_ENDPOINT_URL": moto, "AWS_ENDPOINT_URL_S3": seaweedfs.endpoint_url,
            "RELOCATE_SHARD_CHUNK": "10", "RELOCATE_NO_INPUT": "1"}


def _proc(args: list[str], env: dict[str, str], home: Path, **kw) -> subprocess.Popen[str]:
    home.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RELOCATE_", "JOB_", "SLURM_", "AWS_"))}
    return subprocess.Popen([sys.executable, "-m", "relocate", *args], env={**clean, **env, "HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _run(args: list[str], env: dict[str, str], home: Path) -> tuple[int, str, str]:
    p = _proc(args, env, home)
    out, err = p.communicate(timeout=300)
    return p.returncode, out, err


def test_shards_run_as_engine_workers_then_finish_and_verify(seaweedfs, moto: str, sshd, tmp_path: Path,
                                                            env_s3: dict[str, str]) -> None:
    s3 = seaweedfs_client(seaweedfs)
    bucket = f"shards-{os.urandom(3).hex()}"
    bodies = _seed(s3, bucket, 80)  # a small corpus: seconds per worker; 2-3 chunks a shard at RELOCATE_SHARD_CHUNK=10
    ssm = aws_client("ssm", moto)
    ssm.put_parameter(Name=f"/{bucket}/mode", Value="production", Type="String")
    root = sshd.root / bucket
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=None, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data/media"}],
                      parameters=[{"path": f"/{bucket}/", "to": "shared/app.env"}])
    plan = tmp_path / "plan.json"
    code, out, err = _run(["plan", "-f", str(cfg), "--shards", "4", "-o", str(plan)], env_s3, tmp_path / "h-plan")
    assert code == 0, err
    doc = json.loads(plan.read_text())
    ranges = doc["shards"]["steps"][f"s3:{bucket}/"]
    assert [r["index"] for r in ranges] == [0, 1, 2, 3] and sum(r["objects"] for r in ranges) == len(bodies)
    assert "keys" not in json.dumps(doc["shards"]) and "media/0/0000.bin" not in json.dumps(doc["shards"])
    assert "4 shard(s)" in out and "N targets each pulling" in out

    # the final phase is refused while shards are missing: one line naming them
    code, out, err = _run(["move", str(plan), "--finish", "--yes"], env_s3, tmp_path / "h-f0")
    assert code == 6 and "0, 1, 2, 3" in err and "Traceback" not in err, err

    # three workers at once, each told only JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)
    procs = [_proc(["move", str(plan), "--shard", "auto", "--yes", "--json"], {**env_s3, "JOB_COMPLETION_INDEX": str(k)},
                   tmp_path / f"h-{k}") for k in range(3)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, err
    sent = [json.loads(out)["shard"] for _, out, _ in results]
    assert sorted(s["shard"] for s in sent) == [0, 1, 2]

    code, out, err = _run(["move", str(plan), "--finish", "--yes"], env_s3, tmp_path / "h-f1")
    assert code == 6 and "1 of 4 shard(s) incomplete: 3" in err, err
    code, out, err = _run(["status", str(plan), "--json"], env_s3, tmp_path / "h-s")
    st_doc = json.loads(out)
    assert code == 4 and st_doc["incomplete"] == [3] and st_doc["shards"][3]["objects_left"] == ranges[3]["objects"]
    assert st_doc["shards"][0]["objects_left"] == 0 and st_doc["shards"][0]["objects_done"] == ranges[0]["objects"]

    # the last one as a Slurm array task (--array=1-4: SLURM_ARRAY_TASK_MIN is subtracted)
    code, out, err = _run(["move", str(plan), "--shard", "auto", "--yes", "--json"],
                          {**env_s3, "SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1"}, tmp_path / "h-3")
    assert code == 0, err
    assert json.loads(out)["shard"]["shard"] == 3
    assert sum(s["objects_sent"] for s in sent) + json.loads(out)["shard"]["objects_sent"] == len(bodies)

    # every key landed once, where the unsharded move puts it
    paths = map_keys(sorted(bodies))
    for key, body in bodies.items():
        assert (root / "data/media" / paths[key]).read_bytes() == body, key
    assert len([p for p in (root / "data/media").rglob("*") if p.is_file()]) == len(bodies)

    # a shard run twice sends nothing
    code, out, err = _run(["move", str(plan), "--shard", "1", "--yes", "--json"], env_s3, tmp_path / "h-1b")
    assert code == 0 and json.loads(out)["shard"]["objects_sent"] == 0, err

    code, out, err = _run(["move", str(plan), "--finish", "--yes", "--json"], env_s3, tmp_path / "h-f2")
    assert code == 0, err
    result = json.loads(out)["result"]
    assert result["verify"]["ok"] and result["verify"]["matched"] == len(bodies)
    assert "MODE='production'" in (root / "shared/app.env").read_text()

    # merged verify catches one damaged file, whichever shard wrote it
    key = ranges[2]["start"]  # the first object of shard 2
    victim = root / "data/media" / paths[key]
    victim.write_bytes(b"X" + victim.read_bytes()[1:] if victim.stat().st_size else b"X")
    code, out, err = _run(["verify", str(plan), "--json"], env_s3, tmp_path / "h-v")
    vdoc = json.loads(out)
    assert code == 4 and vdoc["differing"] == 1 and vdoc["differing_paths"] == [f"data/media/{paths[key]}"]


def test_bad_shard_input_is_one_line(seaweedfs, sshd, tmp_path: Path, env_s3: dict[str, str]) -> None:
    s3 = seaweedfs_client(seaweedfs)
    bucket = f"shbad-{os.urandom(3).hex()}"
    _seed(s3, bucket, 5)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=None, sshd=sshd, root=str(sshd.root / bucket),
                      buckets=[{"bucket": bucket, "to": "data"}])
    plan, flat = tmp_path / "plan.json", tmp_path / "flat.json"
    code, out, err = _run(["plan", "-f", str(cfg), "--shards", "2", "-o", str(plan)], env_s3, tmp_path / "h")
    assert code == 0, err
    # the next steps it prints are the sharded ones (a plain `move plan.json` is refused below)
    said = " ".join(out.split())
    assert f"run `relocate move {plan} --shard K` on each of 2 workers (K = 0..1" in said, out
    assert f"`relocate status {plan}`" in said and f"`relocate move {plan} --finish`" in said, out
    assert "execute exactly this plan" not in said
    code, out, err = _run(["plan", "-f", str(cfg), "-o", str(flat)], env_s3, tmp_path / "h")
    assert code == 0, err
    assert f"run `relocate move {flat}` to execute exactly this plan" in " ".join(out.split()), out
    r = cli("move", str(plan), "--yes", env=env_s3)  # what the unsharded hint would have said: refused
    assert r.exit_code == 2 and "--shard K" in r.stderr and "--finish" in r.stderr, r.stderr
    for args, env in ((["move", str(plan), "--shard", "2", "--yes"], {}),
                      (["move", str(plan), "--shard", "auto", "--yes"], {}),
                      (["move", str(plan), "--shard", "auto", "--yes"], {"JOB_COMPLETION_INDEX": "7"}),
                      (["move", str(flat), "--shard", "0", "--yes"], {}),
                      (["move", str(flat), "--finish", "--yes"], {}),
                      (["move", str(plan), "--shard", "0", "--checksum", "--yes"], {}),
                      (["move", str(flat), "--on-target", "--yes"], {})):
        r = cli(*args, env={**env_s3, **env})  # in-process: usage errors need no worker process
        code, err = r.exit_code, r.stderr
        assert code == 2 and len(err.strip().splitlines()) <= 2 and "Traceback" not in err, (args, err)
    # the source changed since the plan: that shard is refused before anything is written
    s3.put_object(Bucket=bucket, Key="media/0/0000.bin", Body=b"changed")
    ranges = json.loads(plan.read_text())["shards"]["steps"][f"s3:{bucket}/"]
    k = next(r["index"] for r in ranges if r["start"] is not None and r["start"] <= "media/0/0000.bin"
             and (r["end"] is None or "media/0/0000.bin" < r["end"]))
    r = cli("move", str(plan), "--shard", str(k), "--yes", env=env_s3)
    assert r.exit_code == 6 and "source changed" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (sshd.root / bucket / "data").exists()


def test_worker_killed_mid_shard_resumes_with_fresh_home(seaweedfs, sshd, tmp_path: Path, env_s3: dict[str, str]) -> None:
    s3 = seaweedfs_client(seaweedfs)
    bucket = f"shkill-{os.urandom(3).hex()}"
    s3.create_bucket(Bucket=bucket)
    rng = random.Random(3)
    bodies = {f"big/{i:03d}": rng.randbytes(64 * 1024) for i in range(80)}
    for k, v in bodies.items():
        s3.put_object(Bucket=bucket, Key=k, Body=v)
    root = sshd.root / bucket
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=None, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data"}])
    plan = tmp_path / "plan.json"
    assert _run(["plan", "-f", str(cfg), "--shards", "2", "-o", str(plan)], env_s3, tmp_path / "h")[0] == 0
    env = {**env_s3, "RELOCATE_SHARD_CHUNK": "8", "RELOCATE_BATCH_OBJECTS": "4", "RELOCATE_SHARD": "0"}
    # slowed down so it can be caught mid-shard
    p = _proc(["move", str(plan), "--yes", "--bwlimit", "400k"], env, tmp_path / "h-a", start_new_session=True)
    progress = root / ".relocate/shards/data/0/progress.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if progress.exists() and json.loads(progress.read_text() or "{}").get("chunks", 0) >= 1:
            break
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.communicate()
    done_before = json.loads(progress.read_text())
    assert not done_before["complete"] and done_before["objects"] >= 8

    code, out, err = _run(["move", str(plan), "--yes", "--json"], {**env, "RELOCATE_SHARD_CHUNK": "8"}, tmp_path / "h-b")
    assert code == 0, err
    rep = json.loads(out)["shard"]
    assert rep["objects_skipped"] >= done_before["objects"] and rep["objects_sent"] < rep["objects"]
    assert json.loads(progress.read_text())["complete"]
    paths = map_keys(sorted(bodies))
    for k, body in bodies.items():
        if k < json.loads(plan.read_text())["shards"]["steps"][f"s3:{bucket}/"][1]["start"]:
            assert (root / "data" / paths[k]).read_bytes() == body


def test_worker_runs_steps_in_plan_order_and_progress_counts_what_it_lists(seaweedfs, sshd, tmp_path: Path,
                                                                           env_s3: dict[str, str]) -> None:
    """A `priority: critical` bucket listed after a normal one in relocate.yaml: the plan
    runs it first, and so must every worker (before the fix the worker went by
    relocate.yaml's order: `"steps": ["s3:media/", "s3:backups/"]`). An object added to a
    shard's range after planning, moved with --allow-drift: the NDJSON progress never
    shows more objects than its total, and ends with the range as listed (before the
    fix: `objects` 1 past `total_objects`, which stayed at the plan's count)."""
    s3 = seaweedfs_client(seaweedfs)
    tag = os.urandom(3).hex()
    media, backups = f"shmed-{tag}", f"shbak-{tag}"
    rng = random.Random(11)
    for bucket, n in ((media, 30), (backups, 12)):
        s3.create_bucket(Bucket=bucket)
        for i in range(n):
            s3.put_object(Bucket=bucket, Key=f"k/{i:03d}", Body=rng.randbytes(rng.randint(1, 300)))
    root = sshd.root / media
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=None, sshd=sshd, root=str(root),
                      buckets=[{"bucket": media, "to": "data/media"},
                               {"bucket": backups, "to": "data/backups", "priority": "critical"}])
    plan = tmp_path / "plan.json"
    code, out, err = _run(["plan", "-f", str(cfg), "--shards", "2", "-o", str(plan)], env_s3, tmp_path / "h-plan")
    assert code == 0, err
    doc = json.loads(plan.read_text())
    order = [s["id"] for s in doc["steps"] if s["kind"] == "s3"]
    assert order == [f"s3:{backups}/", f"s3:{media}/"], order  # the plan: critical first
    assert list(doc["shards"]["steps"]) == [f"s3:{media}/", f"s3:{backups}/"]  # the section: relocate.yaml's order

    code, out, err = _run(["move", str(plan), "--shard", "0", "--yes", "--json"], env_s3, tmp_path / "h-0")
    assert code == 0, err
    starts = [json.loads(line) for line in (root / ".relocate/audit.log").read_text().splitlines()]
    starts = [e for e in starts if e["action"] == "shard-start"]
    assert [e["steps"] for e in starts] == [order], starts

    # shard 1 (the last: no end) gets a key after every planned one
    s3.put_object(Bucket=media, Key="k/zzz-added", Body=b"added after the plan")
    ranges = doc["shards"]["steps"]
    planned = sum(r[1]["objects"] for r in ranges.values())
    planned_b = sum(r[1]["bytes"] for r in ranges.values())
    code, out, err = _run(["move", str(plan), "--shard", "1", "--yes", "--json", "--allow-drift"], env_s3, tmp_path / "h-1")
    assert code == 0, err
    assert json.loads(out)["shard"]["objects_sent"] == planned + 1
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    progress = [e for e in events if e.get("event") == "progress"]
    assert progress and all(e["objects"] <= e["total_objects"] for e in progress), progress
    last = progress[-1]
    assert last["objects"] == last["total_objects"] == planned + 1, progress
    assert last["total_bytes"] == planned_b + len(b"added after the plan"), progress


def seaweedfs_client(seaweedfs):
    from servers import s3_client

    return s3_client(seaweedfs.endpoint_url, seaweedfs.access_key, seaweedfs.secret_key)


def _inventory(s3, bucket: str, report_bucket: str, objects: list[dict], fmt: str = "CSV") -> str:
    """An S3 Inventory report of `objects` as AWS writes one: gzip CSV data files without a
    header, keys URL-encoded, and a manifest.json naming them and their schema."""
    import csv
    import gzip
    import io
    from urllib.parse import quote

    s3.create_bucket(Bucket=report_bucket)
    files = []
    for n in range(2):  # two data files, each unsorted
        buf = io.StringIO()
        w = csv.writer(buf, quoting=csv.QUOTE_ALL)
        for o in reversed(objects[n::2]):
            w.writerow([bucket, quote(o["Key"], safe=""), str(o["Size"]), o["LastModified"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                        o["ETag"].strip('"'), "STANDARD"])
        key = f"{bucket}/daily/data/part-{n}.csv.gz"
        s3.put_object(Bucket=report_bucket, Key=key, Body=gzip.compress(buf.getvalue().encode()))
        files.append({"key": key, "size": 1, "MD5checksum": "x"})
    manifest = {"sourceBucket": bucket, "destinationBucket": f"arn:aws:s3:::{report_bucket}", "version": "2016-11-30",
                "creationTimestamp": "1733270400000", "fileFormat": fmt,
                "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass", "files": files}
    key = f"{bucket}/daily/2026-12-04T00-00Z/manifest.json"
    s3.put_object(Bucket=report_bucket, Key=key, Body=json.dumps(manifest).encode())
    return f"s3://{report_bucket}/{key}"


def test_plan_from_s3_inventory_report(seaweedfs, sshd, tmp_path: Path, env_s3: dict[str, str]) -> None:
    s3 = seaweedfs_client(seaweedfs)
    bucket = f"shinv-{os.urandom(3).hex()}"
    bodies = _seed(s3, bucket, 30)
    listed = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", ())]
    url = _inventory(s3, bucket, bucket + "-reports", listed)
    s3.put_object(Bucket=bucket, Key="zz/added-after-the-report", Body=b"late")  # not in the report
    root = sshd.root / bucket
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=None, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data", "inventory": url}])
    plan = tmp_path / "plan.json"
    r = cli("plan", "-f", str(cfg), "--shards", "3", "-o", str(plan), "--json", env=env_s3)
    assert r.exit_code == 0, r.stderr
    ranges = r.json()["shards"]["steps"][f"s3:{bucket}/"]
    assert sum(x["objects"] for x in ranges) == len(bodies), "the report is the listing, not ListObjects"
    assert sum(x["bytes"] for x in ranges) == sum(len(b) for b in bodies.values())
    # the workers list their range live: the late object moves too
    for k in range(3):
        code, out, err = _run(["move", str(plan), "--shard", str(k), "--yes"], env_s3, tmp_path / f"h{k}")
        assert code == 0, err
    assert (root / "data/zz/added-after-the-report").read_bytes() == b"late"

    parquet = _inventory(s3, bucket, bucket + "-pq", listed, fmt="Parquet")
    cfg2 = make_config(tmp_path / "relocate2.yaml", endpoint=None, sshd=sshd, root=str(root),
                       buckets=[{"bucket": bucket, "to": "data", "inventory": parquet}])
    r = cli("plan", "-f", str(cfg2), "--shards", "2", env=env_s3)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert r.exit_code == 2 and "Parquet" in r.stderr and "pyarrow" in r.stderr, r.stderr
    else:
        assert r.exit_code != 0  # the CSV bytes named as Parquet are no Parquet file


def test_status_rates_stragglers_and_projected_finish() -> None:
    from relocate.plan.model import Plan
    from relocate.shards.status import shard_status

    ranges = [{"index": k, "start": "", "end": None, "objects": 100, "bytes": 1000, "digest": ""} for k in range(4)]
    plan = Plan("t", "c", "", "t", "/r", {}, "", shards={"count": 4, "id": "i", "steps": {"s3:b/": ranges}})
    now = 1000.0
    progress = {
        ("s3:b/", 0): {"objects": 100, "bytes": 1000, "started": 0.0, "updated": 500.0, "complete": True},
        ("s3:b/", 1): {"objects": 50, "bytes": 500, "started": 900.0, "updated": 1000.0, "complete": False},  # 100 s left
        ("s3:b/", 2): {"objects": 10, "bytes": 100, "started": 900.0, "updated": 1000.0, "complete": False},  # 900 s left
    }
    doc = shard_status(plan, progress, now)
    rows = doc["shards"]
    assert [r["state"] for r in rows] == ["complete", "running", "running", "not started"]
    assert rows[1]["eta_s"] == 100.0 and rows[2]["eta_s"] == 900.0 and rows[1]["objects_left"] == 50
    assert doc["stragglers"] == [2, 3] and "not started" in rows[3]["why"]
    assert doc["projected_finish_s"] is None  # shard 3 has no rate yet
    assert doc["incomplete"] == [1, 2, 3] and not doc["ready_to_finish"]


def test_worker_on_the_target_host_writes_locally(seaweedfs, sshd, tmp_path: Path, env_s3: dict[str, str]) -> None:
    """--on-target: the worker reads S3 and writes target.root on its own file system, no
    SSH (here the target's root is on this machine, as it is for a worker run there)."""
    s3 = seaweedfs_client(seaweedfs)
    bucket = f"shloc-{os.urandom(3).hex()}"
    bodies = _seed(s3, bucket, 30)
    root = sshd.root / bucket
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=None, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data"}])
    plan = tmp_path / "plan.json"
    assert _run(["plan", "-f", str(cfg), "--shards", "2", "-o", str(plan)], env_s3, tmp_path / "h")[0] == 0
    code, out, err = _run(["move", str(plan), "--shard", "0", "--yes"], env_s3, tmp_path / "h0")  # over SSH
    assert code == 0, err
    # no SSH at all for this one: an unreachable target.ssh would fail any login
    doc = json.loads(plan.read_text())
    doc["config_text"] = doc["config_text"].replace(f"port: {sshd.port}", "port: 1")
    plan.write_text(json.dumps(doc))
    code, out, err = _run(["move", str(plan), "--shard", "1", "--on-target", "--yes", "--json"], env_s3, tmp_path / "h1")
    assert code == 0, err
    rep = json.loads(out)["shard"]
    assert rep["objects_sent"] == doc["shards"]["steps"][f"s3:{bucket}/"][1]["objects"] > 0
    paths = map_keys(sorted(bodies))
    for key, body in bodies.items():
        assert (root / "data" / paths[key]).read_bytes() == body, key
    assert json.loads((root / ".relocate/shards/data/1/progress.json").read_text())["complete"]
    code, out, err = _run(["move", str(plan), "--shard", "1", "--on-target", "--yes", "--json"], env_s3, tmp_path / "h2")
    assert code == 0 and json.loads(out)["shard"]["objects_sent"] == 0, err
