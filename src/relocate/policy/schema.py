"""The profile schema (format v2): categories.yaml and providers/<id>.yaml, as typed values.

A profile records what a provider's *written* terms say, per category, with the
document and section each reading comes from, and which dated copy of that
document was read (archive, commit, capture date) and whether in full. `unknown`
means we have not read terms covering that category; it is never read as
permission. Categories a profile leaves out count as `unknown` too. A stance of
`not_stated` ("no clause found") only holds when every governing document was
read in full; the engine reads it as `unknown` otherwise (`Provider.clause`).

The contract for the file format is docs/policy.md ("Profile format").
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from relocate.errors import ConfigError
from relocate.schema import Bool, Ctx, Date, Dict, Float, Int, List, Map, Optional_, Str, choice_error, compose, join, load_node

STANCES = ("prohibited", "restricted", "customer_responsible", "not_stated", "unknown")
HOST_KINDS = ("compute", "object_storage", "dns", "cdn", "email", "registrar", "ddos_protection")
# Vendors an app depends on beside its host (issue 14: the chain that failed Parler the same day).
CHAIN_KINDS = ("sms", "identity", "support", "chat", "payments", "app_store", "monitoring")
KINDS = HOST_KINDS + CHAIN_KINDS
CONFIDENCE = ("high", "medium", "low")
DOC_KINDS = ("primary", "secondary")  # v1 `kind`; v2 says `role: secondary` for the same thing
ROLES = ("aup", "tos", "service_terms", "guidelines", "policy", "secondary")
READS = ("full", "partial")
EVENT_KINDS = ("drop", "refuse", "notice", "accept", "policy_change", "owner_change")  # notice: warned, did not cut off
SOURCE_KINDS = ("primary", "secondary")
EXPECTS = ("report_response", "proactive_detection", "published_rules", "notice_channel")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ProfileError(ConfigError):
    """One or more profile files are invalid; `errors` holds every line."""

    def __init__(self, errors: list[str]) -> None:
        more = f" (and {len(errors) - 1} more; run `relocate profiles lint`)" if len(errors) > 1 else ""
        super().__init__(errors[0] + more)
        self.errors = errors


@dataclass(frozen=True)
class YamlDoc:
    """A profile file, composed (line marks kept) but not yet validated."""

    name: str
    node: yaml.Node | None


def parse_yaml(text: str | bytes, name: str) -> YamlDoc:
    """Parse one YAML document safely; every failure becomes a ConfigError naming the file."""
    return YamlDoc(name, compose(text, name))


@dataclass(frozen=True)
class Category:
    id: str
    title: str
    definition: str
    baseline: bool = False
    catch_all: bool = False
    descriptor: bool = False
    exposes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Copy:
    """The dated copy of a document that was read: an archive commit, or the live page on a date."""

    archive: str  # OpenTermsArchive/contrib-versions, tosdr/tosback-versions, ... or "provider"
    path: str | None = None
    commit: str | None = None
    captured: str | None = None  # YYYY[-MM[-DD]]: when the archive recorded it, or the fetch date

    def label(self) -> str:
        where = self.archive + (f":{self.path}" if self.path else "")
        return where + (f"@{self.commit[:12]}" if self.commit else "") + (f", captured {self.captured}" if self.captured else "")


@dataclass(frozen=True)
class Document:
    id: str
    url: str | None  # None: the document is known to exist, its address is not
    title: str
    reviewed: dt.date
    confidence: str
    text_date: str | None = None  # the text's own "last updated" date, YYYY[-MM[-DD]]
    kind: str = "primary"  # primary | secondary (derived from role in v2)
    note: str | None = None
    role: str = "policy"
    copy: Copy | None = None
    read: str = "partial"  # full | partial
    sections_read: tuple[str, ...] = ()
    newer_version: str | None = None

    @property
    def complete(self) -> bool:
        return self.read == "full"

    def reading(self) -> str:
        """How this document was read, for `--explain`: which copy, complete or not."""
        copy = self.copy.label() if self.copy else "no dated copy recorded"
        how = "read in full" if self.complete else ("read in part: " + "; ".join(self.sections_read) if self.sections_read
                                                    else "not read (no copy found)")
        return f"{copy}; {how}"


@dataclass(frozen=True)
class Clause:
    """One provider's stance on one category, and where it is written."""

    category: str
    stance: str
    summary: str
    document: str | None = None
    section: str | None = None
    note: str | None = None
    quote: str | None = None


