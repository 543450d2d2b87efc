"""The profile schema: categories.yaml and providers/<id>.yaml, as typed values.

A profile records what a provider's *written* terms say, per category, with the
document and section each reading comes from. `unknown` means we have not read
terms covering that category; it is never read as permission. Categories a
profile leaves out count as `unknown` too.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace

from relocate.policy.yamlsrc import Path_, ProfileError, Validator, YamlDoc

STANCES = ("prohibited", "restricted", "customer_responsible", "not_stated", "unknown")
KINDS = ("compute", "object_storage", "dns", "cdn", "email", "registrar", "ddos_protection")
CONFIDENCE = ("high", "medium", "low")
DOC_KINDS = ("primary", "secondary")  # secondary: press, analyses, quotations of the terms
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


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
class Document:
    id: str
    url: str
    title: str
    reviewed: dt.date
    confidence: str
    text_date: str | None = None
    kind: str = "primary"
    note: str | None = None


@dataclass(frozen=True)
class Clause:
    """One provider's stance on one category, and where it is written."""

    category: str
    stance: str
    summary: str
    document: str | None = None
    section: str | None = None
    note: str | None = None


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
class Event:
    date: str
    target: str
    what: str
    source: str
    categories: tuple[str, ...] = ()


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
    enforcement: tuple[Event, ...] = ()
    origin: str = ""
    notes: str | None = None

    def clause(self, category: str) -> Clause:
        """The stance on a category; a category the profile leaves out is `unknown`."""
        return self.clauses.get(category) or Clause(category, "unknown", "Not covered by the terms we reviewed.")


@dataclass
class CategorySet:
    categories: dict[str, Category] = field(default_factory=dict)

    def clause_ids(self) -> tuple[str, ...]:
        return tuple(c for c, v in self.categories.items() if not v.descriptor)


# ---- categories.yaml ------------------------------------------------------------


def parse_categories(doc: YamlDoc, base: dict[str, Category] | None = None) -> dict[str, Category]:
    """Validate a categories file; entries override `base` by id. Raises ProfileError."""
    v = Validator(doc)
    out = dict(base or {})
    top = v.mapping(doc.data, (), ("categories",), ("version",))
    raw = top.get("categories") if top else None
    if top is not None and raw is not None and not isinstance(raw, dict):
        v.err(("categories",), "must be a mapping of category id to definition")
        raw = None
    pending: list[tuple[str, dict, Path_]] = []
    for cid, body in (raw or {}).items():
        path: Path_ = ("categories", str(cid))
        if not isinstance(cid, str) or not _ID.match(cid):
            v.err(path, "category ids are lower-case letters, digits, _ or -")
            continue
        m = v.mapping(body, path, ("title", "definition"), ("baseline", "catch_all", "descriptor", "exposes"))
        if m is None:
            continue
        title, definition = v.text(m, "title", path), v.text(m, "definition", path)
        flags = {k: v.flag(m, k, path) if k in m else False for k in ("baseline", "catch_all", "descriptor")}
        if title and definition:
            out[cid] = Category(cid, title, definition, bool(flags["baseline"]), bool(flags["catch_all"]), bool(flags["descriptor"]))
            pending.append((cid, m, path))
    # `exposes` may name categories defined later in the file, so resolve after the loop.
    clause_ids = tuple(c for c, cat in out.items() if not cat.descriptor)
    for cid, m, path in pending:
        exposes = v.str_list(m, "exposes", path, choices=clause_ids)
        if exposes and not out[cid].descriptor:
            v.err(path + ("exposes",), "only descriptors (descriptor: true) expose other categories")
        out[cid] = replace(out[cid], exposes=exposes)
    if v.errors:
        raise ProfileError(v.errors)
    return out


# ---- providers/<id>.yaml ----------------------------------------------------------

_TOP_REQUIRED = ("id", "name", "kinds", "jurisdiction", "documents", "categories", "suspension", "confidence")
_TOP_OPTIONAL = ("aliases", "abuse", "enforcement", "notes")


def parse_provider(doc: YamlDoc, categories: dict[str, Category], expected_id: str | None = None) -> Provider:
    """Validate one provider profile against the category set. Raises ProfileError listing every error."""
    v = Validator(doc)
    top = v.mapping(doc.data, (), _TOP_REQUIRED, _TOP_OPTIONAL)
    if top is None:
        raise ProfileError(v.errors)
    pid = v.text(top, "id", ())
    if pid is not None and not _ID.match(pid):
        v.err(("id",), "must be lower-case letters, digits, _ or - (it names the file)")
    elif pid is not None and expected_id is not None and pid != expected_id:
        v.err(("id",), f"must match the file name {expected_id!r}")
    name = v.text(top, "name", ())
    kinds = v.str_list(top, "kinds", (), choices=KINDS, nonempty=True)
    aliases = v.str_list(top, "aliases", ())
    confidence = v.text(top, "confidence", (), choices=CONFIDENCE)
    notes = v.text(top, "notes", (), required=False)
    country, jnote = _jurisdiction(v, top.get("jurisdiction"))
    documents = _documents(v, top.get("documents"))
    clauses = _clauses(v, top.get("categories"), categories, documents)
    suspension = _suspension(v, top.get("suspension"), documents)
    abuse = _abuse(v, top["abuse"], documents) if top.get("abuse") is not None else None
    events = _events(v, top.get("enforcement"), categories)
    if v.errors:
        raise ProfileError(v.errors)
    assert pid and name and confidence and country and suspension  # guaranteed when no errors
    return Provider(pid, name, kinds, country, jnote, documents, clauses, suspension, confidence,
                    aliases, abuse, events, doc.name, notes)


