"""How an S3 key becomes a file path under the bucket's directory on the target.

The rule (documented in README, "Object keys on disk"):

1. Percent-encode `%`, control characters (U+0000-U+001F, U+007F) and `\\`; every
   other character, including non-ASCII letters, is kept.
2. Slashes separate directories, except where they would make an empty segment:
   a leading `/`, a trailing `/` and the second of `//` are written `%2F`.
3. A segment that is exactly `.` or `..` is written `%2E` / `%2E%2E`.

Steps 1-3 are reversible by percent-decoding the whole path, and no result can
escape the bucket's directory. Two cases cannot keep a decodable name and get a
`%%` marker (which step 1 can never produce) plus a hash of the key, the original
key being recorded in the bucket's sidecar manifest:

4. A segment longer than 200 bytes (file systems stop at 255):
   `<first bytes>%%<16 hex of sha256(key)>`.
5. A key that is also a "directory" of other keys (`a` beside `a/b`): the file
   becomes `a%%<16 hex>` beside the directory `a`.

With `strip_prefix: true` the rule applies to the key without the entry's prefix
(`legal/terms.pdf` under `prefix: legal/` becomes `terms.pdf`); the key that is the
prefix itself (a "folder" object `legal/`) has nothing left and is written
`%%<16 hex>`. Hashes are always of the whole key.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable
from urllib.parse import quote, unquote

MAX_SEGMENT = 200
_UNSAFE = re.compile(r"[%\\\x00-\x1f\x7f]")


def _escape(ch: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in ch.group(0).encode("utf-8"))


def _tag(key: str) -> str:
    return "%%" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def encode_key(key: str, strip: str = "") -> str:
    """Steps 1-4: a safe relative path for one key, ignoring clashes with other keys;
    `strip` (a prefix of the key) is cut off first."""
    assert key.startswith(strip)
    rest = key[len(strip):]
    if not rest:
        return _tag(key)
    s = _UNSAFE.sub(_escape, rest)
    if s.startswith("/"):
        s = "%2F" + s[1:]
    while "//" in s:
        s = s.replace("//", "/%2F", 1)
    if s.endswith("/"):
        s = s[:-1] + "%2F"
    segments = []
    for seg in s.split("/"):
        if seg == ".":
            seg = "%2E"
        elif seg == "..":
            seg = "%2E%2E"
        if len(seg.encode("utf-8", "surrogatepass")) > MAX_SEGMENT:
            seg = seg.encode("utf-8", "surrogatepass")[:MAX_SEGMENT].decode("utf-8", "ignore") + _tag(key)
        segments.append(seg)
    return "/".join(segments)


def version_path(key: str, version_id: str, strip: str = "") -> str:
    """Where an older version lands, relative to `<to>/%%versions/`: the key's own path
    (steps 1-4), as a directory holding one `%%v=<version id>` file per version. No
    current key can map to `%%versions` (step 1 escapes every `%` of a key; a `%%` marker
    is followed by hex), and no segment of a key's path starts with `%%v=`, so a version
    file never meets a key's directory. The version id is percent-encoded whole."""
    return f"{encode_key(key, strip)}/%%v={quote(version_id, safe='')}"


def decode_path(path: str) -> str | None:
    """The key a path came from, or None when it carries a `%%` marker (see sidecar)."""
    return None if "%%" in path else unquote(path)


def map_keys(keys: list[str], strip: str = "") -> dict[str, str]:
    """Map every key, resolving file/directory clashes (step 5). Result is injective."""
    mapped = {k: encode_key(k, strip) for k in keys}
    dirs: set[str] = set()
    for path in mapped.values():
        parts = path.split("/")
        for i in range(1, len(parts)):
            dirs.add("/".join(parts[:i]))
    for key, path in mapped.items():
        if path in dirs:
            mapped[key] = path + _tag(key)
    return mapped


def is_dir_of(key: str, other: str, strip: str = "") -> bool:
    """Step 5 for two keys: `other`'s path has `key`'s path as one of its directories."""
    return encode_key(other, strip).startswith(encode_key(key, strip) + "/")


def chunk_paths(keys: list[str], strip: str, after: Callable[[str], str | None]) -> dict[str, str]:
    """map_keys for one chunk of a key-sorted stream (a shard's worker never holds all the
    keys): the same paths map_keys gives over the whole listing. Only keys starting with
    `key + "/"` can make `key` a directory, and then the first of them past `key + "/"`
    does (a tagged key is no one's directory), so each key needs just that
    one neighbour: found in the chunk by bisection, else asked of `after(s)` (the first
    key of the listing greater than s; one S3 request) for the few keys at a chunk's end."""
    import bisect

    out: dict[str, str] = {}
    for key in keys:
        path = encode_key(key, strip)
        if "%%" not in path:
            probe = key + "/"
            j = bisect.bisect_right(keys, probe)
            nxt = keys[j] if j < len(keys) else after(probe)
            if nxt is not None and nxt.startswith(probe) and is_dir_of(key, nxt, strip):
                path += _tag(key)
        out[key] = path
    return out
