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
#
# One rule, for `plan --deadline` (which projects it on the estimates) and for
# `move --deadline` (which applies it with the clock, execute/runner.py `_may_start`):
#
# - a step with nothing to do (no items to send, no change to make) takes no time and
#   never misses the deadline;
# - critical steps (secrets and parameters, DNS, databases, host files, packages, buckets
#   marked `priority: critical`) run first; one with work projected to end after the
#   deadline blocks the plan (exit 3, `apply`), so a fresh `move --deadline` writes
#   nothing; a saved plan made before the deadline runs them even once it has passed
#   (the runner never holds a critical step back);
# - a `deadline_bound` step (a non-critical bucket) with work starts only if, started
#   then, its estimate ends before the deadline less the reserve (below) and less the
#   final verification's estimate; otherwise `move` leaves it for a later run (exit 4)
#   and the steps after it start that much earlier.

# Kept back before the deadline when deciding whether a non-critical bucket may start:
# a margin for an estimate that proves optimistic (a bucket cut off mid-copy when the
# source goes away is left half-moved), and time for the snapshot manifest, the journal
# and the report, so the run ends complete rather than mid-copy.
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


def has_work(step: Step) -> bool:
    """The step has items to send or a change to make on the target."""
    return bool(step.todo_count or step.change)


def verify_seconds(steps: Sequence[Step]) -> float:
    """The final verification's estimate, kept in front of the deadline with the reserve."""
    return next((max(s.est_seconds, 0.0) for s in steps if s.kind == "verify"), 0.0)


def may_start(step: Step, now: float, deadline: float, verify_s: float) -> bool:
    """The rule both `plan --deadline` and `move --deadline` apply to a step about to
    start at `now`: only a `deadline_bound` step with work is ever held back, and only if
    its estimate would end after the deadline less the reserve and `verify_s`."""
    if not step.deadline_bound or not step.todo_count:
        return True
    return should_start("normal", step.est_seconds, now, deadline, reserve(now, deadline) + verify_s)


@dataclass(frozen=True)
class Slot:
    step_id: str
    kind: str
    priority: str
    start: float  # epoch seconds
    finish: float  # a left step: when it would have finished, started at `start`
    fits: bool  # finishes at or before the deadline as `move` runs it (a left step never fits; one with nothing to do always does)
    left: bool = False  # `move --deadline` does not start it and leaves it for a later run


@dataclass(frozen=True)
class Schedule:
    now: float
    deadline: float
    slots: tuple[Slot, ...]

    @property
    def misses(self) -> list[Slot]:
        return [s for s in self.slots if not s.fits]

    @property
    def left(self) -> list[Slot]:
        return [s for s in self.slots if s.left]

    @property
    def critical_misses(self) -> list[Slot]:
        return [s for s in self.misses if s.priority == "critical"]

    @property
    def finish(self) -> float:
        return max((s.finish for s in self.slots if not s.left), default=self.now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": iso(self.now), "deadline": iso(self.deadline), "projected_finish": iso(self.finish),
            "seconds_to_deadline": round(self.deadline - self.now, 1),
            "reserve_s": round(reserve(self.now, self.deadline), 1),
            "steps": [{**asdict(s), "start": iso(s.start), "finish": iso(s.finish)} for s in self.slots],
            "misses": [s.step_id for s in self.misses],
            "critical_misses": [s.step_id for s in self.critical_misses],
            "left": [s.step_id for s in self.left],
        }


def project(steps: Sequence[Step], now: float, deadline: float) -> Schedule:
    """Steps run one after another in the given order (that is how `move` runs them),
    each deciding with `may_start` as `move` does: a step left takes no time, so the
    ones after it start earlier. Verification takes time only after some step did work."""
    verify_s = verify_seconds(steps)
    t = now
    worked = False
    slots = []
    for s in steps:
        work = worked if s.kind == "verify" else has_work(s)
        took = max(s.est_seconds, 0.0) if work else 0.0
        if not may_start(s, t, deadline, verify_s):
            slots.append(Slot(s.id, s.kind, step_priority(s), t, t + took, False, left=True))
            continue
        start, t = t, t + took
        worked = worked or work
        slots.append(Slot(s.id, s.kind, step_priority(s), start, t, not work or t <= deadline))
    return Schedule(now, deadline, tuple(slots))


def _ids(slots: Sequence[Slot]) -> str:
    more = f" and {len(slots) - 5} more" if len(slots) > 5 else ""
    return ", ".join(s.step_id for s in slots[:5]) + more


def apply(plan: Plan, now: float, until: float) -> Schedule:
    """Order the plan's steps for the deadline, record the projection on the plan, and
    say what `move --deadline` will do: a critical step with work that cannot finish in
    time blocks (exit 3: issue 7, critical data that will not make it is a decision for
    a person, not for a move); the non-critical buckets it leaves for a later run, and
    other steps that end late but still run, are warnings."""
    from relocate.plan.model import Finding

    plan.steps = order_steps(plan.steps)
    sched = project(plan.steps, now, until)
    plan.schedule = sched.to_dict()
    left = sched.left
    critical = sched.critical_misses
    passed = until <= now
    if critical:
        first = critical[0]
        more = f" (and {len(critical) - 1} more critical step(s))" if len(critical) > 1 else ""
        plan.blockers.append(Finding("deadline", (
            f"{first.step_id} is critical but is projected to finish at {iso(first.finish)}, after the deadline "
            f"{iso(until)}{' (already passed)' if passed else ''}{more}, at {plan.estimate_basis}")))
    elif passed:
        plan.warnings.append(Finding("deadline", (
            f"the deadline {iso(until)} has passed; no critical step has anything left to do"
            + (f", and `move --deadline` starts no bucket with objects to send ({len(left)} left for a later run, exit 4)"
               if left else ""))))
    if left:
        plan.warnings.append(Finding("deadline", (
            f"{len(left)} step(s) will not finish by {iso(until)}: {_ids(left)}; `move --deadline` does not start them "
            f"and leaves them for a later run (exit 4): a non-critical bucket starts only if its estimate ends before the "
            f"deadline less a reserve of max({RESERVE_MIN_S:g} s, {RESERVE_FRACTION:.0%} of the time left) and the "
            f"verification's estimate ({verify_seconds(plan.steps):.0f} s)")))
    late = [s for s in sched.misses if s.priority != "critical" and not s.left and s.kind != "verify"]
    if late:
        plan.warnings.append(Finding("deadline", (
            f"{_ids(late)}: projected to finish after the deadline {iso(until)}; `move --deadline` still runs "
            f"{'it' if len(late) == 1 else 'them'} (only non-critical buckets are left for later)")))
    return sched
