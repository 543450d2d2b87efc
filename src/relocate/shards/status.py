"""`relocate status plan.json`: every shard's progress, read from the target (pure once read).

Per shard: objects and bytes done (what its progress records say is on the target) and
left (the plan's count minus those), its rate since it started, and when it should end
at that rate. A straggler is a shard that is not complete and either has not started
while others have, has not recorded progress for STALLED_S, or would end more than
STRAGGLER_FACTOR times later than the median of the running ones. The projected finish
is the latest shard's end.
"""

from __future__ import annotations

import statistics
from typing import Any

from relocate.plan.model import Plan

STALLED_S = 900.0
STRAGGLER_FACTOR = 1.5


def shard_status(plan: Plan, progress: dict[tuple[str, int], dict[str, Any]], now: float) -> dict[str, Any]:
    assert plan.shards is not None
    section = plan.shards
    count = int(section["count"])
    rows: list[dict[str, Any]] = []
    for k in range(count):
        planned_o = sum(int(r[k]["objects"]) for r in section["steps"].values())
        planned_b = sum(int(r[k]["bytes"]) for r in section["steps"].values())
        recs = [progress.get((sid, k)) for sid in section["steps"]]
        got = [r for r in recs if r]
        done_o = sum(int(r.get("objects", 0)) for r in got)
        done_b = sum(int(r.get("bytes", 0)) for r in got)
        complete = bool(section["steps"]) and all(r and r.get("complete") for r in recs) or not section["steps"]
        started = min((float(r["started"]) for r in got if "started" in r), default=None)
        updated = max((float(r["updated"]) for r in got if "updated" in r), default=None)
        left_o, left_b = (0, 0) if complete else (max(0, planned_o - done_o), max(0, planned_b - done_b))
        eta = None
        if not complete and started is not None and updated is not None and updated > started and (done_b or done_o):
            span = updated - started
            by_bytes = left_b / (done_b / span) if done_b else 0.0
            by_count = left_o / (done_o / span) if done_o else 0.0
            eta = max(by_bytes, by_count) - (now - updated)
            eta = max(eta, 0.0)
        state = "complete" if complete else ("not started" if not got else "running")
        rows.append({"shard": k, "state": state, "objects_done": done_o, "bytes_done": done_b, "objects_left": left_o,
                     "bytes_left": left_b, "objects": planned_o, "bytes": planned_b, "started": started, "updated": updated,
                     "eta_s": round(eta, 1) if eta is not None else None, "straggler": False, "why": ""})
    running = [r for r in rows if r["state"] == "running"]
    etas = [r["eta_s"] for r in running if r["eta_s"] is not None]
    median = statistics.median(etas) if etas else None
    for r in rows:
        if r["state"] == "complete":
            continue
        if r["state"] == "not started" and running:
            r["straggler"], r["why"] = True, "not started while others run"
        elif r["updated"] is not None and now - r["updated"] > STALLED_S:
            r["straggler"], r["why"] = True, f"no progress for {now - r['updated']:.0f}s"
        elif median and r["eta_s"] is not None and r["eta_s"] > STRAGGLER_FACTOR * median:
            r["straggler"], r["why"] = True, f"ends {r['eta_s'] / median:.1f}x later than the median shard"
    incomplete = [r for r in rows if r["state"] != "complete"]
    finish_eta = None
    if not incomplete:
        finish_eta = 0.0
    elif all(r["eta_s"] is not None for r in incomplete):
        finish_eta = max(r["eta_s"] for r in incomplete)
    return {
        "shards": rows,
        "count": count,
        "complete": len(rows) - len(incomplete),
        "incomplete": [r["shard"] for r in incomplete],
        "stragglers": [r["shard"] for r in rows if r["straggler"]],
        "objects_done": sum(r["objects_done"] for r in rows), "bytes_done": sum(r["bytes_done"] for r in rows),
        "objects_left": sum(r["objects_left"] for r in rows), "bytes_left": sum(r["bytes_left"] for r in rows),
        # seconds from now until the last shard ends at its own rate; None: some shard has no rate yet
        "projected_finish_s": round(finish_eta, 1) if finish_eta is not None else None,
        "ready_to_finish": not incomplete,
    }