@dataclass(frozen=True)
class Suspension:
    without_notice: bool | None
    cure_period_hours: float | None
    summary: str
    document: str | None = None
    section: str | None = None


@dataclass(frozen=True)
class Abuse:
    summary: str
    contact: str | None = None
    document: str | None = None
    section: str | None = None


@dataclass(frozen=True)
class ModerationTerms:
    """What a provider's terms say it weighs in a customer's moderation (the `moderation` section)."""

    cure_period_hours: float | None
    business_days: bool
    expects: tuple[str, ...]
    summary: str
    quote: str | None = None
    document: str | None = None
    section: str | None = None


@dataclass(frozen=True)
class Event:
    """One dated event in a provider's record: a drop, a refusal, an acceptance, a change of owner or policy."""

    date: str
    target: str
    what: str
    source: str
    kind: str = "drop"
    incident: str = ""
    app_categories: tuple[str, ...] = ()
    reason_categories: tuple[str, ...] = ()
    notice_hours: float | None = None
    source_kind: str = "secondary"

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.app_categories + self.reason_categories))


@dataclass(frozen=True)
class Detect:
    env_prefixes: tuple[str, ...] = ()
    aws_services: tuple[str, ...] = ()


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    kinds: tuple[str, ...]
    country: str
    jurisdiction_note: str | None
    documents: dict[str, Document]
    clauses: dict[str, Clause]
    suspension: Suspension
    confidence: str
    aliases: tuple[str, ...] = ()
    abuse: Abuse | None = None
    record: tuple[Event, ...] = ()
    origin: str = ""
    notes: str | None = None
    governing: tuple[str, ...] | None = None  # None: a v1 profile that does not say
    moderation: ModerationTerms | None = None
    detect: Detect = Detect()

    @property
    def enforcement(self) -> tuple[Event, ...]:
        """v1 name of `record`."""
        return self.record

    def unread_governing(self) -> list[str]:
        """Why a `not_stated` cannot be trusted: governing documents not read in full (empty: all were)."""
        if self.governing is None:
            return ["the profile does not list its governing documents"]
        return [f"{d} ({'missing' if d not in self.documents else 'read in part'})"
                for d in self.governing if d not in self.documents or not self.documents[d].complete]

    def searched(self) -> Document | None:
        """Where a "no clause found" was looked for: the first governing document read in
        full. A `not_stated` or `unknown` clause that names no document of its own is cited
        from it (no section: nothing there names the category); None when none was read whole."""
        return next((self.documents[d] for d in self.governing or ()
                     if d in self.documents and self.documents[d].complete and self.documents[d].kind == "primary"), None)

    def written_clause(self, category: str) -> Clause:
        """The stance exactly as the profile writes it; a category left out is `unknown`."""
        return self.clauses.get(category) or Clause(category, "unknown", "Not covered by the terms we reviewed.")

    def clause(self, category: str) -> Clause:
        """The stance the engine uses: `not_stated` over an incomplete reading becomes `unknown`."""
        c = self.written_clause(category)
        if c.stance == "not_stated" and (gaps := self.unread_governing()):
            return Clause(category, "unknown", f"{c.summary} But 'not stated' is only known for documents read in full, "
                          f"and not all governing documents were: {', '.join(gaps)}.", c.document, c.section, c.note, c.quote)
        return c


@dataclass
class CategorySet:
    categories: dict[str, Category] = field(default_factory=dict)

    def clause_ids(self) -> tuple[str, ...]:
        return tuple(c for c, v in self.categories.items() if not v.descriptor)


# ---- the specs: what a profile file may say ----------------------------------------


class _Rec(Map):
    """A profile mapping: a missing key is named at its parent, as `profiles lint` prints it."""

    def missing(self, line: int | None, path: str, key: str, ctx: Ctx) -> None:
        ctx.report_at(line, path, f"missing required key {key!r}")


def _check(pattern: str, message: str) -> Callable[[str], str | None]:
    return lambda value: None if re.match(pattern, value) else f"{message} (got {value!r})"


_TEXT = Optional_(Str())
_URL = Str(check=_check(r"^https?://\S+$", "must be an http(s) URL"))
_CATEGORY = _Rec({"title": Str(), "definition": Str(), "baseline": Bool(), "catch_all": Bool(), "descriptor": Bool(),
                  "exposes": List(Str())}, required=("title", "definition"))
_CATEGORIES_FILE = _Rec({"version": Int(), "categories": Dict(_CATEGORY, key_check=lambda cid: None if _ID.match(cid) else
                                                             "category ids are lower-case letters, digits, _ or -")},
                        required=("categories",))
