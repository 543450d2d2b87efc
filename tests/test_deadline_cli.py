"""`plan --probe/--deadline/--format markdown` and `move --deadline` against real servers
(moto + OpenSSH sshd): estimates from measured rates, plan and move leave the same steps,
and a move that cannot meet its deadline moves critical data first, stops, and a later run
resumes."""

from __future__ import annotations

import json

import datetime as dt
import re
from pathlib import Path

import pytest

from helpers import aws_client, cli, make_config

PAST = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def setup(moto: str, sshd, tmp_path: Path) -> tuple[Path, Path]:
    s3 = aws_client("s3", moto)
    for bucket, n in (("thumbs", 4), ("uploads", 3)):
        s3.create_bucket(Bucket=bucket)
        for i in range(n):
            s3.put_object(Bucket=bucket, Key=f"{bucket}/{i}", Body=bytes([i]) * (1000 + i))
    s3.put_object(Bucket="thumbs", Key="large.bin", Body=b"\x07" * (3 << 20))
    aws_client("ssm", moto).put_parameter(Name="/app/prod/mode", Value="production", Type="String")
    root = sshd.root / f"deadline-{tmp_path.name}"
    # thumbs is listed first in relocate.yaml but is bulk: the deadline order moves uploads first
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "thumbs", "to": "data/thumbs", "priority": "bulk"},
                               {"bucket": "uploads", "to": "data/uploads", "priority": "critical"}],
                      parameters=[{"path": "/app/prod/", "to": "shared/app.env"}])
    return cfg, root


