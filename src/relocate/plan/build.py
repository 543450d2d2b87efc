"""Build a Plan from what was read: pure, so every decision here is unit-testable.

Pure means: no I/O and no clock. The gathered facts, the rates and the time come in as
arguments, and the modules that read the cloud and probe hosts (boto3, paramiko) are
only named in type hints, so `relocate.plan` imports without them (tests/test_purity.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relocate.plan.deadline import order_steps
from relocate.plan.model import Finding, Plan, PlanPart, PlanVerdict, Step

if TYPE_CHECKING:  # types only: importing these would pull in boto3 and paramiko
    from relocate.config import Config
    from relocate.sources.inventory import Inventory
    from relocate.targets.facts import TargetFacts

HEADROOM_FRACTION = 0.05
HEADROOM_BYTES = 64 * 1024 * 1024
# A plain `move` keeps a record of every object it lists until its snapshot is checked:
# ~1.8 KB each, 263 MiB at most for 100,000 objects (docs/transfer.md, "Memory"), where a
# shard worker streams its range. Past this many objects the plan says so.
MOVE_BYTES_PER_OBJECT = 1900
MEMORY_WARN_OBJECTS = 250_000


@dataclass(frozen=True)
class Sample:
    """What `plan --probe` timed through the move's own path (execute/probe.py): `objects`
    real objects of `nbytes` in `seconds` beyond a fixed `setup_s` (logins, receiver start)
    that every bucket's transfer pays once."""

    objects: int
    nbytes: int
    seconds: float
    setup_s: float


@dataclass(frozen=True)
class Rates:
    """Throughput assumptions. Defaults are deliberately conservative (a slow WAN link
    and small-object overhead); `plan --probe` replaces them with a measured Sample."""

    bytes_per_s: float = 20e6
    seconds_per_object: float = 0.004
    basis: str = "conservative defaults (20 MB/s, 4 ms per object)"
    sample: Sample | None = None


# A probe's own run-to-run spread on one machine (bench/bench_probe.py, 2-core box: the
# same sample took 3.8 and 5.2 ms an object in two rounds): each end of a range moves out
# by this factor, so a range is never a point dressed up as one.
PROBE_SPREAD = 1.25


def eta_range(nbytes: int, nobjects: int, rates: Rates) -> tuple[float, float]:
    """(low, high) seconds to move `nobjects` of `nbytes`. From a probe sample: scaled by
    the object count and by the bytes, whichever gives less and more (they agree when the
    sample looks like the data; they part when the data's objects are bigger or smaller),
    plus the setup, each end widened by the probe's own spread. Without one, both ends are
    the conservative point estimate."""
    s = rates.sample
    if s is None or s.objects <= 0 or s.nbytes <= 0 or nobjects <= 0:
        point = nbytes / rates.bytes_per_s + nobjects * rates.seconds_per_object
        return point, point
    by_count, by_bytes = s.seconds * nobjects / s.objects, s.seconds * nbytes / s.nbytes
    return ((s.setup_s + min(by_count, by_bytes)) / PROBE_SPREAD,
            (s.setup_s + max(by_count, by_bytes)) * PROBE_SPREAD)


def eta(nbytes: int, nobjects: int, rates: Rates) -> float:
    low, high = eta_range(nbytes, nobjects, rates)
    return (low + high) / 2


_eta = eta


