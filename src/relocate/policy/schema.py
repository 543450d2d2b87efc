"""The profile schema: categories.yaml and providers/<id>.yaml, as typed values.

A profile records what a provider's *written* terms say, per category, with the
document and section each reading comes from. `unknown` means we have not read
terms covering that category; it is never read as permission. Categories a
profile leaves out count as `unknown` too.
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
KINDS = ("compute", "object_storage", "dns", "cdn", "email", "registrar", "ddos_protection")
CONFIDENCE = ("high", "medium", "low")
DOC_KINDS = ("primary", "secondary")  # secondary: press, analyses, quotations of the terms
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
_DOCUMENT = _Rec({"id": Str(), "url": _URL, "title": Str(), "reviewed": Date(), "confidence": Str(choices=CONFIDENCE),
                  "text_date": Optional_(Date(partial=True)), "kind": Str(choices=DOC_KINDS), "note": _TEXT},
                 required=("id", "url", "title", "reviewed", "confidence"), defaults={"kind": "primary"})
_CLAUSE = _Rec({"stance": Str(choices=STANCES), "summary": Str(), **_SOURCE, "note": _TEXT}, required=("stance",))
_SUSPENSION = _Rec({"without_notice": Bool(nullable=True), "cure_period_hours": Optional_(Float(min=0)), "summary": Str(),
                    **_SOURCE}, required=("without_notice", "cure_period_hours", "summary"))
_ABUSE = _Rec({"summary": Str(), "contact": _TEXT, **_SOURCE}, required=("summary",))
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

    event = _Rec({"date": Date(partial=True), "target": Str(), "what": Str(), "source": _URL,
                  "categories": List(Str(choices=tuple(categories)))}, required=("date", "target", "what", "source"))
    return _Rec({"id": Str(check=check_id), "name": Str(), "kinds": List(Str(choices=KINDS), min_items=1),
                 "jurisdiction": _JURISDICTION, "documents": List(_DOCUMENT, min_items=1),
                 "categories": Dict(_CLAUSE, key_check=check_category), "suspension": _SUSPENSION,
                 "confidence": Str(choices=CONFIDENCE), "aliases": List(Str()), "abuse": Optional_(_ABUSE),
                 "enforcement": List(event), "notes": _TEXT},
                required=("id", "name", "kinds", "jurisdiction", "documents", "categories", "suspension", "confidence"))


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
        raise ProfileError(ctx.errors)
    return out


# ---- providers/<id>.yaml ----------------------------------------------------------


def parse_provider(doc: YamlDoc, categories: dict[str, Category], expected_id: str | None = None) -> Provider:
    """Validate one provider profile against the category set. Raises ProfileError listing every error."""
    top, ctx = _walk(doc, _provider_spec(categories, expected_id))
    if top is None:
        raise ProfileError(ctx.errors)
    documents = _documents(ctx, top["documents"])
    clauses: dict[str, Clause] = {}
    for cid, m in (top["categories"] or {}).items():
        path = join("categories", cid)
        stance = m["stance"]
        if stance != "unknown" and join(path, "summary") not in ctx.lines:
            ctx.report_path(path, "missing required key 'summary' (say in our own words what the terms say)")
        doc_id, section = _source(ctx, m, path, documents, required=stance not in (None, "unknown"))
        if stance:
            clauses[cid] = Clause(cid, stance, m["summary"] or "Not covered by the terms we reviewed.", doc_id, section, m["note"])
    suspension = abuse = None
    if (s := top["suspension"]) is not None:
        suspension = Suspension(s["without_notice"], s["cure_period_hours"], s["summary"] or "",
                                *_source(ctx, s, "suspension", documents, required=False))
    if (a := top["abuse"]) is not None:
        abuse = Abuse(a["summary"] or "", a["contact"], *_source(ctx, a, "abuse", documents, required=False))
    events = tuple(Event(e["date"], e["target"], e["what"], e["source"], _valid(e["categories"]))
                   for e in _valid(top["enforcement"]) if e["date"] and e["target"] and e["what"] and e["source"])
    if ctx.errors:
        raise ProfileError(ctx.errors)
    j = top["jurisdiction"]
    assert suspension is not None  # a required key: without it ctx.errors raised above
    return Provider(top["id"], top["name"], _valid(top["kinds"]), j["country"], j["note"], documents, clauses, suspension,
                    top["confidence"], _valid(top["aliases"]), abuse, events, doc.name, top["notes"])


def _documents(ctx: Ctx, raw: list[Any] | None) -> dict[str, Document]:
    out: dict[str, Document] = {}
    for i, m in enumerate(raw or ()):
        if m is None:
            continue
        did = m["id"]
        if did in out:
            ctx.report_path(join(join("documents", i), "id"), f"duplicate document id {did!r}")
        elif did and m["url"] and m["title"] and m["reviewed"] and m["confidence"]:
            out[did] = Document(did, m["url"], m["title"], m["reviewed"], m["confidence"], m["text_date"],
                                m["kind"] or "primary", m["note"])
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
