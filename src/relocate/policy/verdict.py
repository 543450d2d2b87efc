"""Values the engine returns: findings, provider verdicts, dependency risks, the report.

Plain frozen dataclasses with `to_dict()` so the CLI can print JSON and `relocate
plan` can record them; no logic beyond presentation helpers lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relocate.policy.schema import Document, Event, Suspension

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
            "source": None if doc is None else {
                "document": doc.id,
                "title": doc.title,
                "url": doc.url,
                "section": self.section,
                "text_date": doc.text_date,
                "reviewed": doc.reviewed.isoformat(),
                "kind": doc.kind,
                "confidence": doc.confidence,
            },
        }


@dataclass(frozen=True)
class ProviderVerdict:
    provider: str
    name: str
    kinds: tuple[str, ...]
    verdict: str
    score: int
    findings: tuple[Finding, ...]
    suspension: Suspension
    events: tuple[Event, ...] = ()  # past enforcement against apps like this one
    warnings: tuple[str, ...] = ()
    confidence: str = "low"
    disclaimer: str = DISCLAIMER

    @property
    def sources(self) -> list[str]:
        urls = [f.document.url for f in self.findings if f.document is not None]
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
            "score": self.score,
            "confidence": self.confidence,
            "findings": [f.to_dict() for f in self.findings],
            "suspension": {"without_notice": s.without_notice, "cure_period_hours": s.cure_period_hours, "summary": s.summary},
            "enforcement": [
                {"date": e.date, "target": e.target, "what": e.what, "source": e.source, "categories": list(e.categories)}
                for e in self.events
            ],
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "current": self.current,
            "provider": self.provider,
            "verdict": self.verdict,
            "at_risk": self.at_risk,
            "reason": self.reason,
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
            "disclaimer": self.disclaimer,
            "app_notes": list(self.app_notes),
            "providers": [v.to_dict() for v in self.verdicts],
            "dependencies": [d.to_dict() for d in self.dependencies],
        }