def build_plan(
    config: Config,
    inventory: Inventory,
    facts: TargetFacts | None,
    *,
    target: str,
    parts: tuple[PlanPart, ...] = (),
    verdict: PlanVerdict | None = None,
    accepted_risks: tuple[str, ...] = (),
    rates: Rates = Rates(),
    now: float,
    sharded: bool = False,
) -> Plan:
    """Assemble the plan from what each kind planned (`parts`: steps, blockers, warnings;
    relocate.kinds), the target's facts and the provider verdict. `inventory` gives the
    source fingerprint `move plan.json` checks for drift; `now` (epoch seconds) is the
    plan's creation time, given by the caller. `sharded`: the plan is cut into shards
    (`plan --shards N`), whose workers stream their ranges: no memory warning."""
    steps: list[Step] = [s for part in parts for s in part.steps]
    # The irreplaceable and the small first (plan/deadline.py says why); the runner walks
    # the steps in exactly this order.
    steps = order_steps(steps)
    steps.append(Step(id="verify", kind="verify", source="manifest", dest=".", count=sum(s.count for s in steps if s.kind == "s3"),
                      est_seconds=sum(s.bytes for s in steps) / 400e6, detail="sha256 of every file, computed on the target"))

    blockers: list[Finding] = []
    warnings: list[Finding] = []
    for part in parts:
        blockers.extend(part.blockers)
        warnings.extend(part.warnings)
    todo_bytes = sum(s.todo_bytes for s in steps)
    if facts is not None:
        if facts.missing_tools:
            blockers.append(Finding("tools", f"the target lacks {', '.join(facts.missing_tools)} (install them, e.g. coreutils, tar, findutils)"))
        for link in facts.links:
            blockers.append(Finding("symlink", f"{link}: a symlinked directory where the move writes under target.root; relocate "
                                               "refuses to write through it (remove it, or list it under target.allow_symlinks)"))
        for path in facts.not_dirs:
            blockers.append(Finding("in-the-way", f"{path} is a file where the move needs a directory (a `to:`, or one on "
                                                  "the way to one); relocate never removes it: move it away, or change "
                                                  "the `to:` in relocate.yaml"))
        for path in facts.dirs:
            blockers.append(Finding("in-the-way", f"{path} is a directory where the move writes a file; relocate never "
                                                  "removes it: move it away, or change the `to:` in relocate.yaml"))
        for path, owner in facts.unwritable.items():
            blockers.append(Finding("writable", f"{facts.user or 'the login user'} cannot write {path} (owner {owner}), "
                                                "on the way to where the move writes; chown it to the login user (or "
                                                "give it write permission), or change the `to:` in relocate.yaml"))
        if not facts.writable:
            blockers.append(Finding("writable", f"{facts.user or 'the login user'} cannot write {config.root} (nearest existing: {facts.existing}); create it and chown it to the login user"))
        need = int(todo_bytes * (1 + HEADROOM_FRACTION)) + HEADROOM_BYTES
        if facts.free_bytes is not None and facts.free_bytes < need:
            blockers.append(Finding("disk", f"not enough disk at {facts.existing}: {_h(facts.free_bytes)} free, {_h(need)} needed ({_h(todo_bytes)} plus headroom)"))
    listed = sum(s.count for s in steps if s.kind == "s3")
    if listed > MEMORY_WARN_OBJECTS and not sharded:
        warnings.append(Finding("memory", f"{listed:,} objects: a plain `relocate move` holds about "
                                          f"{_h(listed * MOVE_BYTES_PER_OBJECT)} of memory for them; shard workers stream "
                                          "their ranges instead (`relocate plan --shards N`, README \"Shards\")"))
    if verdict is not None:
        for f in verdict.blocking_findings:
            if f.id in accepted_risks:
                warnings.append(Finding("aup-accepted", f"accepted risk {f.id}: {f.message}"))
            else:
                blockers.append(Finding("aup-reject", f"{f.id}: {f.message} (pass --accept-risk {f.id} to proceed anyway)"))
        # A waiver of a finding that does not block is on the record too (docs/policy.md: "marked waived").
        for t in verdict.top_findings:
            if t.get("waived") and t["effect"] != "reject":
                stays = ("; it still counts: no waiver stands in for a reading of the terms, so the verdict stays unknown"
                         if t["effect"] == "unknown" else "; it no longer counts toward the verdict")
                warnings.append(Finding("aup-accepted", f"accepted risk {t['id']} ({t['effect']}){stays}"))
        for w in verdict.warnings:
            warnings.append(Finding("aup", w))

    fingerprint = inventory.fingerprint()  # one pass over every object: ~5 s per million (issue 16)
    inputs = {name: digest for part in parts for name, digest in part.inputs.items()}
    if inputs:  # a release's content, reviewed in this plan, is what `move plan.json` must deploy
        fingerprint["inputs"] = inputs
    return Plan(
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        config_path=str(config.path),
        config_text=config.text,
        target=target,
        root=config.root,
        fingerprint=fingerprint,
        fingerprint_digest=inventory.fingerprint_digest(fingerprint),
        steps=steps,
        blockers=blockers,
        warnings=warnings,
        facts=facts.to_dict() if facts else {},
        verdict=verdict,
        accepted_risks=list(accepted_risks),
        estimate_basis=rates.basis,
        left_out=[out.to_dict() for out in inventory.left_out],
        versions_left=list(inventory.versions_left),
        estimate_range=_range(steps, rates),
    )


def _range(steps: list[Step], rates: Rates) -> dict[str, float] | None:
    """The whole plan's (low, high) seconds when a probe measured the object path: object
    steps at their range, every other step at its own estimate."""
    if rates.sample is None:
        return None
    low = high = sum(s.est_seconds for s in steps if s.kind != "s3")
    for s in steps:
        if s.kind == "s3":
            lo, hi = eta_range(s.todo_bytes, s.todo_count, rates)
            low, high = low + lo, high + hi
    return {"low_s": round(low, 1), "high_s": round(high, 1)}


def left_out_message(out: dict[str, Any]) -> str:
    """One line for what no `source.s3` prefix covers (the plan's warning in every format,
    verify's `not moved:`): the current objects, and in a versioned bucket the older
    versions and delete markers of keys outside every prefix (keys deleted since
    included), which stay behind too."""
    listed = ", ".join(repr(p) for p in out["prefixes"])
    versions, markers = out.get("versions", 0), out.get("delete_markers", 0)
    if not (versions or markers):
        examples = ", ".join(repr(k) for k in out["examples"])
        more = ", ..." if out["count"] > len(out["examples"]) else ""
        return (f"s3://{out['bucket']}: {out['count']} object(s), {_h(out['bytes'])} outside the listed prefixes ({listed}) "
                f"are NOT moved: {examples}{more}; add an entry for them (e.g. the bucket with prefix \"\" and its own `to:`; "
                "the longest matching prefix wins)")
    vex = out.get("version_examples") or []
    keys = ", ".join(repr(k) for k in vex) + (", ..." if out.get("version_keys", 0) > len(vex) else "")
    older = f"{versions} older version(s), {_h(out.get('versions_bytes', 0))}, and {markers} delete marker(s)"
    hint = ("add an entry for them (e.g. the bucket with prefix \"\", its own `to:` and `versions: all`; "
            "the longest matching prefix wins)")
    if not out["count"]:
        return (f"s3://{out['bucket']}: {older} of {out.get('version_keys', 0)} key(s) outside the listed prefixes ({listed}) "
                f"are NOT moved: {keys}; {hint}")
    current = ", ".join(repr(k) for k in out["examples"]) + (", ..." if out["count"] > len(out["examples"]) else "")
    return (f"s3://{out['bucket']}: {out['count']} object(s), {_h(out['bytes'])} outside the listed prefixes "
            f"({listed}) are NOT moved: {current}; nor are {older} of {out.get('version_keys', 0)} key(s) outside them: "
            f"{keys}; {hint}")


def _h(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


human_bytes = _h
