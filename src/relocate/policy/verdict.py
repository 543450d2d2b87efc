"""Values the engine returns: findings, provider verdicts, dependency risks, the report.

Plain frozen dataclasses with `to_dict()` so the CLI can print JSON and `relocate
plan` can record them; no logic beyond presentation helpers lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from relocate.policy.schema import Document, Event, Suspension

if TYPE_CHECKING:
    from relocate.policy.moderation import Assessment
    from relocate.policy.record import Incident

# Bumped when the JSON's shape changes: 2 = issue 14 (copies, record, moderation, vendor chain).
FORMAT_VERSION = 2

DISCLAIMER = (
    "This is a reading of each provider's written terms as of the review dates shown, "
    "not legal advice. Providers enforce at their discretion; check the linked sources."
)

# Best to worst. A known conditional is more useful than an unknown, so unknown ranks below it.
VERDICTS = ("accept", "conditional", "unknown", "reject")
# What one finding does: the first four set the verdict; `risk` lowers the score only; `note` informs.
EFFECTS = ("reject", "unknown", "conditional", "risk", "note")


@dataclass(frozen=True)
class Finding:
    id: str  # stable: "<provider>/<category>" or "<provider>/suspension"; `--accept-risk` names it
    provider: str
    effect: str
    why: str  # why this applies to *this* app
    summary: str  # what the terms say, in our words
    category: str | None = None
    stance: str | None = None
    document: Document | None = None
    section: str | None = None
    waived: bool = False
    quote: str | None = None  # the provider's own words, when the profile records them
    events: tuple[Event, ...] = ()  # record findings: the incident's events

    def to_dict(self) -> dict[str, Any]:
        doc = self.document
        return {
            "id": self.id,
            "provider": self.provider,
            "category": self.category,
            "stance": self.stance,
            "effect": self.effect,
            "waived": self.waived,
            "why": self.why,
            "summary": self.summary,
            "quote": self.quote,
            "events": [event_dict(e) for e in self.events],
            "source": None if doc is None else {
                "document": doc.id,
                "title": doc.title,
                "url": doc.url,
                "section": self.section,
                "text_date": doc.text_date,
                "reviewed": doc.reviewed.isoformat(),
                "kind": doc.kind,
                "role": doc.role,
                "confidence": doc.confidence,
                "copy": None if doc.copy is None else {"archive": doc.copy.archive, "path": doc.copy.path,
                                                       "commit": doc.copy.commit, "captured": doc.copy.captured},
                "read": doc.read,
                "sections_read": list(doc.sections_read),
                "newer_version": doc.newer_version,
            },
        }


def event_dict(e: Event) -> dict[str, Any]:
    return {"date": e.date, "kind": e.kind, "incident": e.incident, "target": e.target, "what": e.what,
            "app_categories": list(e.app_categories), "reason_categories": list(e.reason_categories),
            "notice_hours": e.notice_hours, "source": e.source, "source_kind": e.source_kind}


@dataclass(frozen=True)
class ProviderVerdict:
    provider: str
    name: str
    kinds: tuple[str, ...]
    verdict: str
    score: int
    findings: tuple[Finding, ...]
    suspension: Suspension
    events: tuple[Event, ...] = ()  # the record's events that concern apps like this one
    warnings: tuple[str, ...] = ()
    confidence: str = "low"
    disclaimer: str = DISCLAIMER
    leaning: str | None = None  # "reject" when a conditional rests on the provider's record
    moderation: Assessment | None = None  # this provider's view of the app's moderation (apps with UGC)
    incidents: tuple[Incident, ...] = ()

    @property
    def label(self) -> str:
        return self.verdict + (f" (leaning {self.leaning})" if self.leaning else "")

    @property
    def sources(self) -> list[str]:
        urls = [f.document.url for f in self.findings if f.document is not None and f.document.url]
        urls += [e.source for e in self.events]
        return list(dict.fromkeys(urls))

    def blocking(self) -> list[Finding]:
        """Findings that make this a reject and have not been waived with --accept-risk."""
        return [f for f in self.findings if f.effect == "reject" and not f.waived]

    def top_findings(self, n: int = 3) -> list[Finding]:
        order = {e: i for i, e in enumerate(EFFECTS)}
        return sorted(self.findings, key=lambda f: (f.waived, order[f.effect]))[:n]

    def to_dict(self) -> dict[str, Any]:
        s = self.suspension
        return {
            "provider": self.provider,
            "name": self.name,
            "kinds": list(self.kinds),
            "verdict": self.verdict,
            "leaning": self.leaning,
            "score": self.score,
            "confidence": self.confidence,
            "moderation": None if self.moderation is None else {
                "adequate": self.moderation.adequate, "shortfalls": list(self.moderation.shortfalls),
                "cure_hours": self.moderation.cure_hours, "cure_source": self.moderation.cure_source,
                "expects": list(self.moderation.expects), "quote": self.moderation.quote,
                "needed_moderators": self.moderation.needed_moderators},
            "findings": [f.to_dict() for f in self.findings],
            "suspension": {"without_notice": s.without_notice, "cure_period_hours": s.cure_period_hours, "summary": s.summary},
            "record": [event_dict(e) for e in self.events],
            "incidents": [{"incident": i.id, "kind": i.kind, "date": i.date, "target": i.target, "weight": round(i.weight, 3),
                           "counts": i.counts, "same_kind": i.same_kind, "same_reason": i.same_reason,
                           "later_changes": [event_dict(e) for e in i.later_changes]} for i in self.incidents],
            "warnings": list(self.warnings),
            "sources": self.sources,
            "disclaimer": self.disclaimer,
        }


@dataclass(frozen=True)
class DependencyRisk:
    kind: str
    current: str  # as written in relocate.yaml, e.g. "route53"
    provider: str | None  # the profile it resolved to, if any
    verdict: str  # the current vendor's verdict, or "unknown" without a profile
    at_risk: bool
    reason: str
    alternatives: tuple[tuple[str, str, int], ...] = ()  # (provider id, verdict, score), best first
    evidence: tuple[str, ...] = ()  # what shows the dependency: "app.dependencies.dns", "name TWILIO_AUTH_TOKEN", ...

    def accepting(self) -> list[str]:
        return [p for p, verdict, _ in self.alternatives if verdict == "accept"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "current": self.current,
            "provider": self.provider,
            "verdict": self.verdict,
            "at_risk": self.at_risk,
            "reason": self.reason,
            "evidence": list(self.evidence),
            "alternatives": [{"provider": p, "verdict": v, "score": s} for p, v, s in self.alternatives],
        }


@dataclass(frozen=True)
class Report:
    verdicts: tuple[ProviderVerdict, ...]
    dependencies: tuple[DependencyRisk, ...] = ()
    app_notes: tuple[str, ...] = field(default=())
    disclaimer: str = DISCLAIMER

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "disclaimer": self.disclaimer,
            "app_notes": list(self.app_notes),
            "providers": [v.to_dict() for v in self.verdicts],
            "dependencies": [d.to_dict() for d in self.dependencies],
        }