_SOURCE = {"document": _TEXT, "section": _TEXT}  # a (document id, section) citation
_COPY = _Rec({"archive": Str(), "path": _TEXT, "commit": Optional_(Str(check=_check(r"^[0-9a-f]{7,40}$", "must be a commit sha: 7 to 40 lower-case hex digits"))),
              "captured": Optional_(Date(partial=True))}, required=("archive",))
_DOCUMENT = _Rec({"id": Str(), "role": Str(choices=ROLES), "url": Optional_(_URL), "title": Str(), "reviewed": Date(),
                  "confidence": Str(choices=CONFIDENCE), "text_date": Optional_(Date(partial=True)),
                  "kind": Str(choices=DOC_KINDS), "note": _TEXT, "copy": Optional_(_COPY), "read": Str(choices=READS),
                  "sections_read": List(Str()), "newer_version": _TEXT},
                 required=("id", "url", "title", "reviewed", "confidence"))
_CLAUSE = _Rec({"stance": Str(choices=STANCES), "summary": Str(), **_SOURCE, "note": _TEXT, "quote": _TEXT}, required=("stance",))
_SUSPENSION = _Rec({"without_notice": Bool(nullable=True), "cure_period_hours": Optional_(Float(min=0)), "summary": Str(),
                    **_SOURCE}, required=("without_notice", "cure_period_hours", "summary"))
_ABUSE = _Rec({"summary": Str(), "contact": _TEXT, **_SOURCE}, required=("summary",))
_MODERATION = _Rec({"cure_period_hours": Optional_(Float(min=0)), "business_days": Bool(), "expects": List(Str(choices=EXPECTS)),
                    "summary": Str(), "quote": _TEXT, **_SOURCE}, required=("summary",))
_DETECT = _Rec({"env_prefixes": List(Str(check=_check(r"^[A-Z0-9_]+$", "must be upper-case letters, digits or _"))),
                "aws_services": List(Str())})
_JURISDICTION = _Rec({"country": Str(check=_check(r"^[A-Z]{2}$", "must be an ISO 3166 two-letter code such as US or IS")),
                      "note": _TEXT}, required=("country",))


def _provider_spec(categories: dict[str, Category], expected_id: str | None) -> Map:
    known = tuple(c for c, cat in categories.items() if not cat.descriptor)

    def check_id(pid: str) -> str | None:
        if not _ID.match(pid):
            return "must be lower-case letters, digits, _ or - (it names the file)"
        return f"must match the file name {expected_id!r}" if expected_id is not None and pid != expected_id else None

    def check_category(cid: str) -> str | None:
        why = "is a descriptor; give stances on the categories it exposes" if cid in categories else "is not in categories.yaml"
        return None if cid in known else f"category {cid!r} {why}"

    any_category = List(Str(choices=tuple(categories)))
    v1_event = _Rec({"date": Date(partial=True), "target": Str(), "what": Str(), "source": _URL, "categories": any_category},
                    required=("date", "target", "what", "source"))
    event = _Rec({"date": Date(partial=True), "kind": Str(choices=EVENT_KINDS), "incident": Str(check=check_incident),
                  "target": Str(), "app_categories": any_category, "reason_categories": any_category,
                  "notice_hours": Optional_(Float(min=0)), "what": Str(), "source": _URL,
                  "source_kind": Str(choices=SOURCE_KINDS)},
                 required=("date", "kind", "incident", "target", "what", "source"))
    return _Rec({"id": Str(check=check_id), "name": Str(), "kinds": List(Str(choices=KINDS), min_items=1),
                 "jurisdiction": _JURISDICTION, "documents": List(_DOCUMENT, min_items=1), "governing": List(Str()),
                 "categories": Dict(_CLAUSE, key_check=check_category), "suspension": _SUSPENSION,
                 "confidence": Str(choices=CONFIDENCE), "aliases": List(Str()), "abuse": Optional_(_ABUSE),
                 "moderation": Optional_(_MODERATION), "detect": Optional_(_DETECT),
                 "record": List(event), "enforcement": List(v1_event), "notes": _TEXT},
                required=("id", "name", "kinds", "jurisdiction", "documents", "categories", "confidence"))


def check_incident(value: str) -> str | None:
    return None if _ID.match(value) else "must be lower-case letters, digits, _ or - (e.g. parler-2021-aws)"


def _walk(doc: YamlDoc, spec: Map) -> tuple[Any, Ctx]:
    ctx = Ctx(doc.name, collect=True)
    return load_node(doc.node, spec, ctx), ctx


