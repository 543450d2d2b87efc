"""Receipts: what the target's receiver placed, written there as it places each file.

Why: the sender journals a batch only after the receiver has answered for all of it. A
move killed in between (the common case: every lane is part-way through a batch most of
the time) left files in place that no record named, and the next move sent them again:
up to a batch per lane, a quarter of the small-object corpus (issue 18). The receiver
(targets/receiver_agent.py) now appends one line per file to a receipt under
`<root>/.relocate/receipts/<to with / as __>/` right after renaming it into place:

    <sha256 hex of what it wrote> <the record the sender described the file with>\n

The record is this module's `describe` (compact ASCII JSON, no newline), sent ahead of
each file on the wire; the hash is the receiver's own, and a line is written only when
it equals the sender's. One `write(2)` per line on an O_APPEND file, fsynced after each
batch is answered: a kill leaves whole lines and at most a torn last one, which `parse`
ignores (no newline, or JSON that does not close).

The next move's gather (execute/gather.py) reads the receipts with the sizes in one
remote command and trusts a receipt's record like the journal's, only when the listing
still has that ETag and size and the file on the target has that size. At the end of
the step they are folded into the journal and the sidecar and removed, so they never
grow past one killed run's worth.
"""

from __future__ import annotations

import json
import re
from typing import Any

from relocate.snapshot.journal import DoneObject
from relocate.snapshot.jsonenc import compact
from relocate.snapshot.manifest import ObjectEntry

SUFFIX = ".r"  # receipt files; the receiver names them <microseconds>-<pid>.r


# Encoded in C by an encoder made once (snapshot/jsonenc.py): sent ahead of every file.
_ENCODE = compact(ascii_only=True, separators=(",", ":"))


def describe(bucket: str, key: str, etag: str, size: int, path: str, content_type: str | None,
             metadata: dict[str, str]) -> bytes:
    """The record the sender sends ahead of a file (`path` relative to target.root): the
    fields of a manifest entry (snapshot/manifest.ObjectEntry) but its sha256, and the
    journal's bucket name; `key` is the journal's key (an older version's carries its id).
    Compact JSON, ASCII only, so never a newline or a control character."""
    return _ENCODE({"bucket": bucket, "key": key, "etag": etag, "size": size, "path": path,
                    "content_type": content_type, "metadata": metadata}).encode("ascii")


# A whole line: the receiver's sha256, a space, the sender's record (a JSON object).
_LINE = re.compile(rb"^([0-9a-f]{64}) (\{[^\n]*\})(?=\n)", re.M)


def parse(raw: bytes, bucket: str) -> dict[str, DoneObject]:
    """{journal key: record} of the receipt lines for `bucket` (its journal name) in
    `raw` (receipt files in the order written: a later line for a key wins). A line
    without its newline (torn by a kill) is not matched; one whose JSON is damaged is skipped."""
    found = _LINE.findall(raw)
    if not found:
        return {}
    blobs = [blob.decode("ascii", "replace") for _, blob in found]
    try:  # one parse for all of them (10,000 json.loads calls cost a resume 0.1 s)
        docs: list[Any] = json.loads("[" + ",".join(blobs) + "]")
    except ValueError:
        docs = []
    if len(docs) != len(blobs):
        docs = [_loads(b) for b in blobs]
    out: dict[str, DoneObject] = {}
    for (sha, _), d in zip(found, docs):
        try:
            if d.get("bucket") != bucket:
                continue
            # The record is a manifest entry without its hash (the receiver's own is the line's
            # first field): one reader for the manifest, sidecar, shard chunks and receipts.
            done = ObjectEntry.from_dict({**d, "sha256": sha.decode("ascii")}).done(bucket)
        except (AttributeError, KeyError, TypeError, ValueError):
            continue  # a damaged line only costs a re-send
        out[done.key] = done
    return out


def _loads(blob: str) -> Any:
    try:
        return json.loads(blob)
    except ValueError:
        return None
