"""Every JSON document relocate prints, and every NDJSON event it streams, carries a
top-level `format_version` (docs/json.md): a script can refuse a shape it does not know
instead of misreading it. Raise it when a key is removed or changes meaning; adding a
key keeps it.

A command asked for JSON (`--json`, RELOCATE_JSON, a json `--format`) prints exactly one
document on stdout, even when it fails: a failure that printed none prints the error
document (`failed`, called by the CLI's edge), so `jq < move.json` in a CI step always
has something to read."""

from __future__ import annotations

import json
import sys
from typing import Any

JSON_FORMAT = 1

# This process's command: whether it was asked for JSON, and whether its document is out.
_doc = {"wanted": False, "printed": False}


def document(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with format_version first (a plan keeps its own: the plan file's format)."""
    return {"format_version": data.get("format_version", JSON_FORMAT), **data}


def print_json(data: dict[str, Any]) -> None:
    _doc["printed"] = True
    sys.stdout.write(json.dumps(document(data), indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def reset() -> None:
    """A new command starts (the CLI's edge; tests run many in one process)."""
    _doc.update(wanted=False, printed=False)


def wanted(flag: bool) -> None:
    """Whether the command prints JSON: `--json` as parsed (cli/__init__.py), then what
    `--json` and `--format` together decide (options.json_or_format)."""
    _doc["wanted"] = flag


# Exit code -> the error document's `kind` (README, "Exit codes").
KINDS = {1: "internal", 2: "usage", 3: "blocked", 4: "differences", 5: "transient", 6: "refused"}


def failed(exit_code: int, message: str, kind: str | None = None) -> None:
    """A failure (exit `exit_code`, `message` the one line stderr says, without its
    `relocate: error: `): under JSON, the one document on stdout, unless the command
    printed its own (exit 3 and 4 carry their full documents)."""
    if not _doc["wanted"] or _doc["printed"] or not exit_code:
        return
    print_json({"error": {"exit_code": int(exit_code), "kind": kind or KINDS.get(int(exit_code), "error"),
                          "message": message}})