def _valid(items: list[Any] | None) -> tuple[Any, ...]:
    return tuple(x for x in items or () if x is not None)


# ---- categories.yaml ------------------------------------------------------------


def parse_categories(doc: YamlDoc, base: dict[str, Category] | None = None) -> dict[str, Category]:
    """Validate a categories file; entries override `base` by id. Raises ProfileError."""
    top, ctx = _walk(doc, _CATEGORIES_FILE)
    out = dict(base or {})
    raw: dict[str, dict[str, Any]] = (top or {}).get("categories") or {}
    for cid, m in raw.items():
        if m["title"] and m["definition"]:
            out[cid] = Category(cid, m["title"], m["definition"], bool(m["baseline"]), bool(m["catch_all"]), bool(m["descriptor"]))
    # `exposes` may name categories defined later in the file, so check it after the walk.
    clause_ids = tuple(c for c, cat in out.items() if not cat.descriptor)
    for cid, m in raw.items():
        if cid not in out or not m["exposes"]:
            continue
        path = join(join("categories", cid), "exposes")
        if not out[cid].descriptor:
            ctx.report_path(path, "only descriptors (descriptor: true) expose other categories")
        for i, item in enumerate(m["exposes"]):
            if item is not None and item not in clause_ids:
                ctx.report_path(join(path, i), choice_error(item, clause_ids))
        exposes = tuple(e for e in _valid(m["exposes"]) if e in clause_ids)
        out[cid] = Category(cid, m["title"], m["definition"], bool(m["baseline"]), bool(m["catch_all"]), bool(m["descriptor"]), exposes)
    if ctx.errors:
        raise ProfileError(ctx.errors_in_order())
    return out


# ---- providers/<id>.yaml ----------------------------------------------------------


def parse_provider(doc: YamlDoc, categories: dict[str, Category], expected_id: str | None = None) -> Provider:
    """Validate one provider profile against the category set. Raises ProfileError listing every error."""
    top, ctx = _walk(doc, _provider_spec(categories, expected_id))
    if top is None:
        raise ProfileError(ctx.errors_in_order())
    documents = _documents(ctx, top["documents"])
    governing = None
    if top["governing"] is not None:
        governing = _valid(top["governing"])
        for i, gid in enumerate(governing):
            if gid not in documents:
                ctx.report_path(join("governing", i), f"no document with id {gid!r} (documents: {', '.join(documents)})")
            elif documents[gid].kind == "secondary":
                ctx.report_path(join("governing", i), f"document {gid!r} is secondary; only the provider's own texts govern")
    clauses: dict[str, Clause] = {}
    for cid, m in (top["categories"] or {}).items():
        path = join("categories", cid)
        stance = m["stance"]
        if stance != "unknown" and join(path, "summary") not in ctx.lines:
            ctx.report_path(path, "missing required key 'summary' (say in our own words what the terms say)")
        doc_id, section = _source(ctx, m, path, documents, required=stance not in (None, "unknown", "not_stated"))
        if stance:
            clauses[cid] = Clause(cid, stance, m["summary"] or "Not covered by the terms we reviewed.", doc_id, section,
                                  m["note"], m["quote"])
    suspension = Suspension(None, None, "The profile records no suspension terms.")
    abuse = moderation = None
    if (s := top["suspension"]) is not None:
        suspension = Suspension(s["without_notice"], s["cure_period_hours"], s["summary"] or "",
                                *_source(ctx, s, "suspension", documents, required=False))
    if (a := top["abuse"]) is not None:
        abuse = Abuse(a["summary"] or "", a["contact"], *_source(ctx, a, "abuse", documents, required=False))
    if (m := top["moderation"]) is not None:
        moderation = ModerationTerms(m["cure_period_hours"], bool(m["business_days"]), _valid(m["expects"]), m["summary"] or "",
                                     m["quote"], *_source(ctx, m, "moderation", documents, required=False))
    d = top["detect"] or {}
    detect = Detect(_valid(d.get("env_prefixes")), _valid(d.get("aws_services")))
    events = _record(ctx, top)
    if ctx.errors:
        raise ProfileError(ctx.errors_in_order())
    j = top["jurisdiction"]
    assert suspension is not None  # a required key: without it ctx.errors raised above
    return Provider(top["id"], top["name"], _valid(top["kinds"]), j["country"], j["note"], documents, clauses, suspension,
                    top["confidence"], _valid(top["aliases"]), abuse, events, doc.name, top["notes"], governing, moderation, detect)


