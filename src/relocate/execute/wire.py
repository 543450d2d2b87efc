"""How one batch of objects travels to the target, and how its answer is read.

Three forms, one interface (execute/objects.py writes every batch through it):

- `AgentWire`: the default when the target has python3. A framed stream into
  targets/receiver_agent.py, which hashes each file while writing it and renames it
  into place when its sha256 equals the sender's: one pass over the bytes, one
  receiver per lane connection for all its batches.
- `TarWire`: no python3 on the target. A tar stream into `tar -x` in a staging
  directory; the target hashes what landed and hard-links the batch into place when
  its hashes equal the manifest the sender appended as the tar's last member.
- `RawWire`: the tar path's batch of one big object (`cat` writes it, then the target
  hashes the file), which saves tar's headers and a staging tree for one file.

A wire never decides that a batch is good: the sender compares the target's own
hashes with what it computed while streaming (objects.BucketPusher._check_staged).
"""

from __future__ import annotations

import posixpath
import re
import struct
import tarfile
from typing import Protocol

from relocate.errors import ItemError, RelocateError, TransientError
from relocate.snapshot.journal import DoneObject
from relocate.sources.inventory import ObjectInfo
from relocate.targets import files, nolinks, shell
from relocate.ssh.connection import Result

_RECORD = tarfile.RECORDSIZE

# $1 staging dir, $2 its tree, $3 final dir, $4 target.root, $5 allowed links. Lanes
# promote concurrently: two `cp -R` creating the same directory race ("File exists"),
# so every directory is made first with mkdir -p (which tolerates that race), then the
# files are hard-linked into place. Right before, every directory the batch lands in is
# checked for a symlinked component (nolinks.py): mkdir -p and cp would follow one.
_PROMOTE_BODY = r"""(cd "$2" && find . -type d -print) | while IFS= read -r d; do
  relocate_nolinks "$4" "$5" "$3/${d#./}" || exit 86
done || exit 86
mkdir -p -- "$3" || exit 1
(cd "$2" && find . -mindepth 1 -type d -print0) | (cd "$3" && xargs -0 -r mkdir -p --) || exit 1
cp -Rlf -- "$2/." "$3/" && rm -rf -- "$1"
"""
PROMOTE = nolinks.NOLINKS_FN + _PROMOTE_BODY
# $1 = the batch's staging dir, $2 = the tree inside it (the tar's d/), $3 = the final
# dir. One remote command per batch, no extra round trip: extract; hash what landed
# (printed for the client's own check); then, only when those hashes are byte for byte
# the manifest the client computed while streaming (the tar's last member, m: the
# sorted `openssl dgst -r` lines), promote. Otherwise (no openssl, names openssl
# escapes, any difference) nothing is promoted here and the client checks and
# promotes with PROMOTE. \002 at the end of the output says "promoted".
_EXTRACT_VERIFY_PROMOTE = nolinks.NOLINKS_FN + r"""
relocate_nolinks "$4" "$5" "$1" || exit 86
rm -rf "$1" && mkdir -p "$1" && tar -x -f - -C "$1" || exit 1
[ -f "$1/m" ] && cd "$2" || exit 1
""" + files.HASH_INTO_T + r"""
odd=
for f in "$t"/h.*; do [ -e "$f" ] && odd=1 && cat "$f"; done
printf '\001'
for f in "$t"/o.*; do [ -e "$f" ] && cat "$f"; done
[ -z "$odd" ] || exit 0
cat "$t"/o.* 2>/dev/null | LC_ALL=C sort | cmp -s - "$1/m" || exit 0
cd / || exit 1
""" + _PROMOTE_BODY + r"""[ $? = 0 ] || exit 1
printf '\002'
"""
# cat writes the file, then the target hashes it (from the page cache). `tee file |
# openssl` hashed on the other core while writing, but the extra pipe copy cost more
# than it overlapped on 2 busy cores. $1 staging dir, $2 file, $3 mtime.
_WRITE_AND_HASH = nolinks.NOLINKS_FN + r"""
relocate_nolinks "$4" "$5" "$1" || exit 86
rm -rf "$1" && mkdir -p "$(dirname "$2")" || exit 1
cat > "$2" || exit 1
if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r <"$2"; else sha256sum <"$2"; fi || exit 1
chmod 644 "$2" && touch -m -d "@$3" -- "$2"
"""


AGENT_SOURCE = shell.program("receiver_agent")
AGENT_PROBE = "command -v python3 >/dev/null 2>&1 && python3 -I -S -c 'import sys; sys.exit(sys.version_info < (3, 6))'"


