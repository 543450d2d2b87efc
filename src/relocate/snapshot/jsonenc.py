"""Compact JSON for one record at a time, encoded in C with an encoder made once.

`json.dumps` and `JSONEncoder.encode` build a new C encoder on every call and reach it
through two Python-level methods. The records relocate writes by the thousand go
through here: each object's line of the manifest and the target's sidecar, its receipt
record (sent ahead of every file: 3.1 -> 2.0 us) and its metadata in the journal
(1.6 -> 0.37 us), issue 18.

No circular-reference check (markers None): these records are trees of dicts, lists,
strings and numbers.
"""

from __future__ import annotations

import codecs
import json
import json.encoder
from typing import Any, Callable

_C_MAKE = getattr(json.encoder, "c_make_encoder", None)


def _escape(exc: UnicodeError) -> tuple[str, int]:
    """Encoding JSON text as UTF-8, a character UTF-8 cannot hold becomes its JSON escape.
    Only lone surrogates get here: a host file's name or link target that is not UTF-8,
    decoded with surrogateescape (b"\\xfe" -> "\\udcfe"). The escape "\\udcfe" reads back
    (json.load) as that very character, so the name is kept exactly and the file stays UTF-8.
    Such a character can only stand inside a JSON string (all else the encoder writes is
    ASCII), where an escape is valid."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return "".join(f"\\u{ord(c):04x}" for c in exc.object[exc.start:exc.end]), exc.end


# The `errors` to encode JSON text with (snapshot/store.write_json_atomic): nothing is
# checked or copied while the text is valid UTF-8, which is all but such names.
JSON_ERRORS = "relocate-json-escape"
codecs.register_error(JSON_ERRORS, _escape)


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def compact(*, ascii_only: bool, separators: tuple[str, str],
            default: Callable[[Any], Any] = _not_json) -> Callable[[Any], str]:
    """A function giving `json.dumps(value, ensure_ascii=ascii_only, separators=separators,
    default=default)`."""
    item_sep, key_sep = separators
    if _C_MAKE is None:  # an interpreter without the C accelerator: the standard encoder
        return json.JSONEncoder(ensure_ascii=ascii_only, separators=separators, default=default).encode
    strings = json.encoder.encode_basestring_ascii if ascii_only else json.encoder.encode_basestring
    enc = _C_MAKE(None, default, strings, None, key_sep, item_sep, False, False, True)

    def encode(value: Any) -> str:
        return "".join(enc(value, 0))
    return encode
