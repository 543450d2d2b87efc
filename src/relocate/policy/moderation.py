"""Is an app's moderation adequate for one provider? Judged against what that provider's terms weigh.

Pure arithmetic on the app's declaration (`app.moderation`) and the provider's
`moderation` section (docs/policy.md "Moderation" says the same for users):

* reports must be answered within the provider's cure period: its `moderation`
  section's, else its suspension terms', else 24 hours. A period written in
  business days is taken as 24 hours per business day, weekends ignored: the
  shorter reading, so the app is never told it has time it may not have;
* proactive capacity, where the provider expects it (`proactive_detection`):
  the human review load is the posts per day (or, given only daily active users,
  one post per user per day), all of it without automated filtering and
  FLAGGED_SHARE of it with; one moderator reviews REVIEWS_PER_MODERATOR_DAY items
  a day. Fewer moderators than that load needs is a shortfall, and so is an
  undeclared app size;
* published rules and a notice channel, where the provider expects them
  (`published_rules: false` always counts);
* no moderators at all, or no response time declared, always count: a provider
  asking "can you remove this within a day?" will not accept "we did not say".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from relocate.policy.app import Moderation
from relocate.policy.schema import Document, Provider

DEFAULT_CURE_HOURS = 24.0  # when a provider states none: what a notice usually allows in practice
DEFAULT_EXPECTS = ("report_response", "published_rules")  # a provider whose profile has no `moderation` section
REVIEWS_PER_MODERATOR_DAY = 2000  # items one person can review in a working day (~15 s each over 8 h)
FLAGGED_SHARE = 0.05  # with automated filtering, the share of posts that reach a human
POSTS_PER_USER_DAY = 1.0  # when only daily active users are declared


@dataclass(frozen=True)
class Assessment:
    """One provider's view of one app's moderation."""

    provider: str
    adequate: bool
    shortfalls: tuple[str, ...]
    cure_hours: float
    cure_source: str  # where the cure period comes from, in words
    expects: tuple[str, ...]
    quote: str | None = None  # the provider's own words on moderation, when the profile records them
    document: Document | None = None
    section: str | None = None
    needed_moderators: int | None = None

    def summary(self) -> str:
        return "; ".join(self.shortfalls) if self.shortfalls else "meets what the terms ask for"


def _cure(p: Provider) -> tuple[float, str]:
    terms = p.moderation
    if terms is not None and terms.cure_period_hours is not None:
        unit = " (business days counted as 24 h each)" if terms.business_days else ""
        return terms.cure_period_hours, f"{p.name}'s stated cure period{unit}"
    if p.suspension.cure_period_hours is not None:
        return p.suspension.cure_period_hours, f"{p.name}'s stated cure period"
    return DEFAULT_CURE_HOURS, f"no cure period stated by {p.name}; {DEFAULT_CURE_HOURS:g} h assumed"


def needed_moderators(m: Moderation) -> int | None:
    """Moderators the review load needs, or None when the app's size is not declared."""
    if m.posts_per_day is not None:
        items = float(m.posts_per_day)
    elif m.daily_active_users is not None:
        items = m.daily_active_users * POSTS_PER_USER_DAY
    else:
        return None
    load = items * (FLAGGED_SHARE if m.automated_filtering else 1.0)
    return max(1, math.ceil(load / REVIEWS_PER_MODERATOR_DAY)) if items else 0


def _size(m: Moderation) -> str:
    if m.posts_per_day is not None:
        return f"{m.posts_per_day:,} posts a day"
    users = m.daily_active_users or 0  # one of the two is given (the schema requires it)
    return f"{users:,} daily active users (~{users * POSTS_PER_USER_DAY:,.0f} posts a day)"


def assess(m: Moderation | None, p: Provider) -> Assessment:
    """The shortfalls of `m` against provider `p`'s stated expectations; none means adequate."""
    terms = p.moderation
    expects = terms.expects if terms is not None and terms.expects else DEFAULT_EXPECTS
    cure, cure_source = _cure(p)
    doc = p.documents.get(terms.document) if terms is not None and terms.document else None
    base: dict[str, Any] = dict(provider=p.id, cure_hours=cure, cure_source=cure_source, expects=expects,
                quote=terms.quote if terms else None, document=doc, section=terms.section if terms else None)
    if m is None:
        return Assessment(adequate=False, shortfalls=("no moderation declared",), **base)
    out: list[str] = []
    if not m.moderators:
        out.append("no moderators declared" if m.moderators is None else "zero moderators")
    if m.report_response_hours is None:
        out.append("no report response time declared")
    elif m.report_response_hours > cure:
        out.append(f"reports answered in {m.report_response_hours:g} h, beyond {cure:g} h ({cure_source})")
    needed = None
    if "proactive_detection" in expects:
        needed = needed_moderators(m)
        if needed is None:
            out.append(f"app size not declared (daily_active_users or posts_per_day): {p.name} weighs the capacity "
                       "to find prohibited content, which cannot be judged without it")
        elif (m.moderators or 0) < needed:
            how = "with automated filtering" if m.automated_filtering else "without automated filtering"
            out.append(f"{m.moderators or 0} moderator(s) for {_size(m)} {how}: about {needed:,} needed at "
                       f"{REVIEWS_PER_MODERATOR_DAY:,} reviews per moderator-day"
                       + ("" if m.automated_filtering else f" ({FLAGGED_SHARE:.0%} of that load with automated filtering)"))
    if m.published_rules is False or (m.published_rules is None and "published_rules" in expects):
        out.append("no published rules" if m.published_rules is False else "published rules not declared")
    if "notice_channel" in expects and not m.notice_channel:
        out.append("no notice channel (a way to report content)" if m.notice_channel is False else "notice channel not declared")
    return Assessment(adequate=not out, shortfalls=tuple(out), needed_moderators=needed, **base)
