"""The verdict engine: app profile x provider profiles -> ranked, cited verdicts. Pure.

How one provider is judged (docs/policy.md says the same for users, rule by rule):

* Stances: `not_stated` counts as "no clause" only when every `governing`
  document was read in full; otherwise it is `unknown` (`Provider.clause`).
* Declared categories (clause categories listed in `app.content`) are what the
  app hosts on purpose. Provider stance -> finding effect:
  prohibited -> reject; restricted -> conditional; unknown -> unknown;
  customer_responsible / not_stated -> note (allowed in writing, or no clause found).
* Descriptors (`user_generated_content`, `political_speech`) expose clause
  categories that users may post. For those (non-baseline): prohibited or
  restricted -> conditional when moderation falls short of this provider's
  expectations, a note when it meets them; unknown -> unknown (no reading, no
  acceptance). Baseline categories (illegal content, CSAM, copyright, spam,
  malware) are removed on notice everywhere: exposed, they are notes (risk if unknown).
* Moderation (relocate.policy.moderation) is judged per provider, against its
  cure period and what its terms say it weighs; the finding `<id>/moderation`
  quotes the provider. Short of it: conditional, and `unmoderated_ugc` becomes
  a declared category (it is what the app then is).
* The record (relocate.policy.record): an adverse incident of the same kind for
  a reason the app exposes caps the verdict at conditional (leaning reject);
  with moderation short of that provider's expectations it is a reject.
* An accept may not rest on a partial reading: if any governing document was
  not read in full, `<id>/reading` is unknown.
* The catch-all clause and suspension terms are risks: they lower the score.
* Verdict: any reject -> reject; else any unknown -> unknown; else any
  conditional -> conditional; else accept. Waived findings (`--accept-risk ID`)
  do not count toward the verdict, but still count in the score; a waived
  `unknown` still counts (no waiver stands in for a reading).

Score (0-100, higher is better), in the spirit of ToS;DR's grade, where a
blocker weighs far more than a bad point::

    score = 100 - 50*rejects
                - conditional (15 for the first, 5 for each further one, at most 35)
                - 10*unknowns (at most 30) - 3*unreviewed_exposures
                - catch_all (8 if prohibited, 4 if restricted)
                - suspension (8 if without notice, 4 if notice terms unknown or partial)
                + 5 if a cure period of at least 24 h is written down
                - 10 * weight per adverse incident of the same kind (at most 20)
                + 5 * weight per acceptance of the same kind not weakened since (at most 10)
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
from relocate.policy.moderation import Assessment, assess
from relocate.policy.profiles import ProfileSet, shipped_categories
from relocate.policy.record import Incident, event_date, incidents
from relocate.policy import chain
from relocate.policy.schema import HOST_KINDS, KINDS, Category, Clause, Provider
from relocate.policy.verdict import VERDICTS, DependencyRisk, Finding, ProviderVerdict, Report

STALE_AFTER_DAYS = 180  # a copy captured longer ago than this: re-read the live text
TEXT_STALE_YEARS = 2  # a text whose own date is older than this: a newer version probably exists
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
    for name in declared:
        exposed.pop(name, None)
    return declared, exposed


def _finding(p: Provider, clause: Clause, effect: str, why: str) -> Finding:
    doc = p.documents.get(clause.document) if clause.document else None
    if doc is None and clause.stance in ("not_stated", "unknown") and clause.category in p.clauses:
        # The profile wrote "no clause found" without naming where: it was looked for in the
        # governing documents read in full, so cite the first (a category the profile leaves
        # out was never looked for, and keeps no source).
        doc = p.searched()
    return Finding(f"{p.id}/{clause.category}", p.id, effect, why, clause.summary, clause.category,
                   clause.stance, doc, clause.section, quote=clause.quote)


def _exposed_effect(clause: Clause, cat: Category, mod: Assessment | None) -> tuple[str, str]:
    if clause.stance == "unknown":
        if cat.baseline:
            return "risk", "terms not reviewed for this category (removed on notice everywhere)"
        return "unknown", "terms not known for this category: no reading, no acceptance"
    if clause.stance in ("prohibited", "restricted") and not cat.baseline:
        if mod is not None and not mod.adequate:
            return "conditional", "acceptance hinges on moderation capacity, which falls short: " + mod.summary()
        return "note", "the app must remove it on notice; declared moderation meets what the terms ask for"
    if clause.stance in ("prohibited", "restricted"):
        return "note", "removed on notice at every provider; keep a takedown process"
    return "note", "no bar in the terms read"


def _moderation_finding(p: Provider, mod: Assessment) -> Finding:
    summary = p.moderation.summary if p.moderation else f"No moderation section in the profile; judged by the default: "         f"reports answered within {mod.cure_hours:g} h and published rules."
    if mod.adequate:
        why = f"declared moderation meets what {p.name} weighs ({', '.join(mod.expects)}; {mod.cure_source}: {mod.cure_hours:g} h)"
    else:
        why = f"moderation falls short of what {p.name} weighs: {mod.summary()}"
    return Finding(f"{p.id}/moderation", p.id, "note" if mod.adequate else "conditional", why, summary, UNMODERATED, None,
                   mod.document, mod.section, quote=mod.quote)


def _record_findings(p: Provider, found: list[Incident], mod: Assessment | None) -> list[Finding]:
    """One finding per incident; the rules are relocate.policy.record's docstring (and docs/policy.md)."""
    out = []
    short = mod is not None and not mod.adequate
    for inc in found:
        doc = section = quote = None
        if inc.counts and not (inc.reinstated and not short):
            reject = short and inc.reasons_known
            effect = "reject" if reject else "conditional"
            why = f"{p.name} {inc.describe()}: an app of the same kind" + (", for reasons this app exposes" if inc.reasons_known else "")
            if reject and mod is not None:
                why += f"; and this app's moderation falls short of what {p.name} weighs: {mod.summary()}"
                doc, section, quote = mod.document, mod.section, mod.quote
            else:
                why += "; at best conditional, leaning reject, whatever the terms say"
        elif inc.adverse or inc.kind == "notice":
            effect = "risk"
            why = f"{p.name} {inc.describe()}"
            if inc.reinstated and inc.counts:
                why += "; the app's moderation meets what the provider weighs, as when it took the app back"
            elif not (inc.same_kind and inc.same_reason):
                why += ": a related incident (same kind or same reasons, not both)"
            elif inc.kind == "notice":
                why += ": a warning, service went on"
            elif inc.weight < 0.5:
                why += "; old enough to weigh less than half"
        else:
            effect = "note"
            why = f"{p.name} {inc.describe()}" + ("; weakened by the later change of owner or policy" if inc.later_changes else "")
        out.append(Finding(f"{p.id}/record/{inc.id}", p.id, effect, why, inc.events[0].what, None, None, doc, section,
                           quote=quote, events=inc.events))
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


