"""A provider's record: which of its dated events concern an app like this one, and how much they weigh.

The rules (docs/policy.md "The record" says the same for users):

* Events are grouped by `incident`: a suspension and the court ruling on it are
  one incident and count once. An incident's date is its first drop or refusal
  (or its first event, for acceptances).
* Same kind: the incident's `app_categories` overlap the app's content (its
  descriptors and clause categories). Same reason: its `reason_categories`
  overlap what the app declares or exposes (an incident with no reasons given
  matches on kind alone).
* Weight decays with age: 0.5 ** (age in years / HALF_LIFE_YEARS). An adverse
  incident (drop or refusal) of the same kind for the same reason *counts* while
  its weight is at least COUNTS_FROM (i.e. for HALF_LIFE_YEARS years): the
  engine then caps the verdict at conditional (leaning reject), or rejects when
  the app's moderation also falls short of that provider's stated expectations.
  Older, or same kind for other reasons: a risk that lowers the score.
* Weaker signals, shown as risks (they lower the score, never move the verdict
  by themselves): a `notice` (the provider warned, service went on); a drop
  whose reasons no source states (`reason_categories: []`) caps the verdict like
  any other but cannot make it a reject, since nothing ties it to moderation;
  a drop later undone in the same incident (an `accept` event after it: the
  provider took the app back) does not cap the verdict when the app's
  moderation meets that provider's expectations.
* An acceptance of the same kind is shown as a note; an owner or policy change
  dated after it weakens it (the people or rules that accepted may be gone).
  Owner and policy changes after an adverse incident are shown, and do not
  weaken it: a provider that changed hands has not said it would decide otherwise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from relocate.policy.schema import Event, Provider

HALF_LIFE_YEARS = 10.0
COUNTS_FROM = 0.5  # an incident at or above this weight moves the verdict
ADVERSE = ("drop", "refuse")
CHANGES = ("owner_change", "policy_change")


def event_date(value: str) -> dt.date:
    """YYYY, YYYY-MM or YYYY-MM-DD -> a date (the first day of a partial date)."""
    parts = [int(x) for x in value.split("-")] + [1, 1]
    return dt.date(parts[0], parts[1], parts[2])


def weight(date: str, today: dt.date) -> float:
    years = max(0.0, (today - event_date(date)).days / 365.25)
    return float(0.5 ** (years / HALF_LIFE_YEARS))


@dataclass(frozen=True)
class Incident:
    """One incident in a provider's record, as it bears on one app."""

    id: str
    kind: str  # drop | refuse | notice | accept: the incident's decisive event kind
    date: str
    target: str
    events: tuple[Event, ...]
    same_kind: bool
    same_reason: bool
    reasons: tuple[str, ...]  # the reason categories the app shares
    weight: float
    later_changes: tuple[Event, ...]  # owner/policy changes dated after the incident
    reasons_known: bool = True  # False: the sources give no reason for the drop
    reinstated: str | None = None  # date of an `accept` in the same incident after the drop

    @property
    def adverse(self) -> bool:
        return self.kind in ADVERSE

    @property
    def counts(self) -> bool:
        """Moves the verdict: an adverse, same-kind, same-reason incident recent enough."""
        return self.adverse and self.same_kind and self.same_reason and self.weight >= COUNTS_FROM

    @property
    def mark(self) -> str:
        """Why the incident does or does not move the verdict, in a word or two (the
        table's and markdown's `[...]` after each incident; docs/policy.md, Output)."""
        if self.counts:
            return "counts"
        if self.kind == "accept":
            return "shown"
        if self.kind == "notice":
            return "notice"
        if not self.same_kind:
            return "other kind"
        if not self.same_reason:
            return "other reason"
        return "weighs less"  # adverse, same kind and reason: only its age keeps it from counting

    def describe(self) -> str:
        notice = next((e.notice_hours for e in self.events if e.notice_hours is not None), None)
        verb = {"drop": "dropped", "refuse": "refused", "notice": "warned", "accept": "hosted"}.get(self.kind, self.kind)
        text = f"{self.date}: {verb} {self.target}"
        if self.reasons and self.kind != "accept":
            text += f" for {', '.join(self.reasons)}"
        elif not self.reasons_known and self.adverse:
            text += " (no reason stated in the sources)"
        if notice is not None:
            text += f", with {notice:g} h notice"
        if self.reinstated:
            text += f"; took it back {self.reinstated}"
        text += f" (weight {self.weight:.2f}"
        text += f"; {len(self.events)} events, one incident)" if len(self.events) > 1 else ")"
        if self.later_changes:  # the latest two in full: they say who and what rules decide now
            shown = self.later_changes[-2:]
            more = len(self.later_changes) - len(shown)
            text += "; since then: " + "; ".join(f"{e.date} {e.kind.replace('_', ' ')}: {e.what.rstrip('.')}" for e in shown)
            text += f" (and {more} earlier change(s))" if more else ""
        return text


def incidents(p: Provider, app_tags: Collection[str], exposed: Collection[str], today: dt.date) -> list[Incident]:
    """The incidents of `p`'s record that concern an app with content `app_tags` exposing `exposed`."""
    groups: dict[str, list[Event]] = {}
    for e in p.record:
        if e.kind not in CHANGES:
            groups.setdefault(e.incident, []).append(e)
    changes = sorted((e for e in p.record if e.kind in CHANGES), key=lambda e: event_date(e.date))
    out = []
    for iid, events in groups.items():
        events.sort(key=lambda e: event_date(e.date))
        adverse = [e for e in events if e.kind in ADVERSE]
        first = adverse[0] if adverse else events[0]
        kinds = {c for e in events for c in e.app_categories}
        reasons = {c for e in events for c in e.reason_categories}
        same_kind = bool(kinds & set(app_tags))
        shared = tuple(sorted(reasons & set(exposed)))
        if not same_kind and not shared:
            continue
        if not adverse and any(e.kind == "notice" for e in events):
            first = next(e for e in events if e.kind == "notice")
        later = tuple(c for c in changes if event_date(c.date) > event_date(first.date))
        back = next((e.date for e in events if e.kind == "accept" and adverse
                     and event_date(e.date) > event_date(first.date)), None)
        out.append(Incident(iid, first.kind, first.date, first.target, tuple(events), same_kind, bool(shared) or not reasons,
                            shared, weight(first.date, today), later, bool(reasons), back))
    return sorted(out, key=lambda i: (-i.counts, -i.weight, i.id))
