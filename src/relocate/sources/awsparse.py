"""botocore's response parsing, with quicker paths for what S3 listings carry. Imported
with botocore itself, when the source is first read (sources/aws.py's Aws.session)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from botocore import handlers
from botocore.parsers import ResponseParserError, ResponseParserFactory, RestXMLParser
from botocore.utils import parse_timestamp


def _timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, with a fast path for the ISO 8601 form every S3
    listing entry carries: botocore's own goes through dateutil (~40 us each), half the
    time of listing 10,000 objects here. Anything else, or a time without a zone,
    goes to botocore's parser as before."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    stamp: datetime = parse_timestamp(value)
    return stamp


# One element with text only, as S3 writes a listing entry's fields: `<Key>a.txt</Key>`.
_SIMPLE = re.compile(r"<([A-Za-z]\w*)>([^<]*)</\1>")
# What an XML parser refuses or rewrites in text (control characters, CR, CDATA, "]]>"):
# a page holding any of it is parsed by botocore's own path, which knows the rules.
_CONTROL = bytes(c for c in range(32) if c not in (9, 10))  # CR too: a parser turns CRLF into LF
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot|apos)|#([0-9]{1,7})|#x([0-9A-Fa-f]{1,6}));")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


def _entity(m: re.Match[str]) -> str:
    if m.group(1):
        return _NAMED[m.group(1)]
    code = int(m.group(2)) if m.group(2) else int(m.group(3), 16)
    # XML's Char production: anything else is a malformed page, left to botocore's parser
    if not (code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF):
        raise ValueError("not an XML character")
    return chr(code)


def _unescape(text: str) -> str:
    """XML's five entities and character references (an ETag is `&quot;...&quot;`);
    a `&` that starts none of them is not XML: ValueError."""
    # The usual case, by plain replaces (AWS writes `&quot;`, Go's encoder `&#34;`), `&amp;`
    # last, so `&amp;lt;` stays `&lt;`:
    out = text.replace("&quot;", '"').replace("&#34;", '"').replace("&lt;", "<").replace("&gt;", ">")
    if "&#" not in out and "&apos;" not in out:
        if out.count("&") != out.count("&amp;"):
            raise ValueError("stray &")
        return out.replace("&amp;", "&")
    out, n = _ENTITY.subn(_entity, text)
    if n != text.count("&"):
        raise ValueError("stray &")
    return out


class _ListingXmlParser(RestXMLParser):
    """botocore's REST-XML parser with a quicker path for the entries of S3 listings.

    botocore parses each `<Contents>` entry generically (a tag -> node dict, then every
    member of the model looked up): ~70 us an entry, two thirds of listing 10,000 objects
    here. For the shapes in _FAST, scalar members (string, integer, timestamp, boolean)
    are converted straight from the child nodes; anything else (Owner, ChecksumAlgorithm,
    RestoreStatus) goes through botocore's own handlers, and a shape with XML attributes
    or a scalar tag seen twice takes the generic path whole. Same result, key for key
    (tests/test_s3data.py compares them).

    A whole listing page (ListObjectsV2, ListObjects, ListObjectVersions) goes faster
    still: its entries (`<Contents>`, `<Version>`, `<DeleteMarker>`, `<CommonPrefixes>`)
    are cut out of the decoded page with plain splits and converted field by field, with
    no element tree (a SeaweedFS page of 1,000 entries: 13-19 ms with the tree, 6-12
    without), and only the rest of the page (name, token, counts) goes through botocore.
    An entry with a nested field (Owner, RestoreStatus) is parsed alone as XML; a page
    with anything an XML parser would refuse or rewrite (a stray `&`, a control
    character, a CR, CDATA, an entry tag with attributes) goes to botocore's path whole.
    """

    _FAST = frozenset({"Object", "CommonPrefix", "ObjectVersion", "DeleteMarkerEntry"})
    _KINDS = {"string": "s", "integer": "i", "long": "i", "timestamp": "t", "boolean": "b"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tags: dict[str, str] = {}
        self._shapes: dict[tuple[str, int], tuple[Any, Any]] = {}  # (what, id(shape)) -> (shape, what was derived)

    def _node_tag(self, node: Any) -> str:
        """botocore's (the tag without its namespace: a regex substitution, six per listed
        object), remembered per tag: a listing has a dozen distinct tags."""
        tag = self._tags.get(node.tag)
        if tag is None:
            tag = self._tags[node.tag] = super()._node_tag(node)
        return tag

    def _per_shape(self, what: str, shape: Any, make: Any) -> Any:
        """make(shape), once per shape the model holds (kept by id, checked by identity)."""
        got = self._shapes.get((what, id(shape)))
        if got is not None and got[0] is shape:
            return got[1]
        made = make(shape)
        self._shapes[(what, id(shape))] = (shape, made)
        return made

    def _plan(self, shape: Any) -> dict[str, tuple[str, str | None, Any]] | None:
        """Per XML tag of a structure: (member name, scalar kind or None, member shape);
        None when the structure has XML attributes (botocore's generic path then)."""
        plan: dict[str, tuple[str, str | None, Any]] | None = self._per_shape("plan", shape, self._make_plan)
        return plan

    def _make_plan(self, shape: Any) -> dict[str, tuple[str, str | None, Any]] | None:
        members: dict[str, tuple[str, str | None, Any]] = {}
        plan: dict[str, tuple[str, str | None, Any]] | None = members
        for name, member in shape.members.items():
            ser = member.serialization
            if ser.get("xmlAttribute"):
                plan = None
                break
            if ser.get("location") in self.KNOWN_LOCATIONS or ser.get("eventheader"):
                continue
            members[self._member_key_name(member, name)] = (name, self._KINDS.get(member.type_name), member)
        return plan

    def _handle_structure(self, shape: Any, node: Any) -> Any:
        if shape.name not in self._FAST or isinstance(node, list) or shape.metadata.get("exception"):
            return super()._handle_structure(shape, node)
        plan = self._plan(shape)
        if plan is None:
            return super()._handle_structure(shape, node)
        parsed: dict[str, Any] = {}
        others: dict[str, Any] = {}
        for child in node:
            tag = self._node_tag(child)
            entry = plan.get(tag)
            if entry is None:
                continue  # not in the model: botocore ignores it too
            name, kind, member = entry
            if kind is None:
                prev = others.get(tag)  # aggregated as botocore's _build_name_to_xml_node does
                others[tag] = child if prev is None else (prev + [child] if isinstance(prev, list) else [prev, child])
                continue
            if name in parsed:
                return super()._handle_structure(shape, node)
            text = child.text
            parsed[name] = self._scalar(kind, "" if text is None else text)
        for tag, nodes in others.items():
            name, _, member = plan[tag]
            parsed[name] = self._parse_shape(member, nodes)
        return parsed

    def _entry_lists(self, shape: Any) -> dict[str, tuple[str, Any, dict[str, tuple[str, str | None, Any]]]] | None:
        """For a listing's output shape, per entry tag: the member it fills, the entry's
        shape and its plan; None for any other shape."""
        found: dict[str, tuple[str, Any, dict[str, tuple[str, str | None, Any]]]] | None = self._per_shape(
            "entries", shape, self._make_entry_lists)
        return found

    def _make_entry_lists(self, shape: Any) -> dict[str, tuple[str, Any, dict[str, tuple[str, str | None, Any]]]] | None:
        lists: dict[str, tuple[str, Any, dict[str, tuple[str, str | None, Any]]]] = {}
        for name, member in shape.members.items():
            if member.type_name != "list" or not member.serialization.get("flattened") or member.member.name not in self._FAST:
                continue
            plan = self._plan(member.member)
            if plan is not None:
                lists[self._member_key_name(member, name)] = (name, member.member, plan)
        return lists or None

    def _parse_payload(self, response: dict[str, Any], shape: Any, member_shapes: Any, final_parsed: dict[str, Any]) -> None:
        lists = self._entry_lists(shape)
        body = response.get("body")
        if (lists is not None and isinstance(body, bytes) and len(body.translate(None, _CONTROL)) == len(body)
                and b"<![CDATA[" not in body and b"]]>" not in body):
            try:
                split = self._split_page(body.decode(), lists)
            except (ValueError, ResponseParserError):  # not UTF-8, a stray &, a malformed entry
                split = None  # botocore's path decides (and words the error)
            if split is not None:
                rest, entries = split
                super()._parse_payload({**response, "body": rest}, shape, member_shapes, final_parsed)
                final_parsed.update(entries)
                return
        super()._parse_payload(response, shape, member_shapes, final_parsed)

    def _split_page(self, page: str, lists: dict[str, tuple[str, Any, dict[str, tuple[str, str | None, Any]]]]
                    ) -> tuple[bytes, dict[str, list[Any]]] | None:
        """(the page without its entries, {member: entries}), or None to parse it whole."""
        entries: dict[str, list[Any]] = {}
        simple = self._simple_entry
        for tag, (name, shape, plan) in lists.items():
            chunks = page.split(f"<{tag}>")  # plain splits: a regex with a backreference was slower
            if len(chunks) == 1:
                continue
            close = f"</{tag}>"
            rest = [chunks[0]]
            got = entries[name] = []
            for chunk in chunks[1:]:
                block, sep, after = chunk.partition(close)
                if not sep:
                    return None
                entry = simple(block, plan)
                if entry is None:  # a nested field: this entry alone as XML, through the tree walk above
                    entry = self._handle_structure(shape, self._parse_xml_string_to_dom(f"<e>{block}</e>".encode()))
                got.append(entry)
                rest.append(after)
            page = "".join(rest)
        if not entries or any(f"<{tag}" in page for tag in lists):
            return None  # an entry tag with attributes or a namespace prefix: botocore's path
        return page.encode(), entries

    def _simple_entry(self, block: str, plan: dict[str, tuple[str, str | None, Any]]) -> dict[str, Any] | None:
        """An entry whose fields are all text-only elements, converted as _handle_structure
        converts them; None when it has anything else."""
        pairs = _SIMPLE.findall(block)
        if block.count("<") != 2 * len(pairs):
            return None
        parsed: dict[str, Any] = {}
        for tag, text in pairs:
            entry = plan.get(tag)
            if entry is None:
                continue  # not in the model: botocore ignores it too
            name, kind, member = entry
            if "&" in text:
                text = _unescape(text)
            if kind is None:
                if member.type_name == "list" and member.member.type_name == "string":
                    parsed.setdefault(name, []).append(text)  # ChecksumAlgorithm, one element per value
                    continue
                return None
            if name in parsed:
                return None
            parsed[name] = self._scalar(kind, text)
        return parsed

    def _scalar(self, kind: str, text: str) -> Any:
        """A scalar field's text converted as botocore converts it (kind: a letter of _KINDS)."""
        if kind == "s":
            return text
        if kind == "i":
            return int(text)
        if kind == "t":
            return self._timestamp_parser(text)
        return text == "true"


class _ParserFactory(ResponseParserFactory):
    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "rest-xml":
            return _ListingXmlParser(**self._defaults)
        return super().create_parser(protocol_name)


def parser_factory() -> ResponseParserFactory:
    """The factory the botocore session is given: the listing parser, the quick timestamps."""
    parsers = _ParserFactory()
    parsers.set_parser_defaults(timestamp_parser=_timestamp)
    return parsers


_LISTINGS = frozenset({"ListObjectsV2", "ListObjectVersions", "ListObjects"})
_ROOT = re.compile(rb"\s*(?:<\?xml[^>]*\?>\s*)?<([A-Za-z][\w.-]*)[\s>]")


def _listing_200_error(operation_model: Any, response_dict: dict[str, Any], **kwargs: Any) -> None:
    """botocore's check for S3's "200 with an error in the body" (`_handle_200_error`: an
    `<Error>` root, or a body cut short, becomes a 500 to be retried), without parsing a
    listing page into a whole tree only to look at its root: every page was parsed twice
    (10,000 keys: 0.14 of the listing's 0.38 s of CPU here). A listing page whose root is
    not Error and which ends with that root's closing tag is whole and no error; anything
    else goes to botocore's own check."""
    if operation_model.name in _LISTINGS and response_dict.get("status_code") == 200:
        body = response_dict.get("body") or b""
        m = _ROOT.match(body)
        if m is not None and m.group(1) != b"Error" and body.rstrip().endswith(b"</" + m.group(1) + b">"):
            return
    _BOTOCORE_200_CHECK(operation_model, response_dict, **kwargs)


# A private botocore function: a botocore without it keeps its own check (quicker_listings).
_BOTOCORE_200_CHECK: Any = getattr(handlers, "_handle_200_error", None)


def quicker_listings(events: Any) -> None:
    """Swap botocore's 200-error check for _listing_200_error in an event emitter (a
    session's: the clients made from it copy its handlers)."""
    if _BOTOCORE_200_CHECK is None:
        return
    events.unregister("before-parse.s3.*", _BOTOCORE_200_CHECK)
    events.register_first("before-parse.s3.*", _listing_200_error)
