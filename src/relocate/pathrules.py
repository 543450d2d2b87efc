"""Checks of relocate.yaml made at load time, kept apart from the schema (issue 13):
host names, `to:` paths, and where the `to:` of different entries may land.

Everything here is pure (no I/O) and raises nothing itself: each function returns an
error message (or a list of them) that config.py reports as `relocate.yaml:LINE: FIELD:
message`, exit 2. Retrying can never fix what is found here, so it must never reach
the target as a write that fails (exit 5) or as an internal error (exit 1).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import unicodedata
from typing import Any, Iterable

from relocate.targets.layout import STATE_DIR, flat_name

MAX_SEGMENT = 255  # bytes: NAME_MAX of every Linux file system relocate writes to
MAX_DEST = 1024  # bytes: leaves room under PATH_MAX (4096) for the root and the object keys
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def host_error(value: str) -> str | None:
    """A host name or address as ssh and getaddrinfo take it: an IPv4/IPv6 address, or
    ASCII labels of 1-63 letters, digits, '-' or '_' (an ~/.ssh/config alias is one such
    name), dot-separated, at most 253 characters. `a..b`, a 64-character label, U+202E
    or U+00AD would otherwise fail deep in the resolver (UnicodeError)."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    bad = next((c for c in value if not c.isascii() or not c.isprintable()), None)
    if bad is not None:
        return (f"must be a host name or address; it contains {_char(bad)} (write an internationalised "
                "name in its xn-- form)")
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253:
        return "must be a host name of 1 to 253 characters or an IP address"
    for label in name.split("."):
        if not label:
            return f"must be a host name or address (got {value!r}: an empty label between dots)"
        if len(label) > 63:
            return f"must be a host name or address (got a label of {len(label)} characters; at most 63)"
        if not _LABEL.fullmatch(label):
            return (f"must be a host name or address (got {value[:80]!r}: labels are letters, digits, "
                    "'-' and '_', not starting or ending with '-')")
    return None


def _char(c: str) -> str:
    name = unicodedata.name(c, "")
    return f"U+{ord(c):04X}" + (f" {name}" if name else "")


def dest_error(value: str) -> str | None:
    """One `to:` on its own: no NUL or control character, no segment over 255 bytes,
    not over 1024 bytes, and not relocate's own state directory or anything in it."""
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")), None)
    if bad is not None:
        return f"must not contain {_char(bad)} (control and invisible format characters are refused)"
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_DEST:
        return f"is {len(raw)} bytes long; at most {MAX_DEST}"
    for seg in value.split("/"):
        if len(seg.encode("utf-8", "surrogatepass")) > MAX_SEGMENT:
            return f"has a path segment of {len(seg.encode('utf-8', 'surrogatepass'))} bytes; at most {MAX_SEGMENT} (the file system's limit)"
    if _parts(value)[:1] == (STATE_DIR,):
        return f"must not be inside {STATE_DIR}/, relocate's own state directory on the target (lock, audit log, sidecars)"
    return None


def path_error(value: str) -> str | None:
    """target.root: no NUL or control character, segments within NAME_MAX."""
    err = dest_error(value)
    return None if err is None or "state directory" in err else err


def _parts(rel: str) -> tuple[str, ...]:
    return tuple(p for p in posixpath.normpath(rel).split("/") if p not in ("", "."))


def _inside(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """a is b or below it."""
    return a[:len(b)] == b


class Dest:
    """One place an entry writes under the root: a directory tree it owns, or a file."""

    def __init__(self, field: str, rel: str, kind: str, owner: str) -> None:
        self.field, self.parts, self.kind, self.owner = field, _parts(rel), kind, owner
        self.rel = "/".join(self.parts)


def destinations(data: dict[str, Any]) -> list[Dest]:
    """Every place under the root that relocate.yaml makes relocate write."""
    src = data.get("source") or {}
    out: list[Dest] = []
    for i, b in enumerate(src.get("s3") or []):
        if b and b.get("to"):
            out.append(Dest(f"source.s3[{i}].to", b["to"], "dir", f"s3:{b.get('bucket')}"))
    for key in ("parameters", "secrets"):
        for i, p in enumerate(src.get(key) or []):
            if p and p.get("to"):
                out.append(Dest(f"source.{key}[{i}].to", p["to"], "env", "env"))
    for i, h in enumerate(src.get("hosts") or []):
        if h and h.get("to"):
            out.append(Dest(f"source.hosts[{i}].to", h["to"], "dir", f"hosts:{i}"))
    if src.get("dns"):
        out.append(Dest("source.dns", "dns", "dir", "dns"))
    dep = data.get("deploy") or {}
    if dep:
        out.append(Dest("deploy", "releases", "dir", "deploy"))
        out.append(Dest("deploy", "current", "file", "deploy"))
        if dep.get("log_file"):
            out.append(Dest("deploy.log_file", dep["log_file"], "file", "deploy-log"))
    return out


def overlap_errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for each `to:` that would write where another entry writes.

    The rule (README "Where things land on the target"): a directory that an entry fills
    (a bucket's `to:`, a host's `to:`, `dns/`, deploy's `releases/`) belongs to that
    entry alone: no other entry's `to:` may be it, inside it, or contain it; a file (an
    env file, deploy's `current` and log file) may not be a directory of another entry
    nor sit on the way to one. Several parameters and secrets may share one env file
    (they are merged), and one bucket may be listed with different prefixes into
    different directories (which then must not nest). Two `to:` that differ only by `/`
    versus `__` would share one sidecar file, and are refused too.
    """
    dests = destinations(data)
    errors: list[tuple[str, str]] = []
    for i, a in enumerate(dests):
        for b in dests[:i]:
            if a.owner == b.owner and a.kind == b.kind == "env":
                continue  # env entries sharing one file are merged
            if a.kind == "env" and b.kind == "env":
                if a.parts != b.parts and (_inside(a.parts, b.parts) or _inside(b.parts, a.parts)):
                    errors.append((a.field, f"{a.rel!r} and {b.field} {b.rel!r}: one env file would be the other's directory"))
                continue
            if a.parts == b.parts and a.kind == b.kind == "dir" and a.owner.startswith("s3:") and b.owner.startswith("s3:"):
                continue  # two buckets in one directory: config.py's own message
            if a.field == b.field:
                continue
            if _inside(a.parts, b.parts) or _inside(b.parts, a.parts):
                errors.append((a.field, f"{a.rel!r} overlaps {b.field} {b.rel!r}: each `to:` needs a place of its own "
                                        "(not the same path, not inside another's directory)"))
    seen: dict[str, Dest] = {}
    for d in dests:
        if d.kind == "dir" and d.owner.startswith("s3:"):
            sidecar = flat_name(d.rel)
            other = seen.setdefault(sidecar, d)
            if other is not d and other.rel != d.rel:
                errors.append((d.field, f"{d.rel!r} and {other.field} {other.rel!r} would share one sidecar "
                                        f"({STATE_DIR}/buckets/{sidecar}.json); rename one"))
    return errors


def allow_errors(values: Iterable[str]) -> list[tuple[int, str]]:
    """(index, message) for target.allow_symlinks entries that cannot be honoured."""
    out: list[tuple[int, str]] = []
    for i, v in enumerate(values):
        parts = _parts(v)
        if _parts(v)[:1] in ((STATE_DIR,), ("releases",), ("current",)):
            out.append((i, f"{STATE_DIR}, releases and current can never be symlinks relocate writes through"))
        elif any(p == ".." for p in parts) or not parts:
            out.append((i, "must name a path inside target.root"))
    return out
