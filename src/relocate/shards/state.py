"""What a shard records on the target, and what `status`, `--finish` and `verify` read.

Under <root>/.relocate/shards/<to>/<K>/ (targets/layout.py), for shard K of the bucket
entry written to <to>:

    c000000.json, c000001.json, ...   one per chunk of the range, in key order:
                                      {"objects": [{key, path, size, sha256, etag, ...}]}
    progress.json                     {plan, step, shard, objects, bytes, chunks,
                                       started, updated, complete, and once a worker
                                       ended its range: ended, listed, failed}

`plan` is the plan's shards id (the ranges' digest): records of another plan's ranges
are not trusted (its chunks hold other keys) and are started afresh. A shard is done
when progress.json of every one of its entries says complete under this plan's id, and
its chunks c000000.json .. c<chunks-1>.json are all there, readable, and hold the
objects progress.json counts (record_problems): a chunk lost or damaged since is a shard
no longer complete (status says "records missing", --finish refuses, verify fails), and
running its worker again rewrites it.

A worker holds its shard's lock (lock_path, execute/lock.py) while it runs and touches
its owner file every chunk and batch: read_workers tells a live worker from a lock left
behind by a dead one (its pid, when the holder ran here or on the target; otherwise how
long ago the lock was touched, against the stale time a new worker takes it over after).
"""

from __future__ import annotations

import json
import posixpath
import re
import socket
import time
from typing import Any

from relocate.execute.lock import pid_alive
from relocate.shards.section import as_count
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

    def finish(self, complete: bool, *, failed: int = 0, listed: int | None = None) -> None:
        """The range's end: `failed` objects could not be written, `listed` the objects its
        listing held (status tells a failed shard from a stopped one; verify checks the
        records hold them all)."""
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
        self._progress(complete, {"ended": time.time(), "failed": failed, **({} if listed is None else {"listed": listed})})

    def _progress(self, complete: bool, end: dict[str, Any] | None = None) -> None:
        doc = {"plan": self.plan_id, "step": self.step_id, "shard": self.index, "objects": self.objects, "bytes": self.bytes,
               "chunks": self.chunks, "started": self.started, "updated": time.time(), "complete": complete, **(end or {})}
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


# One file of every shard's directory under shards/ ($2: progress.json, fingerprint.json),
# NUL-separated, in one remote command.
_READ_EACH = r"""
cd "$1" 2>/dev/null || exit 0
for f in */*/"$2"; do
  [ -f "$f" ] || continue
  cat -- "$f"; printf '\0'
done
exit 0
"""


def read_each(conn: Any, root: str, plan_id: str, name: str) -> dict[tuple[str, int], dict[str, Any]]:
    """{(step id, shard): document} of this plan from the file `name` of every shard's
    directory; one that does not parse, or is another plan's, is left out."""
    out = conn.run(shell.line(["sh", "-c", _READ_EACH, "sh", layout.shards_dir(root), name]), timeout=600).stdout
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in out.split(b"\0"):
        try:
            doc = json.loads(rec) if rec.strip() else None
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("plan") == plan_id and as_count(doc.get("shard")) is not None:
            found[(str(doc.get("step")), int(doc["shard"]))] = doc
    return found


def read_progress(conn: Any, root: str, plan_id: str) -> dict[tuple[str, int], dict[str, Any]]:
    """{(step id, shard): progress} of this plan, from one remote command."""
    return read_each(conn, root, plan_id, "progress.json")


# --- what status, --finish and verify trust: the records as they are now --------------



def _names(numbers: list[int]) -> str:
    shown = ", ".join(chunk_name(n) for n in numbers[:5])
    return shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")


def record_problems(progress: dict[str, Any], held: dict[int, int | None], planned: int) -> list[str]:
    """What is wrong with the records of a shard entry whose progress.json says complete:
    `held` {chunk number: the object records it holds, None when it cannot be read}, an
    absent chunk left out; `planned` the objects the plan counted in the range. [] when
    its chunks 0..chunks-1 are all there and hold every object it completed."""
    chunks, objects = as_count(progress.get("chunks")), as_count(progress.get("objects"))
    if chunks is None or objects is None:
        return ["progress.json is damaged"]
    problems: list[str] = []
    missing = [n for n in range(chunks) if n not in held]
    unreadable = [n for n in range(chunks) if held.get(n, 0) is None]
    if missing:
        problems.append(f"{_names(missing)} missing")
    if unreadable:
        problems.append(f"{_names(unreadable)} unreadable")
    count = sum(c or 0 for n, c in held.items() if n < chunks)
    listed = as_count(progress.get("listed"))
    if count != objects:
        problems.append(f"its records hold {count} object(s), its progress {objects}")
    elif listed is not None and objects != listed:
        problems.append(f"its records hold {objects} object(s), its listing {listed}")
    elif listed is None and objects < planned:
        # a worker that records no listing: the plan's count of the range is what it must hold
        problems.append(f"its records hold {objects} object(s), the plan counted {planned}")
    return problems


