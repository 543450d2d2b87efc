"""Plan against a deadline: order the work so the irreplaceable goes first, project when
each step finishes, and say what will not make it. Pure: no clock is read here; callers
pass `now` (epoch seconds) so every decision is table-testable.

Order (a step's *class*, then its position in the plan):
  prepare (packages) -> env (secrets, parameters) -> dns -> databases -> hostfiles
  -> objects by priority: critical, normal, bulk -> deploy -> verify

Why this order: secrets and zone files are tiny and cannot be recreated once the
account is gone; databases are the app's state; host config is small; object data is
the bulk of the bytes and is sorted by how replaceable the user says it is. Deploy needs
the data in place, and verify re-reads everything, so both go last.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from relocate.errors import UsageError
from relocate.plan.model import Plan, Step

PRIORITIES = ("critical", "normal", "bulk")

# Kinds that are irreplaceable and small: always critical, always first.
_EARLY = {"prepare": -1, "env": 0, "dns": 1, "databases": 2, "hostfiles": 3}  # prepare: the host must be able to receive
EARLY_KINDS = frozenset(_EARLY)
_OBJECT_BASE = 10  # s3 steps: 10 + priority index
_LATE = {"deploy": 20, "verify": 30}


def step_priority(step: Step) -> str:
    """critical | normal | bulk. Non-object steps take their class's priority."""
    if step.kind in _EARLY:
        return "critical"
    if step.kind == "s3":
        return step.priority if step.priority in PRIORITIES else "normal"
    return "normal"


def rank(step: Step) -> int:
    if step.kind in _EARLY:
        return _EARLY[step.kind]
    if step.kind == "s3":
        return _OBJECT_BASE + PRIORITIES.index(step_priority(step))
    return _LATE.get(step.kind, _OBJECT_BASE + len(PRIORITIES))  # unknown kinds: after objects, before deploy


def order_steps(steps: Sequence[Step]) -> list[Step]:
    """Stable: steps of one class keep the order relocate.yaml gave them."""
    return [s for _, _, s in sorted((rank(s), i, s) for i, s in enumerate(steps))]


# --- the deadline itself ------------------------------------------------------------

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_deadline(text: str, now: float) -> float:
    """`2021-01-10T23:59-08:00` (an offset or Z is required: a cut-off is one instant)
    or a duration from now: `6h`, `90m`, `1h30m`, `2d`. Returns epoch seconds."""
    value = text.strip()
    m = _DURATION.match(value.lower())
    if value and m and any(m.groups()):
        d, h, mi, s = (int(g or 0) for g in m.groups())
        return now + d * 86400 + h * 3600 + mi * 60 + s
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"--deadline {text!r}: not a time like 2021-01-10T23:59-08:00 or a duration like 6h or 90m") from None
    if when.tzinfo is None:
        raise UsageError(f"--deadline {text!r}: give the UTC offset (e.g. -08:00 or Z); a cut-off is one instant, not a local time")
    return when.timestamp()


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- projection ---------------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    step_id: str
    kind: str
    priority: str
    start: float  # epoch seconds
    finish: float
    fits: bool  # finishes at or before the deadline


@dataclass(frozen=True)
class Schedule:
    now: float
    deadline: float
    slots: tuple[Slot, ...]

    @property
    def misses(self) -> list[Slot]:
        return [s for s in self.slots if not s.fits]

    @property
    def critical_misses(self) -> list[Slot]:
        return [s for s in self.misses if s.priority == "critical"]

    @property
    def finish(self) -> float:
        return self.slots[-1].finish if self.slots else self.now

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": iso(self.now), "deadline": iso(self.deadline), "projected_finish": iso(self.finish),
            "seconds_to_deadline": round(self.deadline - self.now, 1),
            "steps": [{**asdict(s), "start": iso(s.start), "finish": iso(s.finish)} for s in self.slots],
            "misses": [s.step_id for s in self.misses],
            "critical_misses": [s.step_id for s in self.critical_misses],
        }


def project(steps: Sequence[Step], now: float, deadline: float) -> Schedule:
    """Steps run one after another in the given order (that is how `move` runs them)."""
    t = now
    slots = []
    for s in steps:
        start, t = t, t + max(s.est_seconds, 0.0)
        slots.append(Slot(s.id, s.kind, step_priority(s), start, t, t <= deadline))
    return Schedule(now, deadline, tuple(slots))


# --- during a move ------------------------------------------------------------------

# Time kept back for the snapshot manifest, journal and verification report.
RESERVE_FRACTION = 0.02
RESERVE_MIN_S = 30.0


def reserve(now: float, deadline: float) -> float:
    return max(RESERVE_MIN_S, RESERVE_FRACTION * max(deadline - now, 0.0))


def should_start(priority: str, est_seconds: float, now: float, deadline: float, reserve_s: float) -> bool:
    """Critical work always starts (it is the point of the move, and a cut-off is often
    a little late). Anything else starts only if it can finish before the deadline
    minus the reserve, so the run ends with a complete report rather than mid-copy."""
    if priority == "critical":
        return True
    return now + est_seconds <= deadline - reserve_s


def apply(plan: Plan, now: float, until: float) -> Schedule:
    """Order the plan's steps for the deadline, record the projection on the plan, and
    turn misses into findings: a critical miss blocks (exit 3), others warn."""
    from relocate.plan.model import Finding

    plan.steps = order_steps(plan.steps)
    sched = project(plan.steps, now, until)
    plan.schedule = sched.to_dict()
    if until <= now:
        plan.warnings.append(Finding("deadline", f"the deadline {iso(until)} has passed; critical items are still moved first"))
    critical = sched.critical_misses
    if critical:
        first = critical[0]
        more = f" (and {len(critical) - 1} more critical step(s))" if len(critical) > 1 else ""
        plan.blockers.append(Finding("deadline", f"{first.step_id} is critical but is projected to finish at {iso(first.finish)}, "
                                                 f"after the deadline {iso(until)}{more}, at {plan.estimate_basis}"))
    others = [s for s in sched.misses if s.priority != "critical" and s.kind != "verify"]
    if others:
        plan.warnings.append(Finding("deadline", f"{len(others)} step(s) will not finish by {iso(until)}: "
                                                 f"{', '.join(s.step_id for s in others[:5])}{' ...' if len(others) > 5 else ''}; "
                                                 "`move --deadline` leaves them for a later run"))
    return sched
