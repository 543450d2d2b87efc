"""botocore's response parsing, with quicker paths for what S3 listings carry. Imported
with boto3 itself, when the source is first read (sources/aws.py's Aws.session)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from botocore import handlers
from botocore.parsers import ResponseParserFactory, RestXMLParser
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


class _ListingXmlParser(RestXMLParser):
    """botocore's REST-XML parser with a quicker path for the entries of S3 listings.

    botocore parses each `<Contents>` entry generically (a tag -> node dict, then every
    member of the model looked up): ~70 us an entry, two thirds of listing 10,000 objects
    here. For the shapes in _FAST, scalar members (string, integer, timestamp, boolean)
    are converted straight from the child nodes; anything else (Owner, ChecksumAlgorithm,
    RestoreStatus) goes through botocore's own handlers, and a shape with XML attributes
    or a scalar tag seen twice takes the generic path whole. Same result, key for key
    (tests/test_s3data.py compares them).
    """

    _FAST = frozenset({"Object", "CommonPrefix", "ObjectVersion", "DeleteMarkerEntry"})
    _KINDS = {"string": "s", "integer": "i", "long": "i", "timestamp": "t", "boolean": "b"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[int, tuple[Any, dict[str, tuple[str, str | None, Any]] | None]] = {}
        self._tags: dict[str, str] = {}

    def _node_tag(self, node: Any) -> str:
        """botocore's (the tag without its namespace: a regex substitution, six per listed
        object), remembered per tag: a listing has a dozen distinct tags."""
        tag = self._tags.get(node.tag)
        if tag is None:
            tag = self._tags[node.tag] = super()._node_tag(node)
        return tag

    def _plan(self, shape: Any) -> dict[str, tuple[str, str | None, Any]] | None:
        got = self._plans.get(id(shape))
        if got is not None and got[0] is shape:
            return got[1]
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
        self._plans[id(shape)] = (shape, plan)
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
            if text is None:
                text = ""
            if kind == "s":
                parsed[name] = text
            elif kind == "i":
                parsed[name] = int(text)
            elif kind == "t":
                parsed[name] = self._timestamp_parser(text)
            else:
                parsed[name] = text == "true"
        for tag, nodes in others.items():
            name, _, member = plan[tag]
            parsed[name] = self._parse_shape(member, nodes)
        return parsed


class _ParserFactory(ResponseParserFactory):
    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "rest-xml":
            return _ListingXmlParser(**self._defaults)
        return super().create_parser(protocol_name)


def parser_factory() -> ResponseParserFactory:
    """The factory a boto3 session is given: the listing parser, the quick timestamps."""
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