# Per chunk of each directory read from stdin (one a line): `<line number> <chunk> <records>
# <bytes>`, records counted and their sizes summed on the target (no chunk travels back
# whole: status runs often), `- -` for a chunk that is not a whole {"objects":[...]}
# document. A record is counted by its
# `"size":N,"sha256":"<64 hex>"` pair: a number cannot stand inside a string, and inside a
# string every `"` is escaped, so only a record's own fields match.
_COUNT = r"""
i=0
while IFS= read -r d; do
  i=$((i + 1))
  for f in "$d"/c*.json; do
    [ -f "$f" ] || continue
    n=${f##*/}; n=${n#c}; n=${n%.json}
    case $n in ''|*[!0-9]*) continue;; esac
    h=$(head -c 12 -- "$f" 2>/dev/null)
    t=$(tail -c 2 -- "$f" 2>/dev/null)
    if [ "$h" = '{"objects":[' ] && [ "$t" = ']}' ]; then
      c=$(LC_ALL=C grep -a -o -E '"size":[0-9]+,"sha256":"[0-9a-f]{64}"' -- "$f" |
          awk -F '[:,]' '{ n++; b += $2 } END { printf "%d %.0f", n, b }')
    else
      c='- -'
    fi
    printf '%s %s %s\n' "$i" "$n" "$c"
  done
done
exit 0
"""


def record_troubles(conn: Any, root: str, section: dict[str, Any], progress: dict[tuple[str, int], dict[str, Any]],
                    dests: dict[str, str]) -> dict[tuple[str, int], dict[str, Any]]:
    """{(step id, shard): {problems, held, held_bytes}} for every shard entry whose
    progress.json says complete but whose records do not hold what it completed
    (record_problems), counted on the target in one remote command: `held` the object
    records its chunks still hold, `held_bytes` their sizes (what status counts done).
    `dests`: each step's `to:`."""
    todo = [(sid, k) for sid, ranges in section["steps"].items() for k in range(len(ranges))
            if (progress.get((sid, k)) or {}).get("complete")]
    if not todo:
        return {}
    dirs = "".join(layout.shard_dir(root, dests[sid], k) + "\n" for sid, k in todo).encode()
    out = conn.run(shell.line(["sh", "-c", _COUNT, "sh"]), dirs, timeout=600).text()
    held: dict[int, dict[int, int | None]] = {}
    sizes: dict[int, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0].isdigit() and parts[1].isdigit():
            held.setdefault(int(parts[0]) - 1, {})[int(parts[1])] = int(parts[2]) if parts[2].isdigit() else None
            sizes[int(parts[0]) - 1] = sizes.get(int(parts[0]) - 1, 0) + (int(parts[3]) if parts[3].isdigit() else 0)
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for i, (sid, k) in enumerate(todo):
        got = held.get(i, {})
        problems = record_problems(progress[(sid, k)], got, int(section["steps"][sid][k]["objects"]))
        if problems:
            found[(sid, k)] = {"problems": problems, "held": sum(c or 0 for c in got.values()), "held_bytes": sizes.get(i, 0)}
    return found


def chunk_numbers(conn: Any, root: str, dest: str, index: int) -> list[int]:
    """The chunk files a shard entry's directory holds now."""
    where = layout.shard_dir(root, dest, index)
    names = conn.run(shell.line(["sh", "-c", 'cd "$1" 2>/dev/null && ls -1 | grep "^c[0-9]*\\.json$"; exit 0', "sh", where]),
                     timeout=600).text().split()
    return sorted(int(n[1:-5]) for n in names if n[1:-5].isdigit())


_REQUIRED = ("key", "path", "size", "sha256", "etag")


