"""Compact JSON for one record at a time, encoded in C with an encoder made once.

`json.dumps` and `JSONEncoder.encode` build a new C encoder on every call and reach it
through two Python-level methods: ~5 us for a small record, where the encoding itself
takes ~1. The records relocate writes by the thousand go through here: each object's
line of the manifest and the target's sidecar, its receipt record (sent ahead of every
file) and its metadata in the journal (issue 18: ~10 us of a lane's ~80 per small
object were these two calls).

No circular-reference check (markers None): these records are trees of dicts, lists,
strings and numbers.
"""

from __future__ import annotations

import json
import json.encoder
from typing import Any, Callable

_C_MAKE = getattr(json.encoder, "c_make_encoder", None)


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def compact(*, ascii: bool, separators: tuple[str, str]) -> Callable[[Any], str]:
    """A function giving `json.dumps(value, ensure_ascii=ascii, separators=separators)`."""
    item_sep, key_sep = separators
    if _C_MAKE is None:  # an interpreter without the C accelerator: the standard encoder
        return json.JSONEncoder(ensure_ascii=ascii, separators=separators).encode
    strings = json.encoder.encode_basestring_ascii if ascii else json.encoder.encode_basestring
    enc = _C_MAKE(None, _not_json, strings, None, key_sep, item_sep, False, False, True)

    def encode(value: Any) -> str:
        return "".join(enc(value, 0))
    return encode