class Answer:
    """What the target said about a batch: {path relative to the final dir: sha256 of
    what landed}, whether it is already in place, and {path: why} for the files whose
    own path can never be written there (the python3 receiver goes on past them)."""

    def __init__(self, hashes: dict[str, str], placed: bool, failed: dict[str, str] | None = None) -> None:
        self.hashes, self.placed, self.failed = hashes, placed, failed or {}


class Wire(Protocol):
    session: bool  # True: one receiver per connection, batch after batch; False: one process per batch
    receipts: bool  # True: the receiver writes a receipt per file placed (snapshot/receipts.py), given a note()
    def command(self, stage: str, final: str, rels: list[str]) -> str: ...
    def start(self) -> bytes: ...
    def header(self, rel: str, obj: ObjectInfo) -> bytes: ...
    def note(self, record: bytes) -> bytes: ...
    def trailer(self, size: int, digest: bytes) -> bytes: ...
    def end(self, done: list[DoneObject], rels: list[str], written: int) -> bytes: ...
    def answer(self, result: Result, rels: list[str]) -> Answer: ...


def _b(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


class Place:
    """target.root and the links relocate.yaml allows under it: every wire's receiver
    checks the directories it writes into against them (targets/nolinks.py)."""

    def __init__(self, root: str = "/", allow: tuple[str, ...] = ()) -> None:
        self.root, self.allow = root, allow

    def args(self) -> list[str]:
        return [nolinks.root_arg(self.root), nolinks.allow_arg(self.allow)]


class AgentWire:
    session = True  # one receiver per lane connection, answering batch by batch
    MAGIC = b"RLC1"
    HEAD = struct.Struct(">IQq")
    LEN = struct.Struct(">I")

    def __init__(self, place: Place | None = None, receipts: str | None = None, keep_cache: bool = False) -> None:
        self.place = place or Place()
        self.where = receipts  # the directory the receiver appends its receipts in (None: none)
        self.receipts = receipts is not None
        self.keep_cache = keep_cache  # RELOCATE_PAGE_CACHE=keep: no drop-behind (targets/dropbehind.py)

    def command(self, stage: str, final: str, rels: list[str]) -> str:
        return shell.line(["python3", "-I", "-S", "-c", AGENT_SOURCE, stage, final, self.place.root, *self.place.allow])

    def start(self) -> bytes:
        head = self.MAGIC + (b"K" if self.keep_cache else b"")
        if self.where is None:
            return head
        where = _b(self.where)
        return head + b"R" + self.LEN.pack(len(where)) + where

    def header(self, rel: str, obj: ObjectInfo) -> bytes:
        path = _b(rel)
        return b"F" + self.HEAD.pack(len(path), obj.size, int(obj.last_modified)) + path

    def note(self, record: bytes) -> bytes:
        return b"M" + self.LEN.pack(len(record)) + record

    def trailer(self, size: int, digest: bytes) -> bytes:
        return digest

    def end(self, done: list[DoneObject], rels: list[str], written: int) -> bytes:
        return b"E"

    def answer(self, result: Result, rels: list[str]) -> Answer:
        lines = result.stdout.split(b"\n")
        if b"end" not in lines:
            raise ValueError("the receiver did not finish")
        if sum(1 for line in lines if line[:1].isdigit()) != len(rels):
            raise ValueError(f"{len(rels)} files sent, another count answered")
        hashes: dict[str, str] = {}
        failed: dict[str, str] = {}
        for line in lines:
            parts = line.split(b" ", 3)
            if len(parts) >= 2 and parts[0].isdigit():
                # A " !" file was not put in place: report its hash, the sender's check
                # fails the batch on it and the retry sends it again.
                rel = rels[int(parts[0])]
                hashes[rel] = parts[1].decode("ascii", "replace")
                if len(parts) == 4 and parts[2] == b"x":  # its path can never be written: no retry
                    failed[rel] = parts[3].decode("ascii", "replace")
        return Answer(hashes, placed=True, failed=failed)


class TarWire:
    session = False
    receipts = False  # its batch is journalled or sent again whole

    def __init__(self, place: Place | None = None) -> None:
        self.place = place or Place()

    def command(self, stage: str, final: str, rels: list[str]) -> str:
        return shell.line(["sh", "-c", _EXTRACT_VERIFY_PROMOTE, "sh", stage, posixpath.join(stage, "d"), final, *self.place.args()])

    def start(self) -> bytes:
        return b""

    def header(self, rel: str, obj: ObjectInfo) -> bytes:
        info = tarfile.TarInfo("d/" + rel)
        info.size = obj.size
        info.mtime = int(obj.last_modified)
        info.mode = 0o644
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def note(self, record: bytes) -> bytes:
        return b""

    def trailer(self, size: int, digest: bytes) -> bytes:
        return b"\0" * (-size % tarfile.BLOCKSIZE)

    def end(self, done: list[DoneObject], rels: list[str], written: int) -> bytes:
        """The tar's last member, m: the sha256s computed while streaming, as the sorted
        lines `openssl dgst -sha256 -r` prints for the tree, then tar's end blocks and
        the padding to whole records (GNU tar warns, and some tars fail, otherwise)."""
        lines = sorted(_b(f"{d.sha256} *./{rel}") for d, rel in zip(done, rels))
        data = b"".join(line + b"\n" for line in lines)
        info = tarfile.TarInfo("m")
        info.size = len(data)
        info.mode = 0o644
        member = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)
        tail = member + b"\0" * (2 * tarfile.BLOCKSIZE)
        return tail + b"\0" * (-(written + len(tail)) % _RECORD)

    def answer(self, result: Result, rels: list[str]) -> Answer:
        out = result.stdout
        placed = out.endswith(b"\002")
        return Answer(files.parse_hashes(out[:-1] if placed else out), placed)