def load_chunk(conn: Any, root: str, dest: str, index: int, number: int) -> tuple[str, list[dict[str, Any]]]:
    """One chunk read whole (verify): ("ok" | "missing" | "unreadable", its well-formed records)."""
    path = posixpath.join(layout.shard_dir(root, dest, index), chunk_name(number))
    res = conn.run(shell.line(["sh", "-c", '[ -f "$1" ] || exit 3; cat -- "$1"', "sh", path]), timeout=600, check=False)
    if res.status == 3:
        return "missing", []
    try:
        doc = json.loads(res.stdout) if res.status == 0 else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
        return "unreadable", []
    good = [o for o in doc["objects"] if isinstance(o, dict) and all(f in o for f in _REQUIRED)
            and isinstance(o["path"], str) and isinstance(o["sha256"], str)]
    return "ok", good


# One line for the target's host name, then per shard lock: index, seconds since its owner
# file was touched (the target's clock), whether the pid it names runs on the target (1, 0,
# or - when it names none), and the owner file (one JSON line, execute/lock.py).
_LOCKS = r"""
cd "$1" 2>/dev/null || exit 0
now=$(date +%s)
printf 'host\t%s\n' "$(hostname 2>/dev/null || uname -n)"
for d in *; do
  case $d in ''|*[!0-9]*) continue;; esac
  [ -d "$d" ] || continue
  f=$d/owner
  [ -f "$f" ] || f=$d
  m=$(stat -c %Y -- "$f" 2>/dev/null) || m=$now
  pid=$(sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' "$d/owner" 2>/dev/null | head -n 1)
  alive=-
  if [ -n "$pid" ]; then
    if [ -d /proc/self ]; then
      if [ -d "/proc/$pid" ]; then alive=1; else alive=0; fi
    elif kill -0 "$pid" 2>/dev/null; then alive=1; else alive=0; fi
  fi
  printf 'lock\t%s\t%s\t%s\t' "$d" "$((now - m))" "$alive"
  head -c 4096 "$d/owner" 2>/dev/null | tr -d '\t\n'
  printf '\n'
done
exit 0
"""


def read_workers(conn: Any, root: str, stale_s: float) -> dict[int, dict[str, Any]]:
    """{shard: the worker its lock names}: {who, host, pid, since, heartbeat_s, live, how}.

    A worker removes its lock when it ends, even on failure; one killed (SIGKILL, a lost
    node) leaves it behind. `live`: the pid it names still runs, when the lock was taken
    on this machine or on the target itself (checked there); from anywhere else, its
    owner file was touched (every chunk and batch) less than `stale_s` ago, the time after
    which a new worker takes the lock over."""
    out = conn.run(shell.line(["sh", "-c", _LOCKS, "sh", posixpath.join(layout.shards_dir(root), "locks")]),
                   timeout=600).text()
    here, target_host = socket.gethostname(), None
    found: dict[int, dict[str, Any]] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == "host" and len(parts) == 2:
            target_host = parts[1].strip()
            continue
        if parts[0] != "lock" or len(parts) != 5 or not parts[1].isdigit() or not re.fullmatch(r"-?\d+", parts[2]):
            continue
        try:
            owner = json.loads(parts[4]) if parts[4].strip() else {}
        except ValueError:
            owner = {}
        owner = owner if isinstance(owner, dict) else {}
        age = max(0, int(parts[2]))
        pid, host = owner.get("pid"), owner.get("host")
        if isinstance(pid, int) and (host == here or (host == target_host and parts[3] in ("0", "1"))):
            live = pid_alive(pid) if host == here else parts[3] == "1"
            how = f"pid {pid} on {host} " + ("runs" if live else "has ended, leaving its lock behind")
        else:
            live = age <= stale_s
            how = (f"its lock was touched {age}s ago" if live else
                   f"its lock was last touched {age}s ago (a new worker takes it over after {stale_s:.0f}s)")
        found[int(parts[1])] = {"who": owner.get("who"), "host": host, "pid": pid, "since": owner.get("since"),
                                "heartbeat_s": age, "live": live, "how": how}
    return found


def troubles_of(conn: Any, config: Any, section: dict[str, Any],
                progress: dict[tuple[str, int], dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """record_troubles for a plan's shards section, each step's `to:` from relocate.yaml."""
    from relocate.shards.worker import spec_for

    return record_troubles(conn, config.root, section, progress, {sid: spec_for(config, sid)[0].to for sid in section["steps"]})


def incomplete(section: dict[str, Any], progress: dict[tuple[str, int], dict[str, Any]],
               troubles: dict[tuple[str, int], dict[str, Any]]) -> list[int]:
    """The shards not complete: an entry's progress does not say so, or its records do not hold it."""
    return [k for k in range(int(section["count"]))
            if not all((progress.get((sid, k)) or {}).get("complete") and (sid, k) not in troubles for sid in section["steps"])]
