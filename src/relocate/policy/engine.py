"""The verdict engine: app profile x provider profiles -> ranked, cited verdicts. Pure.

How one provider is judged (docs/policy.md says the same for users):

* Declared categories (clause categories listed in `app.content`) are what the
  app hosts on purpose. Provider stance -> finding effect:
  prohibited -> reject; restricted -> conditional; unknown -> unknown;
  customer_responsible / not_stated -> note (allowed in writing, or no clause found).
* Descriptors (`user_generated_content`, `political_speech`) expose clause
  categories that users may post. For those: prohibited or restricted ->
  conditional when moderation is thin (the provider will judge the app by its
  capacity to remove them), a note when moderation is adequate; unknown -> risk.
  Baseline categories (illegal content, CSAM, copyright, spam, malware) are
  removed on notice everywhere, so when only exposed they are notes.
* A descriptor whose exposed (non-baseline) categories are all unknown for a
  provider is itself an unknown finding: no reading, no acceptance.
* Thin moderation (see `Moderation.thin_reasons`) with user-generated content
  makes `unmoderated_ugc` a declared category: it is what the app then is.
* The catch-all clause and suspension terms are risks: they lower the score.
* Verdict: any reject -> reject; else any unknown -> unknown; else any
  conditional -> conditional; else accept. Waived findings (`--accept-risk ID`)
  do not count toward the verdict, but still count in the score.

Score (0-100, higher is better), in the spirit of ToS;DR's grade, where a
blocker weighs far more than a bad point::

    score = 100 - 50*rejects
                - conditional (15 for the first, 5 for each further one, at most 35)
                - 10*unknowns (at most 30) - 3*unreviewed_exposures
                - catch_all (8 if prohibited, 4 if restricted)
                - suspension (8 if without notice, 4 if notice terms unknown or partial)
                + 5 if a cure period of at least 24 h is written down
                - 5 per past enforcement event against similar content (at most 15)
                - 5 if the profile's overall confidence is low
    clamped to 0..100

Providers rank by verdict (accept, conditional, unknown, reject), then score, then id.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Collection, Iterable
from dataclasses import replace

from relocate.errors import ConfigError
from relocate.policy.app import AppProfile
from relocate.policy.profiles import ProfileSet, shipped_categories
from relocate.policy.schema import KINDS, Category, Clause, Provider
from relocate.policy.verdict import VERDICTS, DependencyRisk, Finding, ProviderVerdict, Report

STALE_AFTER_DAYS = 180
UNMODERATED = "unmoderated_ugc"  # the category thin moderation turns from a risk into what the app is

_DECLARED_EFFECT = {"prohibited": "reject", "restricted": "conditional", "unknown": "unknown",
                    "customer_responsible": "note", "not_stated": "note"}


def _app_categories(app: AppProfile, categories: dict[str, Category]) -> tuple[dict[str, str], dict[str, str]]:
    """Split the app's content into declared and exposed clause categories, each with the reason."""
    declared: dict[str, str] = {}
    exposed: dict[str, str] = {}
    for name in app.content:
        cat = categories.get(name)
        if cat is None:
            near = [c for c in categories if c.startswith(name)] or difflib.get_close_matches(name, list(categories), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else " (see `relocate profiles list --categories`)"
            raise ConfigError(f"app.content: unknown category {name!r}{hint}")
        if cat.descriptor:
            for exp in cat.exposes:
                exposed.setdefault(exp, f"users of a {cat.title.lower()} app may post it")
        else:
            declared[name] = "the app declares it in app.content"
    thin = app.moderation_thin()
    if thin and (UNMODERATED in exposed or UNMODERATED in declared):
        declared[UNMODERATED] = "moderation looks thin: " + "; ".join(thin)
    for name in declared:
        exposed.pop(name, None)
    return declared, exposed


def _finding(p: Provider, clause: Clause, effect: str, why: str) -> Finding:
    doc = p.documents.get(clause.document) if clause.document else None
    return Finding(f"{p.id}/{clause.category}", p.id, effect, why, clause.summary, clause.category,
                   clause.stance, doc, clause.section)


def _exposed_effect(clause: Clause, cat: Category, thin: list[str]) -> tuple[str, str]:
    if clause.stance == "unknown":
        return "risk", "terms not reviewed for this category"
    if clause.stance in ("prohibited", "restricted") and not cat.baseline:
        if thin:
            return "conditional", "acceptance hinges on moderation capacity, which looks thin: " + "; ".join(thin)
        return "note", "the app must remove it on notice; declared moderation looks adequate"
    if clause.stance in ("prohibited", "restricted"):
        return "note", "removed on notice at every provider; keep a takedown process"
    return "note", "no bar in the terms read"


def _blind_spots(p: Provider, app: AppProfile, categories: dict[str, Category]) -> list[Finding]:
    """A descriptor none of whose judged categories were reviewed is itself unknown.

    Without this, a provider we know nothing about would "accept" a forum: every
    exposed category would be a mere risk, and unknown must never read as allowed.
    """
    out = []
    for name in app.content:
        cat = categories[name]
        judged = [c for c in cat.exposes if not categories[c].baseline]
        if cat.descriptor and judged and all(p.clause(c).stance == "unknown" for c in judged):
            out.append(Finding(f"{p.id}/{name}", p.id, "unknown",
                               f"none of the categories a {cat.title.lower()} app is judged by ({', '.join(judged)}) "
                               "were reviewed for this provider", "Not covered by the terms we reviewed.", name, "unknown"))
    return out


def _suspension_finding(p: Provider) -> Finding:
    s = p.suspension
    if s.without_notice is True:
        effect, why = "risk", "the provider may suspend without notice: plan for hours, not days"
    elif s.without_notice is None:
        effect, why = "risk", "notice before suspension is not known from the terms read"
    else:
        effect, why = "note", "the terms promise notice before suspension"
    if s.cure_period_hours is not None:
        why += f"; stated cure period {s.cure_period_hours:g} h"
    doc = p.documents.get(s.document) if s.document else None
    return Finding(f"{p.id}/suspension", p.id, effect, why, s.summary, None, None, doc, s.section)


def _findings(p: Provider, app: AppProfile, categories: dict[str, Category]) -> list[Finding]:
    declared, exposed = _app_categories(app, categories)
    thin = app.moderation_thin()
    out: list[Finding] = []
    for name, reason in declared.items():
        clause = p.clause(name)
        out.append(_finding(p, clause, _DECLARED_EFFECT[clause.stance], reason))
    for name, reason in exposed.items():
        clause = p.clause(name)
        effect, why = _exposed_effect(clause, categories[name], thin)
        out.append(_finding(p, clause, effect, f"{reason}; {why}"))
    out.extend(_blind_spots(p, app, categories))
    if app.content:  # any hosted content can be called objectionable
        for cat in (c for c in categories.values() if c.catch_all):
            clause = p.clause(cat.id)
            if clause.stance in ("prohibited", "restricted"):
                out.append(_finding(p, clause, "risk", "a catch-all clause lets the provider act on content no rule names"))
    out.append(_suspension_finding(p))
    return out


def _score(p: Provider, findings: list[Finding], events: int) -> int:
    count = {e: sum(1 for f in findings if f.effect == e and f.category != "objectionable_catch_all") for e in VERDICTS}
    unreviewed = sum(1 for f in findings if f.effect == "risk" and f.stance == "unknown")
    conditional = min(35, 15 + 5 * (count["conditional"] - 1)) if count["conditional"] else 0
    score = 100 - 50 * count["reject"] - conditional - min(30, 10 * count["unknown"]) - 3 * unreviewed
    for f in findings:
        if f.category == "objectionable_catch_all":
            score -= 8 if f.stance == "prohibited" else 4
    s = p.suspension
    score -= 8 if s.without_notice is True else (4 if s.without_notice is None else 0)
    score += 5 if (s.cure_period_hours or 0) >= 24 else 0
    score -= min(15, 5 * events)
    score -= 5 if p.confidence == "low" else 0
    return max(0, min(100, score))


def _stale(p: Provider, findings: list[Finding], today: dt.date, days: int) -> list[str]:
    docs = {f.document.id: f.document for f in findings if f.document is not None}
    out = []
    for doc in docs.values():
        age = (today - doc.reviewed).days
        if age > days:
            out.append(f"{p.id}: '{doc.title}' ({doc.url}) was last reviewed {doc.reviewed} ({age} days ago); re-read it")
    return out


def judge(p: Provider, app: AppProfile, categories: dict[str, Category], today: dt.date, *,
          accepted_risks: Collection[str] = (), stale_after_days: int = STALE_AFTER_DAYS) -> ProviderVerdict:
    """One provider's verdict for one app."""
    findings = [
        replace(f, waived=True) if f.id in accepted_risks else f
        for f in _findings(p, app, categories)
    ]
    counted = {f.effect for f in findings if not f.waived}
    verdict = next((v for v in ("reject", "unknown", "conditional") if v in counted), "accept")
    relevant = {f.category for f in findings if f.category and f.effect != "note"} | set(app.content)
    events = tuple(e for e in p.enforcement if relevant.intersection(e.categories))
    warnings = _stale(p, findings, today, stale_after_days)
    secondary = [f.id for f in findings if f.document is not None and f.document.kind == "secondary" and f.effect != "note"]
    if secondary:
        warnings.append(f"{p.id}: {', '.join(secondary)} rest on secondary sources (press or analyses), not the terms themselves")
    return ProviderVerdict(p.id, p.name, p.kinds, verdict, _score(p, findings, len(events)), tuple(findings),
                           p.suspension, events, tuple(warnings), p.confidence)


def _rank_key(v: ProviderVerdict) -> tuple[int, int, str]:
    return VERDICTS.index(v.verdict), -v.score, v.provider


def _categories_of(providers: ProfileSet | Iterable[Provider]) -> tuple[dict[str, Category], list[Provider]]:
    if isinstance(providers, ProfileSet):
        return providers.categories, list(providers.providers.values())
    return shipped_categories(), list(providers)


def evaluate(app: AppProfile, providers: ProfileSet | Iterable[Provider], *, today: dt.date,
             accepted_risks: Collection[str] = (), stale_after_days: int = STALE_AFTER_DAYS) -> list[ProviderVerdict]:
    """Verdicts for every provider, best first. Raises ConfigError for an unknown app category."""
    categories, plist = _categories_of(providers)
    verdicts = [judge(p, app, categories, today, accepted_risks=accepted_risks, stale_after_days=stale_after_days)
                for p in plist]
    return sorted(verdicts, key=_rank_key)


def verdict_for(provider_id: str, app: AppProfile, profileset: ProfileSet, today: dt.date, *,
                accepted_risks: Collection[str] = ()) -> ProviderVerdict:
    """The verdict for one provider (by id or alias), e.g. relocate.yaml's target.provider."""
    return judge(profileset.get(provider_id), app, profileset.categories, today, accepted_risks=accepted_risks)


def dependency_risks(app: AppProfile, profileset: ProfileSet, verdicts: Iterable[ProviderVerdict]) -> list[DependencyRisk]:
    """For each vendor the app depends on: is it the next single point of failure, and who else accepts?"""
    by_id = {v.provider: v for v in verdicts}
    out = []
    for kind, name in app.dependencies.items():
        if kind not in KINDS:
            raise ConfigError(f"app.dependencies.{kind}: unknown kind (valid: {', '.join(KINDS)})")
        alts = sorted((v for v in by_id.values() if kind in v.kinds and v.verdict in ("accept", "conditional")), key=_rank_key)
        alternatives = tuple((v.provider, v.verdict, v.score) for v in alts)
        provider = profileset.resolve(name)
        if provider is None or provider.id not in by_id:
            out.append(DependencyRisk(kind, name, None, "unknown", True,
                                      f"no profile for {name!r}: its terms are unreviewed", alternatives))
            continue
        v = by_id[provider.id]
        top = v.top_findings(1)
        reason = f"{v.verdict} (score {v.score})" + (f": {top[0].id}, {top[0].why}" if top and v.verdict != "accept" else "")
        if kind not in provider.kinds:
            reason += f"; note: the profile does not list {kind} among {provider.name}'s services"
        alternatives = tuple(a for a in alternatives if a[0] != provider.id)
        out.append(DependencyRisk(kind, name, provider.id, v.verdict, v.verdict != "accept", reason, alternatives))
    return out


def check(app: AppProfile, profileset: ProfileSet, *, today: dt.date, providers: Collection[str] = (),
          kinds: Collection[str] = (), stale_after_days: int = STALE_AFTER_DAYS) -> Report:
    """What `relocate check` shows: ranked verdicts (optionally filtered) plus dependency risks."""
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"--kind {kind}: unknown kind (valid: {', '.join(KINDS)})")
    selected = {profileset.get(p).id for p in providers}
    all_verdicts = evaluate(app, profileset, today=today, stale_after_days=stale_after_days)
    shown = [v for v in all_verdicts
             if (not selected or v.provider in selected) and (not kinds or set(kinds) & set(v.kinds))]
    notes = [f"moderation looks thin: {r}" for r in app.moderation_thin()] if app.content else []
    return Report(tuple(shown), tuple(dependency_risks(app, profileset, all_verdicts)), tuple(notes))
