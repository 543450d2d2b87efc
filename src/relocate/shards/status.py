"""`relocate status plan.json`: every shard's progress, read from the target (pure once read).

Per shard: objects and bytes done (what its progress records say is on the target) and
left (the plan's count minus those), its state, and, while a worker runs it, its rate
since it started and when it should end at that rate. States:

- complete: every bucket entry's progress says complete and its records hold it all;
- running: a live worker holds the shard's lock (state.read_workers: its pid still runs,
  or, for a worker on another machine, it touched the lock within the stale time);
  without lock information (`workers` None), a progress record updated within it;
- failed: no live worker, and the last one ended with objects it could not write;
- records missing: its progress says complete, but a chunk of its records is missing,
  unreadable or short (state.record_problems): not complete, run its worker again;
- stopped: started, incomplete, and no live worker (killed, lost, or lock left behind);
- not started: no record and no worker.

Only a running shard has an ETA. A straggler is a shard that is not complete and either
has not started while others run, has not recorded progress for STALLED_S, or would end
more than STRAGGLER_FACTOR times later than the median of the running ones. The projected
finish is the latest running shard's end, unknown while some incomplete shard has no rate
(not started, or nobody runs it).
"""

from __future__ import annotations

import statistics
from typing import Any

from relocate.plan.model import Plan
from relocate.shards.section import as_count

STALLED_S = 900.0
STRAGGLER_FACTOR = 1.5
STALE_S = 900.0  # shards/worker.LOCK_STALE_S: a lock untouched this long is taken over


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def shard_status(plan: Plan, progress: dict[tuple[str, int], dict[str, Any]], now: float, *,
                 workers: dict[int, dict[str, Any]] | None = None,
                 troubles: dict[tuple[str, int], dict[str, Any]] | None = None,
                 stale_s: float = STALE_S) -> dict[str, Any]:
    """`workers`: state.read_workers (None: not read, a recent progress record counts as
    a live worker); `troubles`: state.record_troubles, the complete entries whose records
    do not hold what they completed."""
    assert plan.shards is not None
    section = plan.shards
    count = int(section["count"])
    troubles = troubles or {}
    rows: list[dict[str, Any]] = []
    for k in range(count):
        planned_o = sum(int(r[k]["objects"]) for r in section["steps"].values())
        planned_b = sum(int(r[k]["bytes"]) for r in section["steps"].values())
        recs = [progress.get((sid, k)) for sid in section["steps"]]
        got = [r for r in recs if r]
        broken = {sid: troubles[(sid, k)] for sid in section["steps"] if (sid, k) in troubles}
        done_o = sum(broken[sid]["held"] if sid in broken else (as_count(r.get("objects")) or 0)
                     for sid, r in zip(section["steps"], recs) if r)
        # an entry whose records lost chunks has done what they still hold, bytes as objects
        # (else "objects left 120, bytes left 0 B")
        done_b = sum((as_count(broken[sid].get("held_bytes")) or 0) if sid in broken else (as_count(r.get("bytes")) or 0)
                     for sid, r in zip(section["steps"], recs) if r)
        said_complete = bool(section["steps"]) and all(r and r.get("complete") for r in recs) or not section["steps"]
        complete = said_complete and not broken
        starts = [v for r in got if (v := _num(r.get("started"))) is not None]
        updates = [v for r in got if (v := _num(r.get("updated"))) is not None]
        started, updated = (min(starts) if starts else None), (max(updates) if updates else None)
        failed = sum((as_count(r.get("failed")) or 0) for r in got)
        worker = (workers or {}).get(k)
        if workers is not None:
            live = bool(worker and worker["live"])
        else:
            live = updated is not None and now - updated <= stale_s and not failed and not said_complete
        if complete:
            state, detail = "complete", ""
        elif live:
            state = "running"
            detail = f"worker {worker.get('who') or '?'}: {worker['how']}" if worker else "progress recorded recently"
        elif said_complete:
            state = "records missing"
            detail = "; ".join(f"{sid}: {'; '.join(t['problems'])}" for sid, t in broken.items()) + "; run its worker again"
        elif failed:
            state, detail = "failed", f"{failed} object(s) failed in its last run; fix the cause and run it again"
        elif not got:
            state, detail = "not started", ""
        else:
            state = "stopped"
            detail = f"no live worker ({worker['how'] if worker else 'none holds its lock'}); run it again"
        left_o, left_b = (0, 0) if complete else (max(0, planned_o - done_o), max(0, planned_b - done_b))
        eta = None
        if state == "running" and started is not None and updated is not None and updated > started and (done_b or done_o):
            span = updated - started
            by_bytes = left_b / (done_b / span) if done_b else 0.0
            by_count = left_o / (done_o / span) if done_o else 0.0
            eta = max(by_bytes, by_count) - (now - updated)
            eta = max(eta, 0.0)
        rows.append({"shard": k, "state": state, "objects_done": done_o, "bytes_done": done_b, "objects_left": left_o,
                     "bytes_left": left_b, "objects": planned_o, "bytes": planned_b, "started": started, "updated": updated,
                     "eta_s": round(eta, 1) if eta is not None else None, "straggler": False, "why": "",
                     "failed": failed, "detail": detail,
                     "worker": None if not worker else {key: worker[key] for key in ("who", "host", "pid", "since", "heartbeat_s", "live")}})
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
        "running": [r["shard"] for r in running],
        # incomplete, started, and nobody runs them: run their workers again
        "stopped": [r["shard"] for r in rows if r["state"] in ("stopped", "failed", "records missing")],
        "failed_objects": sum(r["failed"] for r in rows),
        "objects_done": sum(r["objects_done"] for r in rows), "bytes_done": sum(r["bytes_done"] for r in rows),
        "objects_left": sum(r["objects_left"] for r in rows), "bytes_left": sum(r["bytes_left"] for r in rows),
        # seconds from now until the last shard ends at its own rate; None: some incomplete
        # shard has no rate (not started, or no worker runs it)
        "projected_finish_s": round(finish_eta, 1) if finish_eta is not None else None,
        "ready_to_finish": not incomplete,
    }
