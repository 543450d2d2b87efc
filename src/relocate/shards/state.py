"""What a shard records on the target, and what `status`, `--finish` and `verify` read.

Under <root>/.relocate/shards/<to>/<K>/ (targets/layout.py), for shard K of the bucket
entry written to <to>:

    c000000.json, c000001.json, ...   one per chunk of the range, in key order:
                                      {"objects": [{key, path, size, sha256, etag, ...}]}
    progress.json                     {plan, step, shard, objects, bytes, chunks,
                                       started, updated, complete}

`plan` is the plan's shards id (the ranges' digest): records of another plan's ranges
are not trusted (its chunks hold other keys) and are started afresh. A shard is done
when progress.json of every one of its entries says complete under this plan's id.
"""

from __future__ import annotations

import json
import posixpath
import time
from typing import Any, Iterator

from relocate.targets import layout, nolinks, shell


def lock_path(root: str, index: int) -> str:
    return posixpath.join(layout.shards_dir(root), "locks", str(index))


def chunk_name(number: int) -> str:
    return f"c{number:06d}.json"


class Records:
    def __init__(self, conn: Any, root: str, dest: str, index: int, plan_id: str, step_id: str) -> None:
        self.conn, self.root, self.index, self.plan_id, self.step_id = conn, root, index, plan_id, step_id
        self.dir = layout.shard_dir(root, dest, index)
        self.objects = self.bytes = self.chunks = 0
        self.started = time.time()

    def _path(self, name: str) -> str:
        return posixpath.join(self.dir, name)

    def _read(self, name: str) -> dict[str, Any]:
        return read_json(self.conn, self._path(name))

    def _write(self, name: str, data: bytes) -> None:
        write_json(self.conn, self.root, self._path(name), data)

    def begin(self) -> None:
        old = self._read("progress.json")
        if old.get("plan") != self.plan_id:
            # another plan's chunks hold other keys: start this shard's records afresh
            self.conn.run(nolinks.guarded(self.root, [self.dir], shell.line(["rm", "-rf", "--", self.dir])), timeout=600)
        elif isinstance(old.get("started"), (int, float)):
            self.started = float(old["started"])
        self.conn.run(nolinks.guarded(self.root, [self.dir], shell.line(["mkdir", "-p", "--", self.dir])), timeout=600)
        self._progress(False)

    def read_chunk(self, number: int) -> dict[str, dict[str, Any]]:
        doc = self._read(chunk_name(number))
        out: dict[str, dict[str, Any]] = {}
        for o in doc.get("objects") or ():
            if isinstance(o, dict) and {"key", "path", "size", "sha256", "etag"} <= set(o):
                out[str(o["key"])] = o
        return out

    def write_chunk(self, number: int, entries: list[dict[str, Any]]) -> None:
        data = json.dumps({"objects": entries}, ensure_ascii=False, separators=(",", ":")).encode()
        self._write(chunk_name(number), data)

    def chunk_done(self, number: int, objects: int, nbytes: int) -> None:
        self.objects += objects
        self.bytes += nbytes
        self.chunks = number + 1
        self._progress(False)

    def finish(self, complete: bool) -> None:
        # chunks past the end: an earlier listing was longer (keys since deleted at the source)
        script = r"""
cd "$1" 2>/dev/null || exit 0
for f in c*.json; do
  [ -f "$f" ] || continue
  n=${f#c}; n=${n%.json}
  case $n in *[!0-9]*) continue;; esac
  [ "$(expr "$n" + 0)" -ge "$2" ] && rm -f -- "$f"
done
exit 0
"""
        self.conn.run(shell.line(["sh", "-c", script, "sh", self.dir, str(self.chunks)]), timeout=600)
        self._progress(complete)

    def _progress(self, complete: bool) -> None:
        doc = {"plan": self.plan_id, "step": self.step_id, "shard": self.index, "objects": self.objects, "bytes": self.bytes,
               "chunks": self.chunks, "started": self.started, "updated": time.time(), "complete": complete}
        self._write("progress.json", json.dumps(doc).encode())


# Records are read and written by shell commands (no SFTP), so the same code serves a
# worker over SSH and one running on the target itself (`--on-target`, shards/local.py).
_WRITE = r"""
umask 022
cat > "$1.tmp" && mv -f -- "$1.tmp" "$1"
"""


def read_json(conn: Any, path: str) -> dict[str, Any]:
    """A record's JSON object, {} when absent or damaged (a damaged record costs a re-send)."""
    out = conn.run(shell.line(["sh", "-c", 'cat -- "$1" 2>/dev/null; exit 0', "sh", path]), timeout=600).stdout
    try:
        doc = json.loads(out) if out.strip() else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def write_json(conn: Any, root: str, path: str, data: bytes) -> None:
    """Write `path` whole (a temporary beside it, renamed over it), never through a symlink."""
    cmd = nolinks.guarded(root, [posixpath.dirname(path)], shell.line(["sh", "-c", _WRITE, "sh", path]))
    conn.run(cmd, data, timeout=600)


_READ_ALL = r"""
cd "$1" 2>/dev/null || exit 0
for f in */*/progress.json; do
  [ -f "$f" ] || continue
  cat -- "$f"; printf '\0'
done
exit 0
"""


def read_progress(conn: Any, root: str, plan_id: str) -> dict[tuple[str, int], dict[str, Any]]:
    """{(step id, shard): progress} of this plan, from one remote command."""
    out = conn.run(shell.line(["sh", "-c", _READ_ALL, "sh", layout.shards_dir(root)]), timeout=600).stdout
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in out.split(b"\0"):
        try:
            doc = json.loads(rec) if rec.strip() else None
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("plan") == plan_id:
            found[(str(doc.get("step")), int(doc.get("shard", -1)))] = doc
    return found


def chunks(conn: Any, root: str, dest: str, index: int) -> Iterator[list[dict[str, Any]]]:
    """Each recorded chunk's objects, one chunk at a time (merged verify)."""
    where = layout.shard_dir(root, dest, index)
    names = conn.run(shell.line(["sh", "-c", 'cd "$1" 2>/dev/null && ls -1 | grep "^c[0-9]*\\.json$"; exit 0', "sh", where]),
                     timeout=600).text().split()
    for name in sorted(names):
        doc = read_json(conn, posixpath.join(where, name))
        yield [o for o in doc.get("objects") or () if isinstance(o, dict)]
