"""One verification across all shards (`relocate verify plan.json`, `move --finish`):
every object each shard recorded is hashed on the target, one chunk at a time, and
compared with the sha256 computed while it streamed.

Never a pass over objects it did not check: a shard not complete is a failed check, and
so is a complete one whose records no longer hold what it completed (a chunk missing,
unreadable, or holding fewer objects than its progress.json, its listing or the plan
counted: state.record_problems), each named with its shard and bucket entry."""

from __future__ import annotations

import posixpath
from typing import Any

from relocate.config import Config
from relocate.execute.verify import VerifyReport
from relocate.kinds import Check
from relocate.plan.model import Plan
from relocate.shards import state
from relocate.shards.section import as_count
from relocate.shards.worker import spec_for
from relocate.targets import files


def verify_shards(conn: Any, config: Config, plan: Plan, report: VerifyReport) -> None:
    assert plan.shards is not None
    section = plan.shards
    progress = state.read_progress(conn, config.root, section["id"])
    incomplete: set[int] = set()
    broken: list[Check] = []
    recorded = chunks_read = 0
    for sid, ranges in section["steps"].items():
        spec, _ = spec_for(config, sid)
        where = posixpath.join(config.root, spec.to)
        for k in range(len(ranges)):
            rec = progress.get((sid, k)) or {}
            complete = bool(rec.get("complete"))
            if not complete:
                incomplete.add(k)
            n = as_count(rec.get("chunks"))
            # a complete shard's chunks are exactly 0..chunks-1; an unfinished one's, what is there
            numbers = list(range(n)) if complete and n is not None else state.chunk_numbers(conn, config.root, spec.to, k)
            held: dict[int, int | None] = {}
            for number in numbers:
                how, objs = state.load_chunk(conn, config.root, spec.to, k, number)
                if how == "missing":
                    continue
                rels = {posixpath.relpath(o["path"], spec.to): o for o in objs}
                held[number] = len(rels) if how == "ok" else None
                chunks_read += 1
                recorded += len(rels)
                got = files.hashes_of(conn, where, rels)
                for rel, o in rels.items():
                    h = got.get(rel)
                    if h is None:
                        report.missing.append(o["path"])
                    elif h != o["sha256"]:
                        report.differing.append(o["path"])
                    else:
                        report.matched += 1
            if complete:
                problems = state.record_problems(rec, held, int(ranges[k]["objects"]))
                if problems:
                    incomplete.add(k)
                    broken.append(Check(f"shard {k} of {sid} (to {spec.to}): records", False,
                                        "; ".join(problems) + f"; run `relocate move PLAN.json --shard {k}` again"))
    count = int(section["count"])
    bad = sorted(incomplete)
    report.checks.append(Check(f"{count} shard(s) of plan {section['id']} complete", not bad,
                               f"incomplete: {', '.join(map(str, bad))}" if bad else "all"))
    report.checks.extend(broken)
    if not broken:
        report.checks.append(Check("the shards' records", True,
                                   f"{recorded} object(s) in {chunks_read} chunk(s), each hashed on the target"))