def _reading_finding(p: Provider) -> Finding | None:
    gaps = p.unread_governing()
    if not gaps:
        return None
    # Cite the first governing document not read in full: --explain then names the copy that fell short.
    first = next((p.documents[d] for d in p.governing or () if d in p.documents and not p.documents[d].complete), None)
    return Finding(f"{p.id}/reading", p.id, "unknown",
                   "an accept would rest on an incomplete reading of the terms: " + ", ".join(gaps),
                   "Not every governing document was read in full; a clause against this app may be in the part not read.",
                   document=first, section="(the parts not read)" if first else None)


def _findings(p: Provider, app: AppProfile, categories: dict[str, Category], today: dt.date,
              waived: Collection[str] = ()) -> tuple[list[Finding], Assessment | None, list[Incident]]:
    declared, exposed = _app_categories(app, categories)
    ugc = UNMODERATED in exposed or UNMODERATED in declared
    mod = assess(app.moderation, p) if ugc else None
    if mod is not None and not mod.adequate:
        declared[UNMODERATED] = f"moderation falls short of what {p.name} weighs: {mod.summary()}"
        exposed.pop(UNMODERATED, None)
    out: list[Finding] = []
    for name, reason in declared.items():
        clause = p.clause(name)
        out.append(_finding(p, clause, _DECLARED_EFFECT[clause.stance], reason))
    for name, reason in exposed.items():
        clause = p.clause(name)
        effect, why = _exposed_effect(clause, categories[name], mod)
        out.append(_finding(p, clause, effect, f"{reason}; {why}"))
    if mod is not None:
        out.append(_moderation_finding(p, mod))
    found = incidents(p, set(app.content) | set(declared), set(declared) | set(exposed), today)
    out.extend(_record_findings(p, found, mod))
    if app.content:  # any hosted content can be called objectionable
        for cat in (c for c in categories.values() if c.catch_all):
            clause = p.clause(cat.id)
            if clause.stance in ("prohibited", "restricted"):
                out.append(_finding(p, clause, "risk", "a catch-all clause lets the provider act on content no rule names"))
        # A waived reject no longer decides the verdict, so it cannot stand in for the reading either.
        if (reading := _reading_finding(p)) is not None and not any(f.effect == "reject" and f.id not in waived for f in out):
            out.append(reading)
    out.append(_suspension_finding(p))
    return out, mod, found


def _score(p: Provider, findings: list[Finding], found: list[Incident]) -> int:
    count = {e: sum(1 for f in findings if f.effect == e and f.category != "objectionable_catch_all") for e in VERDICTS}
    unreviewed = sum(1 for f in findings if f.effect in ("risk", "unknown") and f.stance == "unknown")
    conditional = min(35, 15 + 5 * (count["conditional"] - 1)) if count["conditional"] else 0
    score = 100 - 50 * count["reject"] - conditional - min(30, 10 * count["unknown"]) - 3 * unreviewed
    for f in findings:
        if f.category == "objectionable_catch_all":
            score -= 8 if f.stance == "prohibited" else 4
    s = p.suspension
    score -= 8 if s.without_notice is True else (4 if s.without_notice is None else 0)
    score += 5 if (s.cure_period_hours or 0) >= 24 else 0
    score -= round(min(20.0, sum((10 if i.adverse else 5) * i.weight for i in found
                                 if (i.adverse or i.kind == "notice") and i.same_kind)))
    score += round(min(10.0, sum(5 * i.weight for i in found if i.kind == "accept" and i.same_kind and not i.later_changes)))
    score -= 5 if p.confidence == "low" else 0
    return max(0, min(100, score))


