"""A sharded plan.json as the commands read it: an edited or damaged `shards` section is
refused with exit 2 and one line naming the field, by every command that reads it; its `id`
must be the ranges' digest; `--shard` and the engines' variables are plain decimals;
RELOCATE_SHARD=auto means auto and does not fight an explicit --finish; an empty shard
has `start: null`; and `--finish` refuses a source that changed since the plan (exit 6)
unless --allow-drift, saying then what was not moved.

Against the real servers of tests/test_shards.py: SeaweedFS for S3, moto for SSM, an
OpenSSH sshd for the target; workers and finishes run as real `relocate` processes."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from helpers import aws_client, cli, make_config
from test_shards import _run, _seed, env_s3, seaweedfs_client  # noqa: F401  (env_s3: a fixture)

from relocate.shards.partition import partition


def _plan(tmp_path: Path, seaweedfs: Any, sshd: Any, env: dict[str, str], n: int, *, keys: list[str] | None = None,
          seed: int = 12, parameters: str | None = None) -> tuple[Path, str, Path, Any]:
    s3 = seaweedfs_client(seaweedfs)
    bucket = f"shpf-{os.urandom(3).hex()}"
    if keys is None:
        _seed(s3, bucket, seed)
    else:
        s3.create_bucket(Bucket=bucket)
        for k in keys:
            s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    root = sshd.root / bucket
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=None, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data"}],
                      parameters=[{"path": parameters, "to": "shared/app.env"}] if parameters else None)
    plan = tmp_path / "plan.json"
    code, out, err = _run(["plan", "-f", str(cfg), "--shards", str(n), "-o", str(plan)], env, tmp_path / "h-plan")
    assert code == 0, err
    return plan, bucket, root, s3


def _one_line(stderr: str) -> str:
    lines = [x for x in stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr and "internal error" not in stderr, stderr
    return lines[0]


# --- A and B: the shards section, checked where the plan is loaded --------------------

def _ranges(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return next(iter(doc["shards"]["steps"].values()))


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        node = doc
        for p in path[:-1]:
            node = node[p] if p != "*" else next(iter(node.values()))
        node[path[-1]] = value
    return edit


def _del_id(doc: dict[str, Any]) -> None:
    del doc["shards"]["id"]


def _drop_range(doc: dict[str, Any]) -> None:
    _ranges(doc).pop()


def _swap_index(doc: dict[str, Any]) -> None:
    r = _ranges(doc)
    r[0]["index"], r[1]["index"] = r[1]["index"], r[0]["index"]


def _swap_ranges(doc: dict[str, Any]) -> None:  # index kept with its range, order changed
    r = _ranges(doc)
    r[0], r[1] = r[1], r[0]


def _more_objects(doc: dict[str, Any]) -> None:  # well-formed, but not what was planned
    _ranges(doc)[1]["objects"] += 1


def _move_cut(doc: dict[str, Any]) -> None:  # still tiles the key space, but not the planned cut
    r = _ranges(doc)
    r[0]["end"] = r[1]["start"] = r[1]["start"] + "\x00"


# (what is done to plan.json, the field the one line must name)
EDITS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("id removed", _del_id, "`shards.id` is missing"),
    ("steps null", _set(["shards", "steps"], None), "`shards.steps` is null"),
    ("shards a string", _set(["shards"], "yes"), "`shards` is \"yes\""),
    ("start a number", _set(["shards", "steps", "*", 1, "start"], 5), "[1].start` is 5"),
    ("objects a word", _set(["shards", "steps", "*", 1, "objects"], "many"), "[1].objects` is \"many\""),
    ("count 5, 3 ranges", _set(["shards", "count"], 5), "has 3 range(s), but `shards.count` is 5"),
    ("a range dropped", _drop_range, "has 2 range(s), but `shards.count` is 3"),
    ("count 2 of 3", _set(["shards", "count"], 2), "has 3 range(s), but `shards.count` is 2"),
    ("indexes swapped", _swap_index, "[0].index` is 1, expected 0"),
    ("ranges swapped", _swap_ranges, "[0].index` is 1, expected 0"),
    ("index 7", _set(["shards", "steps", "*", 2, "index"], 7), "[2].index` is 7, expected 2"),
    ("objects edited", _more_objects, "`shards.id`"),
    ("cut moved", _move_cut, "`shards.id`"),
    ("id edited", _set(["shards", "id"], "0123456789abcdef"), "`shards.id` 0123456789abcdef is not the digest"),
]


def test_damaged_or_edited_shards_section_is_exit_2_naming_the_field(seaweedfs, sshd, tmp_path: Path,
                                                                     env_s3: dict[str, str]) -> None:
    plan, _, _, _ = _plan(tmp_path, seaweedfs, sshd, env_s3, 3)
    good = json.loads(plan.read_text())
    assert all(r["start"] for r in _ranges(good)[1:]), "the corpus gives three non-empty shards"
    # the plan as written is accepted: status reads the target (nothing started yet: exit 4)
    r = cli("status", str(plan), "--json", env=env_s3)
    assert r.exit_code == 4 and r.json()["incomplete"] == [0, 1, 2], r.stderr
    bad = tmp_path / "bad.json"
    for what, edit, names in EDITS:
        doc = copy.deepcopy(good)
        edit(doc)
        bad.write_text(json.dumps(doc))
        for args, env in ((["move", str(bad), "--shard", "0", "--yes"], {}),
                          (["move", str(bad), "--shard", "auto", "--yes"], {"JOB_COMPLETION_INDEX": "1"}),
                          (["move", str(bad), "--finish", "--yes"], {}),
                          (["status", str(bad)], {}),
                          (["verify", str(bad)], {}),
                          (["shards", "emit", "--engine", "kubernetes", str(bad)], {})):
            r = cli(*args, env={**env_s3, **env})
            line = _one_line(r.stderr)
            assert r.exit_code == 2, (what, args, r.exit_code, r.stderr)
            assert names in line and "damaged plan file" in line, (what, args, line)
            assert "relocate plan --shards N -o plan.json" in line, line


# --- C: --shard and the engines' variables are plain decimals ------------------------

def test_shard_numbers_are_plain_ascii_decimals(seaweedfs, sshd, tmp_path: Path, env_s3: dict[str, str]) -> None:
    plan, _, root, _ = _plan(tmp_path, seaweedfs, sshd, env_s3, 2, seed=6)
    for value in ("01", "+1", " 1", "1 ", "\u0661", "1_0", "0x1", "-0", ""):
        r = cli("move", str(plan), "--shard", value, "--yes", env=env_s3)
        line = _one_line(r.stderr)
        assert r.exit_code == 2 and "plain decimal" in line, (value, line)
    for var in ("RELOCATE_SHARD", "JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID",
                "NOMAD_ALLOC_INDEX"):
        for value in ("01", "+1", " 1", "\u0661"):
            r = cli("move", str(plan), "--shard", "auto", "--yes", env={**env_s3, var: value})
            line = _one_line(r.stderr)
            assert r.exit_code == 2 and "plain decimal" in line and var in line, (var, value, line)
    r = cli("move", str(plan), "--shard", "auto", "--yes",
            env={**env_s3, "SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "01"})
    assert r.exit_code == 2 and "SLURM_ARRAY_TASK_MIN" in _one_line(r.stderr), r.stderr
    r = cli("move", str(plan), "--yes", env={**env_s3, "RELOCATE_SHARD": "01"})  # --shard's own variable
    assert r.exit_code == 2 and "plain decimal" in _one_line(r.stderr), r.stderr
    assert not (root / "data").exists(), "no worker ran"
    # the plain ones still work: "0" itself, and an engine's 1-based index
    code, out, err = _run(["move", str(plan), "--shard", "0", "--yes", "--json"], env_s3, tmp_path / "h0")
    assert code == 0 and json.loads(out)["shard"]["shard"] == 0, err
    code, out, err = _run(["move", str(plan), "--shard", "auto", "--yes", "--json"], {**env_s3, "CI_NODE_INDEX": "2"},
                          tmp_path / "h1")
    assert code == 0 and json.loads(out)["shard"]["shard"] == 1, err


# --- D: RELOCATE_SHARD=auto, and RELOCATE_SHARD beside --finish -----------------------

def test_relocate_shard_auto_and_finish_beside_it(seaweedfs, moto: str, sshd, tmp_path: Path,
                                                  env_s3: dict[str, str]) -> None:
    name = f"/shpf-{os.urandom(3).hex()}/"
    aws_client("ssm", moto).put_parameter(Name=f"{name}mode", Value="production", Type="String")
    # (a parameter gives the finish a step of its own: a finish with none but verify hits a
    # bug of execute/runner.py outside this test's subject, reported separately)
    plan, _, root, _ = _plan(tmp_path, seaweedfs, sshd, env_s3, 2, seed=6, parameters=name)
    # RELOCATE_SHARD=auto (--shard's variable, as --help lists it): the engines' variables decide
    for k in range(2):
        code, out, err = _run(["move", str(plan), "--yes", "--json"],
                              {**env_s3, "RELOCATE_SHARD": "auto", "JOB_COMPLETION_INDEX": str(k)}, tmp_path / f"h{k}")
        assert code == 0 and json.loads(out)["shard"]["shard"] == k, err
    r = cli("move", str(plan), "--yes", env={**env_s3, "RELOCATE_SHARD": "auto"})
    line = _one_line(r.stderr)
    assert r.exit_code == 2 and "none of JOB_COMPLETION_INDEX" in line and "not an integer" not in line, line
    # an explicit --shard with --finish is still refused ...
    r = cli("move", str(plan), "--shard", "1", "--finish", "--yes", env=env_s3)
    assert r.exit_code == 2 and "one at a time" in _one_line(r.stderr), r.stderr
    # ... but a RELOCATE_SHARD the worker's job left in the environment does not stop the finish
    code, out, err = _run(["move", str(plan), "--finish", "--yes", "--json"], {**env_s3, "RELOCATE_SHARD": "1"},
                          tmp_path / "hf")
    assert code == 0, err
    assert json.loads(out)["result"]["verify"]["ok"]
    assert "MODE='production'" in (root / "shared/app.env").read_text()

    # (F) a parameter changed since the plan, no object did: the finish's refusal names the
    # sharded plan's command, as a worker's does, not the unsharded `relocate plan -o`
    aws_client("ssm", moto).put_parameter(Name=f"{name}mode", Value="maintenance", Type="String", Overwrite=True)
    code, out, err = _run(["move", str(plan), "--finish", "--yes"], env_s3, tmp_path / "hf2")
    assert code == 6 and "source changed" in err and "Traceback" not in err, err
    assert "relocate plan --shards 2 -o plan.json" in err and "`relocate plan -o`" not in err, err


# --- E: an empty shard starts nowhere ------------------------------------------------

def test_empty_shards_have_null_start(seaweedfs, sshd, tmp_path: Path, env_s3: dict[str, str]) -> None:
    plan, bucket, root, _ = _plan(tmp_path, seaweedfs, sshd, env_s3, 5, keys=["a", "b/c", "z"])
    ranges = _ranges(json.loads(plan.read_text()))
    assert sum(r["objects"] for r in ranges) == 3
    for r in ranges:
        if r["objects"] == 0:
            assert r["start"] is None and r["end"] is None, ranges
        else:
            assert r["start"] is not None, ranges
    assert [r["start"] for r in ranges if r["start"] is not None] == ["", "b/c", "z"], ranges
    live = [r for r in ranges if r["start"] is not None]
    assert all(a["end"] == b["start"] for a, b in zip(live, live[1:])) and live[-1]["end"] is None
    # the same cut from the partition alone, at every N up to 9: an empty range is never [k, k)
    for n in range(1, 10):
        for r in partition(iter([("a", 1, "e"), ("b/c", 1, "e"), ("z", 1, "e")]), n, 3, 3):
            assert (r.start is None) == (r.objects == 0 and r.index > 0) and (r.start is not None or r.end is None)
    # and such a plan runs: every shard, empty ones too, then the finish
    for k in range(5):
        code, out, err = _run(["move", str(plan), "--shard", str(k), "--yes"], env_s3, tmp_path / f"h{k}")
        assert code == 0, err
    assert sorted(p.name for p in (root / "data").rglob("*") if p.is_file()) == ["a", "c", "z"]


# --- F: --finish and a source that changed since the plan ----------------------------

def test_finish_refuses_s3_drift_unless_allowed_and_names_what_was_not_moved(seaweedfs, moto: str, sshd, tmp_path: Path,
                                                                            env_s3: dict[str, str]) -> None:
    name = f"/shpf-{os.urandom(3).hex()}/"
    ssm = aws_client("ssm", moto)
    ssm.put_parameter(Name=f"{name}mode", Value="production", Type="String")
    plan, bucket, root, s3 = _plan(tmp_path, seaweedfs, sshd, env_s3, 2, seed=10, parameters=name)
    for k in range(2):
        code, out, err = _run(["move", str(plan), "--shard", str(k), "--yes"], env_s3, tmp_path / f"h{k}")
        assert code == 0, err

    # objects written to the bucket after the workers ran: refused (before, exit 0 "OK"),
    # with the sharded plan's command in the hint
    s3.put_object(Bucket=bucket, Key="zz/late-1", Body=b"late")
    s3.put_object(Bucket=bucket, Key="media/late-2", Body=b"later")
    code, out, err = _run(["move", str(plan), "--finish", "--yes"], env_s3, tmp_path / "hf1")
    assert code == 6 and "source changed" in err and "shard range(s)" in err and "Traceback" not in err, err
    assert f"s3://{bucket}/ shard" in err and "relocate plan --shards 2 -o plan.json" in err, err
    assert "Traceback" not in err and not (root / "shared/app.env").exists(), "the refused finish ran nothing"

    # --allow-drift: the finish runs, and says plainly which ranges' new objects were not moved
    ssm.put_parameter(Name=f"{name}mode", Value="maintenance", Type="String", Overwrite=True)  # allowed as well
    code, out, err = _run(["move", str(plan), "--finish", "--yes", "--allow-drift", "--json"], env_s3, tmp_path / "hf2")
    assert code == 0, err
    assert "not moved (--allow-drift)" in err and f"s3://{bucket}/ shard" in err, err
    warned = [w["message"] for w in json.loads(out)["plan"]["warnings"] if w["code"] == "drift"]
    assert warned and all("not moved" in w for w in warned), warned
    ranges = _ranges(json.loads(plan.read_text()))
    shards_hit = {next(r["index"] for r in ranges if r["start"] is not None and r["start"] <= key
                       and (r["end"] is None or key < r["end"])) for key in ("zz/late-1", "media/late-2")}
    assert {int(w.split(" shard ")[1].split(":")[0]) for w in warned} == shards_hit, warned
    assert not (root / "data/zz/late-1").exists()  # what it said: not moved
    assert "MODE='maintenance'" in (root / "shared/app.env").read_text()

    # what the hint says: those shards run again (--allow-drift: their ranges changed since
    # the plan) move the new objects, and the finish then has nothing left to refuse
    for k in sorted(shards_hit):
        code, out, err = _run(["move", str(plan), "--shard", str(k), "--yes", "--allow-drift"], env_s3, tmp_path / f"h{k}b")
        assert code == 0, err
    # (--allow-drift for the parameter changed above: no object range is named any more)
    code, out, err = _run(["move", str(plan), "--finish", "--yes", "--allow-drift", "--json"], env_s3, tmp_path / "hf3")
    assert code == 0 and "not moved" not in err, err
    assert not [w for w in json.loads(out)["plan"]["warnings"] if w["code"] == "drift"]
    assert (root / "data/zz/late-1").read_bytes() == b"late" and (root / "data/media/late-2").read_bytes() == b"later"


def test_a_finish_with_nothing_but_the_shards_objects(seaweedfs, moto: str, sshd, tmp_path: Path,
                                                      env_s3: dict[str, str]) -> None:
    """A plan whose only step is a bucket: the finish has no step of its own to run, writes
    the snapshot of the target (the first on this machine) and verifies across the shards,
    instead of stopping with exit 1 (`outcome` unbound in execute/runner.py)."""
    plan, _, root, _ = _plan(tmp_path, seaweedfs, sshd, env_s3, 2, seed=4)
    for k in range(2):
        code, out, err = _run(["move", str(plan), "--shard", str(k), "--yes"], env_s3, tmp_path / f"h{k}")
        assert code == 0, err
    code, out, err = _run(["move", str(plan), "--finish", "--yes", "--json"], env_s3, tmp_path / "hf")
    assert code == 0, err
    result = json.loads(out)["result"]
    assert result["verify"]["ok"] and result["snapshot"], result


def test_an_interrupted_worker_says_so_in_the_audit_log(seaweedfs, moto: str, sshd, tmp_path: Path,
                                                         env_s3: dict[str, str]) -> None:
    """A worker stopped by SIGTERM (a pod evicted) ends its shard's audit lines with a
    `shard-end` whose result is `error`, gives its lock back and exits 5; it wrote only
    `shard-start` before."""
    import signal
    import time

    from test_shards import _proc

    plan, _, root, _ = _plan(tmp_path, seaweedfs, sshd, env_s3, 2, seed=40)
    proc = _proc(["move", str(plan), "--shard", "0", "--yes", "--json", "--bwlimit", "20k", "--lanes", "1"],
                 {**env_s3, "RELOCATE_BATCH_OBJECTS": "2"}, tmp_path / "h0")
    audit = root / ".relocate" / "audit.log"
    deadline = time.monotonic() + 60
    while (not audit.exists() or "shard-start" not in audit.read_text()) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, err
    last = json.loads(audit.read_text().splitlines()[-1])
    assert last["action"] == "shard-end" and last["result"] == "error" and last["error"] == "Terminated", last
    assert not (root / ".relocate" / "shards" / "locks" / "0").exists()