def test_plan_probe_deadline_and_egress(setup: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _ = setup
    # The probe sends real objects through the move's own pusher (a spy records them, then
    # the real run goes on): one alone for the setup cost, then the sample.
    from relocate.execute import probe

    sent: list[list[str]] = []

    class Spy(probe.BucketPusher):
        def run(self, objs, commit):  # type: ignore[override]
            sent.append([o.key for o in objs])
            return super().run(objs, commit)

    monkeypatch.setattr(probe, "BucketPusher", Spy)
    run = cli("plan", "-f", str(cfg), "--probe", "--deadline", "6h", "--json")
    assert run.exit_code == 0, run.stderr
    plan = run.json()
    assert plan["estimate_basis"].startswith("measured: 8 real objects") and "the move's own path" in plan["estimate_basis"]
    assert len(sent[0]) == 1 and sorted(k for batch in sent[1:] for k in batch) == sorted(
        [f"thumbs/{i}" for i in range(4)] + ["large.bin"] + [f"uploads/{i}" for i in range(3)])
    rng = plan["estimate_range"]
    assert 0 < rng["low_s"] <= rng["high_s"]
    assert [s["id"] for s in plan["steps"]] == ["env:shared/app.env", "s3:uploads/", "s3:thumbs/", "verify"]
    assert plan["schedule"]["misses"] == [] and len(plan["schedule"]["steps"]) == 4
    assert plan["egress"]["bytes"] == plan["totals"]["todo_bytes"] and plan["egress"]["as_of"]
    # the probe left nothing behind on the target
    assert not list(Path(plan["facts"]["existing"]).glob(".relocate-probe-*"))

    text = cli("plan", "-f", str(cfg))
    assert "conservative defaults" in text.stdout and "AWS egress" in text.stdout
    probed = cli("plan", "-f", str(cfg), "--probe")
    assert probed.exit_code == 0 and re.search(r"estimated \S+-\S+ at measured: 8 real objects", probed.stdout), probed.stdout


def test_plan_exits_3_when_critical_data_misses_the_deadline(setup: tuple[Path, Path]) -> None:
    """Issue 7: exit 3 if something marked critical will not make it (a passed deadline
    with critical work left included); the bucket `move` would leave is named too."""
    cfg, _ = setup
    run = cli("plan", "-f", str(cfg), "--deadline", PAST, "--format", "json")
    assert run.exit_code == 3
    plan = run.json()
    assert [b["code"] for b in plan["blockers"]] == ["deadline"] and "env:shared/app.env" in plan["blockers"][0]["message"]
    assert "(already passed)" in plan["blockers"][0]["message"]
    sched = plan["schedule"]
    assert sched["left"] == ["s3:thumbs/"] and sched["critical_misses"] == ["env:shared/app.env", "s3:uploads/"]
    md = cli("plan", "-f", str(cfg), "--deadline", PAST, env={"RELOCATE_PLAN_FORMAT": "markdown"})
    assert md.exit_code == 3 and md.stdout.startswith("## relocate plan") and "**Blocked**" in md.stdout
    bad = cli("plan", "-f", str(cfg), "--deadline", "tomorrow-ish")
    assert bad.exit_code == 2 and "--deadline" in bad.stderr and "Traceback" not in bad.stderr


def test_move_on_a_fresh_plan_is_blocked_as_plan_shows(setup: tuple[Path, Path]) -> None:
    """`move --deadline` without a saved plan applies the deadline rules `plan --deadline`
    shows: a critical step that cannot finish in time blocks (exit 3) and nothing is written."""
    cfg, root = setup
    shown = cli("plan", "-f", str(cfg), "--deadline", PAST, "--json")
    assert shown.exit_code == 3
    want = [b["message"].split(" is projected")[0] for b in shown.json()["blockers"] if b["code"] == "deadline"]
    assert want == ["env:shared/app.env is critical but"]
    run = cli("move", "-f", str(cfg), "--yes", "--deadline", PAST)
    assert run.exit_code == 3, run.stdout + run.stderr
    assert "the plan has 1 blocker(s): env:shared/app.env is critical but is projected to finish at" in run.stderr
    assert "env:shared/app.env is critical but is projected" in run.stdout  # the plan it shows has the blocker
    assert not root.exists() or not any(root.rglob("*"))


def test_plan_and_move_leave_the_same_steps_inside_the_reserve(setup: tuple[Path, Path]) -> None:
    """`plan --deadline 20s` used to show every step ok (finishing in seconds) while
    `move --deadline 20s` left the bulk bucket: the 30 s reserve applied only in move."""
    cfg, root = setup
    shown = cli("plan", "-f", str(cfg), "--deadline", "20s", "--json")
    assert shown.exit_code == 0, shown.stderr
    sched = shown.json()["schedule"]
    assert sched["left"] == ["s3:thumbs/"] and sched["misses"] == ["s3:thumbs/"] and sched["reserve_s"] == 30.0
    assert any(w["code"] == "deadline" and w["message"].startswith("1 step(s) will not finish by")
               and "s3:thumbs/" in w["message"] and "reserve of max(30 s, 2% of the time left)" in w["message"]
               for w in shown.json()["warnings"])
    text = cli("plan", "-f", str(cfg), "--deadline", "20s")
    assert re.search(r"LEFT bulk +s3:thumbs/  not started: left for a later run", text.stdout) and re.search(r"ok   critical s3:uploads/", text.stdout)
    run = cli("move", "-f", str(cfg), "--yes", "--deadline", "20s", "--json")
    assert run.exit_code == 4, run.stderr
    left = run.json()["result"]["left"]
    assert len(left) == 1 and left[0].startswith("s3:thumbs/: 5 object(s)")
    # with room to spare both agree the other way: nothing left, the move completes
    roomy = cli("plan", "-f", str(cfg), "--deadline", "10m", "--json")
    assert roomy.exit_code == 0 and roomy.json()["schedule"]["left"] == []
    again = cli("move", "-f", str(cfg), "--yes", "--deadline", "10m", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["result"]["left"] == [] and again.json()["result"]["objects_sent"] == 5


def test_nothing_to_do_never_misses_a_passed_deadline(setup: tuple[Path, Path]) -> None:
    """Once everything is on the target, a passed deadline neither blocks nor misses: the
    steps have nothing to do (it used to exit 3 on the env step's estimate)."""
    cfg, root = setup
    assert cli("move", "-f", str(cfg), "--yes").exit_code == 0
    shown = cli("plan", "-f", str(cfg), "--deadline", PAST, "--json")
    assert shown.exit_code == 0, shown.stdout
    plan = shown.json()
    assert all(s["todo_count"] == 0 for s in plan["steps"])
    assert plan["blockers"] == [] and plan["schedule"]["misses"] == [] and plan["schedule"]["left"] == []
    assert all(s["fits"] for s in plan["schedule"]["steps"])
    (passed,) = [w["message"] for w in plan["warnings"] if w["code"] == "deadline"]
    assert "has passed" in passed and "no critical step has anything left to do" in passed
    run = cli("move", "-f", str(cfg), "--yes", "--deadline", PAST, "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert run.json()["result"]["left"] == [] and run.json()["result"]["nothing_to_do"]


def test_move_with_a_deadline_it_cannot_meet_stops_in_order_and_resumes(setup: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, root = setup
    # Planned without a deadline (ready); the move then runs against one already past:
    # the saved plan keeps its findings, and the runner leaves what cannot finish in time.
    saved = tmp_path / "plan.json"
    assert cli("plan", "-f", str(cfg), "-o", str(saved)).exit_code == 0
    run = cli("move", str(saved), "--yes", "--deadline", PAST, "--json")
    assert run.exit_code == 4, run.stderr
    result = run.json()["result"]
    assert len(result["left"]) == 1 and result["left"][0].startswith("s3:thumbs/: 5 object(s)")
    # critical first: the env file and the critical bucket are there, the bulk one is not
    assert (root / "shared/app.env").exists()
    assert sorted(p.name for p in (root / "data/uploads/uploads").iterdir()) == ["0", "1", "2"]
    assert not (root / "data/thumbs").exists() or not any((root / "data/thumbs").rglob("*"))
    # a later run resumes: only what was left moves, and everything verifies
    again = cli("move", "-f", str(cfg), "--yes", "--json")
    assert again.exit_code == 0, again.stderr
    res = again.json()["result"]
    assert res["objects_sent"] == 5 and res["objects_skipped"] == 3 and res["left"] == [] and res["verify"]["ok"]
    assert (root / "data/thumbs/large.bin").stat().st_size == 3 << 20


def test_no_input_never_prompts(setup: tuple[Path, Path]) -> None:
    cfg, root = setup
    run = cli("--no-input", "move", "-f", str(cfg))
    assert run.exit_code == 2 and "--yes" in run.stderr
    assert not (root / "data").exists()


def test_egress_priced_by_each_buckets_region(moto: str, sshd, tmp_path: Path) -> None:
    # relocate.yaml says us-east-1; one bucket lives in ap-southeast-1. AWS bills transfer out
    # by the source region, so the plan prices that bucket at Singapore's rates.
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="sg-media", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"})
    s3.create_bucket(Bucket="va-media")
    for bucket in ("sg-media", "va-media"):
        s3.put_object(Bucket=bucket, Key="a.bin", Body=b"\x01" * 5000)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / f"eg-{tmp_path.name}"),
                      buckets=[{"bucket": "sg-media", "to": "data/sg"}, {"bucket": "va-media", "to": "data/va"}])
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stderr
    plan = run.json()
    assert {s["id"]: s["region"] for s in plan["steps"] if s["kind"] == "s3"} == {"s3:sg-media/": "ap-southeast-1",
                                                                                 "s3:va-media/": "us-east-1"}
    rows = {r["region"]: r for r in plan["egress"]["by_region"]}
    assert set(rows) == {"ap-southeast-1", "us-east-1"} and rows["ap-southeast-1"]["rates_region"] == "ap-southeast-1"
    assert rows["ap-southeast-1"]["bytes"] == 5000 and rows["us-east-1"]["rates_region"] == "us-east-1"
    assert "AWS waives" in plan["egress"]["exit_waiver"]
    # the shipped ap-southeast-1 rates were checked 2024-11-01, over a year ago: the plan warns
    assert plan["egress"]["rates_stale"] and plan["egress"]["as_of"] == "2024-11-01"
    assert any(w["code"] == "egress-rates-stale" and "2024-11-01" in w["message"] for w in plan["warnings"])
    text = cli("plan", "-f", str(cfg))
    assert "ap-southeast-1" in text.stdout and "AWS waives" in text.stdout


def test_a_saved_plan_runs_against_the_deadline_it_was_made_with(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """`plan --deadline 20s -o plan.json` showed the bulk bucket as LEFT: `move plan.json`
    without --deadline leaves it too (it had moved everything, while its own JSON's
    schedule said "left"); --deadline on the move gives another."""
    cfg, root = setup
    saved = tmp_path / "plan.json"
    shown = cli("plan", "-f", str(cfg), "--deadline", "20s", "-o", str(saved))
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(saved.read_text())["schedule"]["left"] == ["s3:thumbs/"]
    run = cli("move", str(saved), "--yes", "--json")
    assert run.exit_code == 4, run.stdout + run.stderr
    assert [x.split(": ", 1)[0] for x in run.json()["result"]["left"]] == ["s3:thumbs/"]
    again = cli("move", str(saved), "--yes", "--json", "--deadline", "10m")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert again.json()["result"]["left"] == [] and again.json()["result"]["objects_sent"] == 5
