"""Every JSON document relocate prints, and every NDJSON event it streams, carries a
top-level `format_version` (docs/json.md): a script can refuse a shape it does not know
instead of misreading it. Raise it when a key is removed or changes meaning; adding a
key keeps it."""

from __future__ import annotations

import json
import sys
from typing import Any

JSON_FORMAT = 1


def document(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with format_version first (a plan keeps its own: the plan file's format)."""
    return {"format_version": data.get("format_version", JSON_FORMAT), **data}


def print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document(data), indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()
