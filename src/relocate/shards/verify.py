"""One verification across all shards (`relocate verify plan.json`, `move --finish`):
every object each shard recorded is hashed on the target, one chunk at a time, and
compared with the sha256 computed while it streamed. A shard not complete is a failed
check, so a verification never passes on half the data."""

from __future__ import annotations

import posixpath
from typing import Any

from relocate.config import Config
from relocate.execute.verify import VerifyReport
from relocate.kinds import Check
from relocate.plan.model import Plan
from relocate.shards import state
from relocate.shards.worker import spec_for
from relocate.targets import files


def verify_shards(conn: Any, config: Config, plan: Plan, report: VerifyReport) -> None:
    assert plan.shards is not None
    section = plan.shards
    progress = state.read_progress(conn, config.root, section["id"])
    incomplete: list[int] = []
    for sid, ranges in section["steps"].items():
        spec, _ = spec_for(config, sid)
        where = posixpath.join(config.root, spec.to)
        for k in range(len(ranges)):
            if not (progress.get((sid, k)) or {}).get("complete"):
                incomplete.append(k)
            for objs in state.chunks(conn, config.root, spec.to, k):
                rels = {posixpath.relpath(o["path"], spec.to): o for o in objs}
                got = files.hashes_of(conn, where, rels)
                for rel, o in rels.items():
                    h = got.get(rel)
                    if h is None:
                        report.missing.append(o["path"])
                    elif h != o["sha256"]:
                        report.differing.append(o["path"])
                    else:
                        report.matched += 1
    count = int(section["count"])
    bad = sorted(set(incomplete))
    report.checks.append(Check(f"{count} shard(s) of plan {section['id']} complete", not bad,
                               f"incomplete: {', '.join(map(str, bad))}" if bad else "all"))
