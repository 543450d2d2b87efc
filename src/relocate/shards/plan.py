"""The `shards` section of a plan (`relocate plan --shards N`): pure.

    {"count": N,
     "id": "<sha256 of the ranges>",        # what the target's shard records are tied to
     "steps": {"s3:<bucket>/<prefix>": [Range.to_dict(), ...N]},
     "est_seconds": [per shard], "finish_est_seconds": the final phase,
     "layouts": {"runners_to_target_s", "targets_pulling_s"}: the shards' time either way}

Every `source.s3` entry is cut into the same N shards (shard K of every entry is worker
K's work); every other step (env, databases, host files, DNS, deploy, packages) runs in
the final phase, `move plan.json --finish`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relocate.plan.build import Rates, eta
from relocate.plan.model import Plan
from relocate.shards.partition import partition
from relocate.shards.section import section_id

if TYPE_CHECKING:
    from relocate.sources.inventory import Inventory

def shards_section(plan: Plan, inventory: "Inventory", n: int, rates: Rates) -> dict[str, Any]:
    steps: dict[str, list[dict[str, Any]]] = {}
    per_shard = [[0, 0] for _ in range(n)]
    for listing in inventory.buckets:
        objs = listing.objects
        ranges = partition(((o.key, o.size, o.etag) for o in objs), n, len(objs), sum(o.size for o in objs))
        steps[listing.step_id] = [r.to_dict() for r in ranges]
        for r in ranges:
            per_shard[r.index][0] += r.objects
            per_shard[r.index][1] += r.bytes
    finish = sum(s.est_seconds for s in plan.steps if s.kind != "s3")
    per = [eta(b, c, rates) for c, b in per_shard]
    total_b = sum(b for _, b in per_shard)
    return {
        "count": n,
        "id": section_id(steps),  # checked against the ranges whenever the plan is loaded (section.py)
        "steps": steps,
        "est_seconds": [round(x, 1) for x in per],
        "finish_est_seconds": round(finish, 1),
        # the two layouts (docs/scale.md): N runners writing into one target share the
        # target's link, so the move takes at least all bytes at one link's rate; N
        # targets each pulling their own shard (`--on-target`) take the longest shard
        "layouts": {"runners_to_target_s": round(max(max(per, default=0.0), total_b / rates.bytes_per_s), 1),
                    "targets_pulling_s": round(max(per, default=0.0), 1)},
    }


def shard_totals(plan: Plan, index: int) -> tuple[int, int]:
    """(objects, bytes) shard `index` holds over every bucket entry, as planned."""
    assert plan.shards is not None
    objs = byts = 0
    for ranges in plan.shards["steps"].values():
        objs += int(ranges[index]["objects"])
        byts += int(ranges[index]["bytes"])
    return objs, byts


def check_shardable(config: Any) -> None:
    """`versions: all` entries are listed with ListObjectVersions, which the shard workers
    do not range over yet: refused up front (exit 2) rather than moved half."""
    from relocate.errors import UsageError

    for spec in config.s3:
        if spec.versions == "all":
            raise UsageError(f"--shards: s3://{spec.bucket}/{spec.prefix} has `versions: all`, which a sharded move does not "
                             "support yet; plan it without --shards, or set `versions: current`")