def _record(ctx: Ctx, top: dict[str, Any]) -> tuple[Event, ...]:
    if top["record"] is not None and top["enforcement"] is not None:
        ctx.report_path("enforcement", "v1 name of `record`: give one or the other")
    out = [Event(e["date"], e["target"], e["what"], e["source"], e["kind"], e["incident"], _valid(e["app_categories"]),
                 _valid(e["reason_categories"]), e["notice_hours"], e["source_kind"] or "secondary")
           for e in _valid(top["record"]) if all(e[k] for k in ("date", "target", "what", "source", "kind", "incident"))]
    # v1 `enforcement`: every event was a drop; its categories were both what the app was and why.
    for e in _valid(top["enforcement"]):
        if e["date"] and e["target"] and e["what"] and e["source"]:
            slug = re.sub(r"[^a-z0-9]+", "-", e["target"].lower()).strip("-")[:40] or "event"
            cats = _valid(e["categories"])
            out.append(Event(e["date"], e["target"], e["what"], e["source"], "drop", f"{slug}-{e['date'][:4]}", cats, cats))
    return tuple(out)


def _documents(ctx: Ctx, raw: list[Any] | None) -> dict[str, Document]:
    out: dict[str, Document] = {}
    for i, m in enumerate(raw or ()):
        if m is None:
            continue
        did, path = m["id"], join("documents", i)
        role = m["role"] or ("secondary" if m["kind"] == "secondary" else "policy")
        kind = "secondary" if role == "secondary" else "primary"
        if m["kind"] is not None and m["kind"] != kind:
            ctx.report_path(path, f"kind {m['kind']!r} contradicts role {role!r}")
        if kind == "primary" and m["copy"] is None and join(path, "copy") not in ctx.lines:
            ctx.report_path(path, "missing required key 'copy' (which dated copy of this primary document was read)")
        read = m["read"] or "partial"
        # A `read:` given but refused was reported already: not a partial reading as well.
        if read == "partial" and m["sections_read"] is None and kind == "primary" and \
                (m["read"] is not None or join(path, "read") not in ctx.lines):
            ctx.report_path(path, "read: partial needs 'sections_read' (which sections were read; [] for none)")
        if did in out:
            ctx.report_path(join(path, "id"), f"duplicate document id {did!r}")
        elif did and m["title"] and m["reviewed"] and m["confidence"]:
            c = m["copy"]
            copy = Copy(c["archive"], c["path"], c["commit"], c["captured"]) if c and c["archive"] else None
            out[did] = Document(did, m["url"], m["title"], m["reviewed"], m["confidence"], m["text_date"], kind, m["note"],
                                role, copy, read, _valid(m["sections_read"]), m["newer_version"])
    return out


def _source(ctx: Ctx, m: dict[str, Any], path: str, documents: dict[str, Document], *, required: bool) -> tuple[str | None, str | None]:
    """A (document id, section) pair; both or neither, and the document must exist."""
    doc_id, section = m["document"], m["section"]
    if required and (doc_id is None or section is None):
        ctx.report_path(path, "must cite its source: give both 'document' (a document id) and 'section'")
    elif (doc_id is None) != (section is None):
        ctx.report_path(path, "give both 'document' and 'section', or neither")
    if doc_id is not None and doc_id not in documents and documents:
        ctx.report_path(join(path, "document"), f"no document with id {doc_id!r} (documents: {', '.join(documents)})")
    return doc_id, section


def lint_warnings(p: Provider) -> list[str]:
    """What `profiles lint` warns about in a valid profile: readings the engine will discount."""
    out = []
    where = p.origin or p.id
    if p.governing is None:
        out.append(f"{where}: no 'governing' list: every 'not_stated' is read as 'unknown'")
    gaps = p.unread_governing()
    if gaps and p.governing is not None:
        for cid, c in p.clauses.items():
            if c.stance == "not_stated":
                out.append(f"{where}: categories.{cid}: not_stated while governing documents are not all read in full "
                           f"({', '.join(gaps)}): the engine reads it as unknown")
    for c in p.clauses.values():
        doc = p.documents.get(c.document) if c.document else None
        if doc is not None and doc.kind == "secondary" and c.stance not in ("unknown", "not_stated"):
            out.append(f"{where}: categories.{c.category}: rests on a secondary document ({doc.id}); clauses need the "
                       "provider's own text")
    for e in p.record:
        if e.kind in ("drop", "refuse") and not e.app_categories:
            out.append(f"{where}: record {e.incident}: no app_categories: the event cannot be matched to an app")
    return out