class RawWire:
    session = False
    receipts = False

    def __init__(self, mtime: float, place: Place | None = None) -> None:
        self.mtime = int(mtime)
        self.place = place or Place()

    def command(self, stage: str, final: str, rels: list[str]) -> str:
        return shell.line(["sh", "-c", _WRITE_AND_HASH, "sh", stage, posixpath.join(stage, "d", rels[0]), str(self.mtime),
                           *self.place.args()])

    def start(self) -> bytes:
        return b""

    def header(self, rel: str, obj: ObjectInfo) -> bytes:
        return b""

    def note(self, record: bytes) -> bytes:
        return b""

    def trailer(self, size: int, digest: bytes) -> bytes:
        return b""

    def end(self, done: list[DoneObject], rels: list[str], written: int) -> bytes:
        return b""

    def answer(self, result: Result, rels: list[str]) -> Answer:
        # "<hex> *stdin\n" (openssl) or "<hex>  -\n" (sha256sum) of the file cat wrote
        return Answer({rels[0]: result.stdout[:64].decode("ascii", "replace")}, placed=False)


def receiver_error(status: int | None, stderr: bytes, fallback: str) -> RelocateError:
    """What a failed receiver means: a symlinked directory (exit 6), an item that can
    never be written (exit 4: a name too long, a file where a directory must be, a
    directory the login may not write), or a transient failure the batch retries (exit 5
    once the retries are spent)."""
    refused = nolinks.refusal(status, stderr)
    if refused is not None:
        return refused
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    last = lines[-1] if lines else fallback
    # mkdir -p tolerates a directory made by another lane: "File exists" from it is a file in the way.
    # Permission denied: a directory the login cannot write stays so (not from ssh itself, 255:
    # a lane's login refused is no item's).
    denied = status != SSH_STATUS and any(t in last for t in _DENIED_TEXTS)
    if status == ITEM_STATUS or any(t in last for t in _PERMANENT_TEXTS) or ("mkdir" in last and "File exists" in last) \
            or denied:
        # mkdir's own words ("mkdir: cannot create directory './legal': File exists") say
        # what it tried, not what is wrong: a file stands where a directory must go.
        blocked = _IN_THE_WAY.search(last)
        why = (f"cannot create the directory {blocked[1]}: a file is in the way ({blocked[2]})" if blocked
               else last.removeprefix("relocate receiver: "))
        return ItemError(f"the target cannot store an object: {why}", hint=ITEM_HINT)
    return TransientError(f"the target's receiver failed: {last}")


_IN_THE_WAY = re.compile(r"mkdir: cannot create directory ['\u2018]?(.+?)['\u2019]?: (File exists|Not a directory)")
ITEM_HINT = "retrying will not help: fix the `to:` in relocate.yaml or what is in the way on the target"


ITEM_STATUS = 4  # receiver_agent.py ITEM_STATUS
# What tar, mkdir and cp print for errors retrying cannot fix (the tar path has no errno).
_PERMANENT_TEXTS = ("File name too long", "Not a directory", "Is a directory", "Read-only file system")
_DENIED_TEXTS = ("Permission denied", "Operation not permitted")
SSH_STATUS = 255  # ssh's own failure (its login, its connection), not the remote command's
# Of those, the one no single file causes (receiver_agent.py ITEM_ERRNOS leaves EROFS out too):
# a batch the tar path was refused for it is not split to find the file (execute/objects.py).
NOT_ONE_FILE = "Read-only file system"


def choose(setting: str, has_python: bool) -> str:
    """`agent` or `tar`: the setting python|sh (RELOCATE_RECEIVER, relocate.settings)
    forces one (tests, odd targets)."""
    if setting == "sh":
        return "tar"
    if setting == "python" or has_python:
        return "agent"
    return "tar"