def _jurisdiction(v: Validator, raw: object) -> tuple[str | None, str | None]:
    m = v.mapping(raw, ("jurisdiction",), ("country",), ("note",))
    if m is None:
        return None, None
    country = v.text(m, "country", ("jurisdiction",))
    if country is not None and not re.match(r"^[A-Z]{2}$", country):
        v.err(("jurisdiction", "country"), f"must be an ISO 3166 two-letter code such as US or IS (got {country!r})")
    return country, v.text(m, "note", ("jurisdiction",), required=False)


def _documents(v: Validator, raw: object) -> dict[str, Document]:
    out: dict[str, Document] = {}
    if not isinstance(raw, list) or not raw:
        v.err(("documents",), "must be a list of at least one document")
        return out
    for i, item in enumerate(raw):
        path: Path_ = ("documents", i)
        m = v.mapping(item, path, ("id", "url", "title", "reviewed", "confidence"), ("text_date", "kind", "note"))
        if m is None:
            continue
        did, url, title = v.text(m, "id", path), v.url(m, "url", path), v.text(m, "title", path)
        reviewed = v.full_date(m, "reviewed", path)
        conf = v.text(m, "confidence", path, choices=CONFIDENCE)
        text_date = v.partial_date(m, "text_date", path)
        kind = v.text(m, "kind", path, required=False, choices=DOC_KINDS) or "primary"
        note = v.text(m, "note", path, required=False)
        if did in out:
            v.err(path + ("id",), f"duplicate document id {did!r}")
        elif did and url and title and reviewed and conf:
            out[did] = Document(did, url, title, reviewed, conf, text_date, kind, note)
    return out


def _source(v: Validator, m: dict, path: Path_, documents: dict[str, Document], *, required: bool) -> tuple[str | None, str | None]:
    """A (document id, section) pair; both or neither, and the document must exist."""
    doc_id = v.text(m, "document", path, required=False)
    section = v.text(m, "section", path, required=False)
    if required and (doc_id is None or section is None):
        v.err(path, "must cite its source: give both 'document' (a document id) and 'section'")
    elif (doc_id is None) != (section is None):
        v.err(path, "give both 'document' and 'section', or neither")
    if doc_id is not None and doc_id not in documents and documents:
        v.err(path + ("document",), f"no document with id {doc_id!r} (documents: {', '.join(documents)})")
    return doc_id, section


def _clauses(v: Validator, raw: object, categories: dict[str, Category], documents: dict[str, Document]) -> dict[str, Clause]:
    out: dict[str, Clause] = {}
    if raw is None:
        return out
    if not isinstance(raw, dict):
        v.err(("categories",), "must be a mapping of category id to stance")
        return out
    known = tuple(c for c, cat in categories.items() if not cat.descriptor)
    for cid, body in raw.items():
        path: Path_ = ("categories", str(cid))
        if cid not in known:
            why = "is a descriptor; give stances on the categories it exposes" if cid in categories else "is not in categories.yaml"
            v.err(path, f"category {str(cid)!r} {why}")
            continue
        m = v.mapping(body, path, ("stance",), ("summary", "document", "section", "note"))
        if m is None:
            continue
        stance = v.text(m, "stance", path, choices=STANCES)
        summary = v.text(m, "summary", path, required=stance != "unknown")
        if stance != "unknown" and summary is None and "summary" not in m:
            v.err(path, "missing required key 'summary' (say in our own words what the terms say)")
        doc_id, section = _source(v, m, path, documents, required=stance not in (None, "unknown"))
        note = v.text(m, "note", path, required=False)
        if stance:
            out[cid] = Clause(cid, stance, summary or "Not covered by the terms we reviewed.", doc_id, section, note)
    return out


def _suspension(v: Validator, raw: object, documents: dict[str, Document]) -> Suspension | None:
    path: Path_ = ("suspension",)
    m = v.mapping(raw, path, ("without_notice", "cure_period_hours", "summary"), ("document", "section"))
    if m is None:
        return None
    without = v.flag(m, "without_notice", path, nullable=True)
    cure = v.number(m, "cure_period_hours", path)
    summary = v.text(m, "summary", path)
    doc_id, section = _source(v, m, path, documents, required=False)
    return Suspension(without, cure, summary or "", doc_id, section)


def _abuse(v: Validator, raw: object, documents: dict[str, Document]) -> Abuse | None:
    path: Path_ = ("abuse",)
    m = v.mapping(raw, path, ("summary",), ("contact", "document", "section"))
    if m is None:
        return None
    summary = v.text(m, "summary", path)
    contact = v.text(m, "contact", path, required=False)
    doc_id, section = _source(v, m, path, documents, required=False)
    return Abuse(summary or "", contact, doc_id, section)


def _events(v: Validator, raw: object, categories: dict[str, Category]) -> tuple[Event, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        v.err(("enforcement",), "must be a list of dated events")
        return ()
    known = tuple(categories)
    out: list[Event] = []
    for i, item in enumerate(raw):
        path: Path_ = ("enforcement", i)
        m = v.mapping(item, path, ("date", "target", "what", "source"), ("categories",))
        if m is None:
            continue
        date = v.partial_date(m, "date", path, required=True)
        target, what, source = v.text(m, "target", path), v.text(m, "what", path), v.url(m, "source", path)
        cats = v.str_list(m, "categories", path, choices=known)
        if date and target and what and source:
            out.append(Event(date, target, what, source, cats))
    return tuple(out)