def _stale(p: Provider, findings: list[Finding], today: dt.date, days: int) -> list[str]:
    """Warnings from each document's own date and the date of the copy read (not from when we read it)."""
    cited = {f.document.id for f in findings if f.document is not None}
    docs = [d for d in p.documents.values() if d.id in cited or d.id in (p.governing or ())]
    out = []
    for doc in docs:
        if doc.kind == "secondary":
            continue
        if doc.text_date is None:
            out.append(f"{p.id}: '{doc.title}' carries no date of its own; its age is unknown")
        elif (age := (today - event_date(doc.text_date)).days) > TEXT_STALE_YEARS * 365:
            out.append(f"{p.id}: '{doc.title}' is dated {doc.text_date} ({age // 365} years old); "
                       "check for a newer version" + (f" at {doc.url}" if doc.url else ""))
        if doc.newer_version:
            out.append(f"{p.id}: '{doc.title}': a newer version is known and was not read: {doc.newer_version}")
        captured = doc.copy.captured if doc.copy else None
        if captured is not None and (age := (today - event_date(captured)).days) > days:
            out.append(f"{p.id}: '{doc.title}' was read from a copy captured {captured} ({age} days ago); re-read it")
    return out


def judge(p: Provider, app: AppProfile, categories: dict[str, Category], today: dt.date, *,
          accepted_risks: Collection[str] = (), stale_after_days: int = STALE_AFTER_DAYS) -> ProviderVerdict:
    """One provider's verdict for one app."""
    raw, mod, found = _findings(p, app, categories, today, accepted_risks)
    findings = [replace(f, waived=True) if f.id in accepted_risks else f for f in raw]
    # A waiver accepts a known risk; an `unknown` is a reading nobody made, which no waiver
    # supplies: it is marked waived and still counts (`unknown` never becomes `accept`).
    counted = {f.effect for f in findings if not f.waived or f.effect == "unknown"}
    verdict = next((v for v in ("reject", "unknown", "conditional") if v in counted), "accept")
    leaning = "reject" if verdict == "conditional" and any(
        f.id.startswith(f"{p.id}/record/") and f.effect == "conditional" and not f.waived for f in findings) else None
    warnings = _stale(p, findings, today, stale_after_days)
    secondary = [f.id for f in findings if f.document is not None and f.document.kind == "secondary" and f.effect != "note"]
    if secondary:
        warnings.append(f"{p.id}: {', '.join(secondary)} rest on secondary sources (press or analyses), not the terms themselves")
    shown = {i.id for i in found}
    events = tuple(e for e in p.record if e.incident in shown or (shown and e.kind in ("owner_change", "policy_change")))
    return ProviderVerdict(p.id, p.name, p.kinds, verdict, _score(p, findings, found), tuple(findings),
                           p.suspension, events, tuple(warnings), p.confidence, leaning=leaning, moderation=mod,
                           incidents=tuple(found))


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


def dependency_risks(app: AppProfile, profileset: ProfileSet, verdicts: Iterable[ProviderVerdict], *,
                     names: Iterable[str] = (), services: Iterable[str] = (), uses: Iterable[str] = ()) -> list[DependencyRisk]:
    """For each vendor the app depends on (declared, or found from names): its verdict, and who else accepts."""
    links = chain.detect(profileset, names, services, uses, app.dependencies)
    return chain.risks(links, profileset, verdicts)


def check(app: AppProfile, profileset: ProfileSet, *, today: dt.date, providers: Collection[str] = (),
          kinds: Collection[str] = (), stale_after_days: int = STALE_AFTER_DAYS, names: Iterable[str] = (),
          services: Iterable[str] = (), uses: Iterable[str] = ()) -> Report:
    """What `relocate check` shows: ranked verdicts (hosts unless filtered) plus the vendor chain."""
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"--kind {kind}: unknown kind (valid: {', '.join(KINDS)})")
    selected = {profileset.get(p).id for p in providers}
    all_verdicts = evaluate(app, profileset, today=today, stale_after_days=stale_after_days)

    def shown(v: ProviderVerdict) -> bool:
        if selected:
            return v.provider in selected and (not kinds or bool(set(kinds) & set(v.kinds)))
        return bool(set(kinds or HOST_KINDS) & set(v.kinds))

    notes = []
    if app.content and app.moderation is None:
        notes.append("no app.moderation declared: every provider that weighs moderation will find it short")
    deps = dependency_risks(app, profileset, all_verdicts, names=names, services=services, uses=uses)
    return Report(tuple(v for v in all_verdicts if shown(v)), tuple(deps), tuple(notes))
