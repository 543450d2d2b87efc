"""Build a Plan from what was read: pure, so every decision here is unit-testable."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from relocate.components import PlanPart
from relocate.config import Config
from relocate.plan.deadline import order_steps
from relocate.plan.model import Finding, Plan, Step
from relocate.sources.inventory import Inventory
from relocate.targets.facts import TargetFacts

HEADROOM_FRACTION = 0.05
HEADROOM_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Rates:
    """Throughput assumptions. Defaults are deliberately conservative (a slow WAN link
    and small-object overhead); real figures would come from a measured probe."""

    bytes_per_s: float = 20e6
    seconds_per_object: float = 0.004
    basis: str = "conservative defaults (20 MB/s, 4 ms per object)"


def _eta(nbytes: int, nobjects: int, rates: Rates) -> float:
    return nbytes / rates.bytes_per_s + nobjects * rates.seconds_per_object


def s3_step_id(bucket: str, prefix: str) -> str:
    return f"s3:{bucket}/{prefix}"


def env_step_id(path: str) -> str:
    return f"env:{path}"


def build_plan(
    config: Config,
    inventory: Inventory,
    facts: TargetFacts | None,
    done_keys: dict[str, set[str]],
    *,
    target: str,
    verdict: dict[str, Any] | None = None,
    accepted_risks: tuple[str, ...] = (),
    rates: Rates = Rates(),
    now: float | None = None,
    parts: tuple[PlanPart, ...] = (),
) -> Plan:
    """`done_keys` maps a step id to the keys already on the target and verified."""
    steps: list[Step] = []
    for listing in inventory.buckets:
        sid = s3_step_id(listing.spec.bucket, listing.spec.prefix)
        done = done_keys.get(sid, set())
        todo = [o for o in listing.objects if o.key not in done]
        todo_bytes = sum(o.size for o in todo)
        steps.append(Step(
            id=sid, kind="s3", source=f"s3://{listing.spec.bucket}/{listing.spec.prefix}", dest=listing.spec.to,
            count=listing.count, bytes=listing.bytes, todo_count=len(todo), todo_bytes=todo_bytes,
            est_seconds=_eta(todo_bytes, len(todo), rates),
            detail=f"{listing.count - len(todo)} already on the target" if len(todo) < listing.count else "",
            priority=listing.spec.priority,
        ))
    env_sources: dict[str, list[str]] = {}
    env_counts: dict[str, int] = {}
    for p in inventory.parameters:
        env_sources.setdefault(p.spec.to, []).append(f"ssm:{p.spec.path}")
        env_counts[p.spec.to] = env_counts.get(p.spec.to, 0) + len(p.items)
    for s in inventory.secrets:
        env_sources.setdefault(s.spec.to, []).append(f"secret:{s.spec.name}")
        env_counts[s.spec.to] = env_counts.get(s.spec.to, 0) + 1
    for path, sources in env_sources.items():
        steps.append(Step(
            id=env_step_id(path), kind="env", source=", ".join(sources), dest=path, count=env_counts[path],
            todo_count=env_counts[path], est_seconds=0.5 + 0.05 * env_counts[path],
            detail="mode 0600; values never printed",
        ))
    for part in parts:
        steps.extend(part.steps)
    # The irreplaceable and the small first (plan/deadline.py says why); move runs them in this order.
    steps = order_steps(steps)
    steps.append(Step(id="verify", kind="verify", source="manifest", dest=".", count=sum(s.count for s in steps if s.kind == "s3"),
                      est_seconds=sum(s.bytes for s in steps) / 400e6, detail="sha256 of every file, computed on the target"))

    blockers: list[Finding] = []
    warnings: list[Finding] = []
    for p in inventory.parameters:
        if not p.items:
            warnings.append(Finding("empty-source", f"no SSM parameters under {p.spec.path}"))
    for b in inventory.buckets:
        if not b.objects:
            warnings.append(Finding("empty-source", f"s3://{b.spec.bucket}/{b.spec.prefix} holds no objects"))
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
        if not facts.writable:
            blockers.append(Finding("writable", f"{facts.user or 'the login user'} cannot write {config.root} (nearest existing: {facts.existing}); create it and chown it to the login user"))
        need = int(todo_bytes * (1 + HEADROOM_FRACTION)) + HEADROOM_BYTES
        if facts.free_bytes is not None and facts.free_bytes < need:
            blockers.append(Finding("disk", f"not enough disk at {facts.existing}: {_h(facts.free_bytes)} free, {_h(need)} needed ({_h(todo_bytes)} plus headroom)"))
    if verdict is not None:
        for f in verdict.get("blocking_findings", []):
            if f["id"] in accepted_risks:
                warnings.append(Finding("aup-accepted", f"accepted risk {f['id']}: {f['message']}"))
            else:
                blockers.append(Finding("aup-reject", f"{f['id']}: {f['message']} (pass --accept-risk {f['id']} to proceed anyway)"))
        for w in verdict.get("warnings", []):
            warnings.append(Finding("aup", w))

    return Plan(
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        config_path=str(config.path),
        config_text=config.text,
        target=target,
        root=config.root,
        fingerprint=inventory.fingerprint(),
        fingerprint_digest=inventory.fingerprint_digest(),
        steps=steps,
        blockers=blockers,
        warnings=warnings,
        facts=facts.to_dict() if facts else {},
        verdict=verdict,
        accepted_risks=list(accepted_risks),
        estimate_basis=rates.basis,
    )


def _h(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


human_bytes = _h
