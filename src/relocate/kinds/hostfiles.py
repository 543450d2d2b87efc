"""Host files: paths on the app's current hosts (EC2 or any SSH host), copied read-only.

One `tar c` runs on the source host (the only command relocate runs there, so the
source is never changed); its stdout is streamed, as it arrives, into `tar x` on the
target and into a copy in the snapshot (`hosts/<n>.tar`). Owners, modes, symlinks
and timestamps travel inside the tar; owners are applied only where the target login
is root (tar's rule: an ordinary user cannot give files away), and the snapshot copy
keeps them either way. The tree lands in staging and is moved into `root/<to>` only
after both tars succeeded: nothing half-written in place.

A bastion (`via:`) is used like `ssh -J`: the source host's SSH session runs inside a
direct-tcpip channel of the bastion's, so the source needs no public port.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import hashlib
import json
import os
import posixpath
import queue
import shutil
import subprocess
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ContextManager

from relocate.kinds import Check, Kind, Context, Outcome, PlanPart
from relocate.config import Config
from relocate.errors import RelocateError, TargetError, TransientError
from relocate.plan.model import Finding, Step
from relocate.settings import Login
from relocate.ssh.connection import Connection, Exec, session
from relocate.ssh.openssh import OpenSsh, OpenSshExec, widen_pipe
from relocate.ssh.via import resolve_via, ssh_spec
from relocate.targets import nolinks, shell
from relocate.targets.runtimes import login_is_root

CHUNK = 1 << 20  # relay unit: one read from the source, one write to the target
QUEUED = 16  # chunks the snapshot/hash thread may lag behind the relay (bounded memory)

STAGING = ".relocate/staging/hosts"
# What earlier moves put in place, per source entry: the sha256 of the tar stream that
# landed, the source's and the placed tree's stat fingerprints (README, "Snapshots, resume
# and idempotence"). Lets a rerun see "nothing to do", and see when it is not so any more.
RECORD = ".relocate/hosts.json"

# The same tar the move would stream, hashed on the source: only the digest travels.
_DIGEST = r"""
set -e
tar "$@" | sha256sum | cut -c1-64
"""

# A tree's stat fingerprint: every entry's path, type, inode, ctime and mtime (ns), size,
# mode, owners and link target, hashed where the tree is (only the digest travels; no file
# content is read). Any write, chmod, chown, rename, removal or new entry changes a ctime
# or the list, and no one can set a ctime back, so an equal fingerprint means an unchanged
# tree, the way git's index trusts unchanged stat data. Taken on the source (_PROBE: will
# the tar carry the same bytes?) and on the target (_ON_TARGET, _PROMOTE: does `to:`
# still hold the tree put there?). `relocate_stat PATH... [-mindepth 1]`.
_STAT_FN = r"""
relocate_stat() {
  find "$@" -printf '%p\t%y\t%i\t%C@\t%T@\t%s\t%m\t%u:%g:%U:%G\t%l\0' | sha256sum | cut -c1-64
}
"""
# The fingerprint of what lies below a destination on the target (not the directory itself:
# its ctime moves when the tree is renamed into place).
_TREE_FN = _STAT_FN + r"""
relocate_tree() { (cd -- "$1" && relocate_stat . -mindepth 1); }
"""

# The record of earlier moves, then the fingerprint of each destination that still exists
# (one command; the trees are walked only when there is a record to compare them with).
_ON_TARGET = _TREE_FN + r"""
record=$1; shift
cat -- "$record" 2>/dev/null || true
printf '\0'
if [ -s "$record" ]; then
  for d in "$@"; do if [ -d "$d" ]; then printf '%s\t%s\0' "$(relocate_tree "$d")" "$d"; fi; done
fi
"""

# Sizes and presence, read-only; `du -s --apparent-size` is what the tar will carry. Then
# the source tree's stat fingerprint (_STAT_FN): equal to the one recorded when the tar was
# read, the tar would carry the same bytes; a rerun with nothing to do never reads the
# files' contents. An entry changed in the last 2 seconds ("racy", as git says: a coarse
# clock could hide a second write) makes the fingerprint empty, and the tar's own sha256
# decides instead.
_PROBE = _STAT_FN + r"""
all=ok
for p in "$@"; do
  if [ -e "$p" ] || [ -L "$p" ]; then printf 'ok\t%s\t%s\0' "$(du -s -B1 --apparent-size -- "$p" | cut -f1)" "$p"
  else printf 'missing\t0\t%s\0' "$p"; all=; fi
done
now=$(date +%s)
if [ -n "$all" ] && [ -z "$(find "$@" \( -newerct "@$((now - 2))" -o -newermt "@$((now - 2))" \) -print -quit)" ]; then
  printf 'stat\t%s\t-\0' "$(relocate_stat "$@")"
fi
"""

# Move the staged tree into place: the old tree is set aside first, dropped last. Never
# through a symlinked directory under the root ($3, allowed links $4; nolinks.py), and
# a link at `to:` itself is refused: the tree replaces `to:` whole, link included. Prints
# the tree's fingerprint as it now stands at `to:` (taken there, not in staging: a `to:`
# on another disk through an allowed link gets new inodes from `mv`).
_PROMOTE = nolinks.NOLINKS_FN + _TREE_FN + r"""
set -e
stage=$1 dest=$2
relocate_nolinks "$3" "$4" "$stage" "$(dirname -- "$dest")" || exit 86
if [ -L "$dest" ]; then printf 'relocate: symlink: %s -> %s\n' "$dest" "$(readlink -- "$dest")" >&2; exit 86; fi
mkdir -p -- "$(dirname -- "$dest")"
rm -rf -- "$dest.relocate-old"
if [ -e "$dest" ]; then mv -T -- "$dest" "$dest.relocate-old"; fi
mv -T -- "$stage" "$dest"
rm -rf -- "$dest.relocate-old"
relocate_tree "$dest"
"""

# What verify compares: type, mode, mtime, owner, link target, size, path (NUL-separated).
_LIST = r"""
[ -d "$1" ] || exit 0
cd "$1" && find . -mindepth 1 -printf '%y\t%m\t%T@\t%u:%g\t%l\t%s\t%P\0'
"""

# tar x into staging, every file that landed hashed there in the same command, so apply
# compares those hashes with the ones taken from the stream before anything is put in
# place, and the move's final check only lists (sizes, modes, ...) instead of reading the
# tree a second time; `relocate verify` and `move --checksum` hash again. Where the target
# has python3 and GNU tar, targets/extract_hasher.py ($2) hashes each file while tar
# extracts the next, so on a target with cores to spare the pass no longer follows the
# stream (it was a tenth of the bench's move; on its one shared machine the two are about
# even: docs/transfer.md); elsewhere the tree is hashed once tar is done (files.HASH_CWD,
# appended by extract_script). Either way the tree is hashed and tar's status comes last,
# also when tar failed: apply decides from tar's messages (_unmade) whether the rest stands.
_EXTRACT = r"""
stage=$1
rm -rf -- "$stage" && mkdir -p -- "$stage" && cd "$stage" || exit
if command -v python3 >/dev/null 2>&1 && python3 -I -S -c 'import sys; sys.exit(sys.version_info < (3, 5))' 2>/dev/null &&
   tar --version 2>/dev/null | grep -q 'GNU tar'; then
  exec python3 -I -S -c "$2" tar -x -p -v --quoting-style=escape -f -
fi
tar -x -p -f -
relocate_tar=$?
"""


def extract_script() -> str:
    """The whole extracting script: _EXTRACT, then (without python3) the hashing in a
    subshell (it ends in `exit 0`), then tar's status."""
    from relocate.targets.files import HASH_CWD

    return _EXTRACT + "(\n" + HASH_CWD + ') || exit\nexit "$relocate_tar"\n'


@dataclass
class HostInfo:
    index: int
    label: str  # user@host:port, for messages
    paths: list[str]
    to: str
    sizes: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    digest: str = ""  # sha256 of the tar stream the move would send, computed on the source
    stat: str = ""  # the source tree's stat fingerprint (_PROBE), taken before the tar is read
    # the manifest of an earlier move that sent exactly this tar, when the target still
    # has it and the local snapshot still holds its tar: then there is nothing to do
    landed: dict[str, Any] | None = None
    landed_tar: Path | None = None
    why: str = ""  # why an earlier copy does not count (the plan's detail), when there was one
    # `ssh` logins (source, target) started at gather when there is a copy to make, so
    # their handshakes overlap the plan instead of delaying the stream; not part of the plan
    logins: tuple[OpenSsh | None, OpenSsh | None] = (None, None)


def _entries(config: Config) -> list[dict[str, Any]]:
    return list((config.data.get("source") or {}).get("hosts") or [])


def _bastions(config: Config) -> dict[str, Any] | None:
    return (config.data.get("source") or {}).get("bastions")


def source_connection(entry: dict[str, Any], login: Login, bastions: dict[str, Any] | None = None) -> ContextManager[Connection]:
    """An SSH session to the source host, through its bastion when `via:` names one."""
    return session(ssh_spec(entry["ssh"]), login, resolve_via(entry["via"], bastions) if entry.get("via") else None)


def _record_key(entry: dict[str, Any], label: str) -> str:
    """Which source.hosts entry a record belongs to: where from, what, where to."""
    return json.dumps([label, list(entry["paths"]), entry["to"], list(entry.get("exclude") or [])])


def read_records(conn: Connection, root: str, dests: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(records of earlier moves, {destination: its tree's fingerprint} for those of `dests`
    that exist, when there are records), in one command."""
    cmd, stdin = shell.script(_ON_TARGET, posixpath.join(root, RECORD), *dests)
    raw, _, rest = conn.run(cmd, stdin, timeout=120).stdout.partition(b"\0")
    try:
        records = json.loads(raw) if raw.strip() else {}
    except ValueError:
        records = {}  # a damaged record only costs a copy
    trees = {}
    for line in rest.split(b"\0"):
        if line:
            tree, _, dest = line.decode("utf-8", "surrogateescape").partition("\t")
            trees[dest] = tree
    return (records if isinstance(records, dict) else {}), trees


def _differs_mark(snapshot: Path, rec: dict[str, Any]) -> Path:
    """Beside a snapshot's tar: a check found the target's copy of it differing (written by
    `verify` or the check ending a move, read by the next gather), so the next move sends
    it again."""
    return snapshot / f"{rec.get('tar', '')}.differs"


def _earlier(snapshot_dir: Path, step_id: str, digest: str) -> tuple[dict[str, Any], Path] | str:
    """The newest local snapshot's record of this step, if it sent this very tar and no
    check found the target's copy differing since; else why not (the plan's detail)."""
    from relocate.snapshot import store

    snap = store.latest(snapshot_dir)
    if snap is None:
        return "no local snapshot holds its tar"
    try:
        rec = ((snap.manifest().get("components") or {}).get("hostfiles") or {}).get(step_id)
    except RelocateError:
        return "the local snapshot is unreadable"
    if not rec or rec.get("tar_sha256") != digest or not (snap.path / rec.get("tar", "")).is_file():
        return f"the local snapshot {snap.id} does not hold the tar the target records"
    if _differs_mark(snap.path, rec).exists():
        return f"a check found the target's copy differing from snapshot {snap.id}"
    return rec, snap.path / rec["tar"]


def _held(ctx: Context, info: HostInfo, rec: dict[str, Any], tree: str | None) -> tuple[dict[str, Any], Path] | None:
    """The earlier copy `rec` records, if `to:` still holds it (its tree's fingerprint is the
    one taken when it was put in place) and the local snapshot still has its tar; else None,
    with why in `info.why`. Cheap: the fingerprint came with the record (read_records)."""
    if tree is None:
        info.why = f"{info.to} is gone from the target"
    elif tree != rec.get("tree_sha256"):  # absent from a record an older relocate wrote: copied once more
        info.why = f"the target's {info.to} changed since it was put in place"
    else:
        found = _earlier(ctx.config.snapshot_dir, _step_id(info), rec["tar_sha256"])
        if not isinstance(found, str):
            return found
        info.why = found
    return None


def _rehashed(ctx: Context, info: HostInfo, found: tuple[dict[str, Any], Path], dest: str) -> tuple[dict[str, Any], Path] | None:
    """`move --checksum`: the earlier copy counts only if every file on the target still has
    the sha256 its snapshot records (hashed there now), as `relocate verify` would find."""
    bad = _differences(found[0]["entries"], target_listing(ctx.conn, dest, hashes=True), hashed=True,
                       root_login=login_is_root(ctx.conn))
    if not bad:
        return found
    info.why = f"--checksum: {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} differ on the target, first {bad[0]}"
    return None


def _shown(path: str) -> str:
    """A name for a message: bytes that are not UTF-8 (kept as surrogates) as \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def tar_command(paths: list[str], excludes: list[str]) -> list[str]:
    """GNU tar on the source: paths relative to / so they land as root/<to>/etc/...;
    symlinks are stored as links (no -h), owners and mtimes in the headers."""
    argv = ["tar", "-c", "-f", "-", "-C", "/"]
    argv += [f"--exclude={pat}" for pat in excludes]
    return [*argv, "--", *(p.lstrip("/") or "." for p in paths)]


# A tar member's type as the letter find's %y gives the same thing on the target (what
# verify compares: target_listing), so a fifo is "p" on both sides; "h" is a hard link (its
# `link` the member it links to). A socket never gets here: GNU tar leaves sockets out.
_TYPES = {b"0": "f", b"\0": "f", b"7": "f", b"S": "f", b"1": "h", b"2": "l", b"3": "c", b"4": "b", b"5": "d", b"6": "p"}


def _nts(field: bytes | bytearray | memoryview) -> str:
    raw = bytes(field)
    end = raw.find(b"\0")
    return (raw if end < 0 else raw[:end]).decode("utf-8", "surrogateescape")


def _nti(field: bytes) -> int:
    """A tar number: octal text, or GNU base-256 (sizes over 8 GiB, ids over 2^21)."""
    if field[0] in (0o200, 0o377):
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if field[0] == 0o377 else n
    return int(_nts(field).strip() or "0", 8)


class _TarLister:
    """The listing `listing_from_tar` gives ({path: [type, mode, mtime, owner, link,
    sha256, size]}), built from the tar stream as it passes, in chunks, without copying the
    data (headers are parsed, file bodies hashed from memoryviews). GNU and ustar headers
    and GNU long names/links (what GNU tar writes by default); anything else (pax, sparse,
    a bad checksum) sets `unsupported`, and the caller lists the snapshot tar instead."""

    def __init__(self) -> None:
        self.entries: dict[str, list[Any]] = {}
        self.head = bytearray()
        self.left = 0  # data bytes of the current member still to come
        self.pad = 0  # then padding to the 512-byte block
        self.sink: Any = None  # a sha256 (file body), a bytearray (long name/link), or None (skipped)
        self.row: list[Any] | None = None
        self.path = ""
        self.long: dict[str, str] = {}  # "L" | "K" (GNU long name / link) -> the text
        self.done = self.unsupported = False

    def feed(self, chunk: bytes) -> None:
        view, i, n = memoryview(chunk), 0, len(chunk)
        while i < n and not (self.done or self.unsupported):
            if self.left:
                take = min(self.left, n - i)
                if self.sink is not None:
                    self.sink.update(view[i:i + take]) if not isinstance(self.sink, bytearray) else self.sink.extend(view[i:i + take])
                i += take
                self.left -= take
                if not self.left:
                    self._end()
            elif self.pad:
                take = min(self.pad, n - i)
                i += take
                self.pad -= take
            else:
                take = min(512 - len(self.head), n - i)
                self.head += view[i:i + take]
                i += take
                if len(self.head) == 512:
                    self._header(bytes(self.head))
                    self.head.clear()

    def _header(self, buf: bytes) -> None:
        if buf.count(0) == 512:
            self.done = True  # the end-of-archive block (tarfile stops here too)
            return
        try:
            ok = _nti(buf[148:156]) == 256 + sum(buf[:148]) + sum(buf[156:])
            size, kind = _nti(buf[124:136]), buf[156:157]
        except ValueError:
            ok = False
        if not ok or kind in (b"x", b"g", b"S", b"D", b"M", b"N", b"V"):
            self.unsupported = True
            return
        self.left, self.pad, self.sink, self.row = size, -size % 512, None, None
        if kind in (b"L", b"K"):  # the next member's long name / link target
            self.sink, self.path = bytearray(), kind.decode()
        else:
            name = self.long.pop("L", None) or _nts(buf[0:100])
            if buf[257:265] == b"ustar\x0000" and buf[345] != 0:  # POSIX ustar's prefix field
                name = _nts(buf[345:500]) + "/" + name
            link = self.long.pop("K", None) or _nts(buf[157:257])
            t = "d" if kind in (b"0", b"\0") and name.endswith("/") else _TYPES.get(kind, "o")
            if t in ("d", "l", "h") or kind in (b"3", b"4", b"6"):
                self.left = self.pad = 0  # tarfile reads no body for these whatever the size says
            self.row = [t, _nti(buf[100:108]) & 0o7777, _nti(buf[136:148]), f"{_nts(buf[265:297])}:{_nts(buf[297:329])}",
                        link if t in ("l", "h") else "", None, size if t == "f" else 0]
            self.path = name.rstrip("/")
            if t == "f":
                self.sink = hashlib.sha256()
        if not self.left:
            self._end()

    def _end(self) -> None:
        if self.row is None:
            if isinstance(self.sink, bytearray):
                self.long[self.path] = _nts(self.sink)
        else:
            if self.row[0] == "f":
                self.row[5] = self.sink.hexdigest()
            self.entries[self.path] = self.row
        self.sink, self.row = None, None


class _Snapshotter:
    """The snapshot copy and all hashing, on their own thread, fed by the relay through a
    bounded queue: the relay only forwards bytes (source -> target) and never waits on
    the disk or a hash unless this thread is QUEUED chunks behind. One pass over the bytes
    gives the snapshot tar, the stream's sha256 (the rerun record) and each file's sha256
    (the manifest `verify` compares with), so the tar is never read back."""

    def __init__(self, copy: IO[bytes]) -> None:
        self.chunks: "queue.Queue[bytes | None]" = queue.Queue(QUEUED)
        self.copy = copy
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.lister = _TarLister()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="relocate-hostfiles-snapshot", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (chunk := self.chunks.get()) is not None:
            if self.error is not None:
                continue  # keep the relay from blocking on a full queue
            try:
                self.copy.write(chunk)
                self.sha.update(chunk)
                self.bytes += len(chunk)
                self.lister.feed(chunk)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                self.error = exc

    def feed(self, chunk: bytes) -> None:
        self.chunks.put(chunk)

    def finish(self) -> tuple[str, int, dict[str, list[Any]] | None]:
        """(stream sha256, bytes, listing or None when the lister could not follow)."""
        self.chunks.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        whole = self.lister.done and not self.lister.unsupported
        return self.sha.hexdigest(), self.bytes, self.lister.entries if whole else None


class _Tee:
    """stdout sink of the source's tar: into the target's tar and the snapshot thread.

    With paramiko it runs on the channel's reader thread, so it records a failure instead
    of raising (an exception there would vanish with the thread) and keeps draining."""

    def __init__(self, target: Exec | OpenSshExec, snap: _Snapshotter) -> None:
        self.target, self.snap = target, snap
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                self.target.write(data)
                self.snap.feed(data)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller thread
                self.error = exc
        return len(data)


def _listing(tar: tarfile.TarFile) -> dict[str, list[Any]]:
    """{path: [type, mode, mtime, owner, linkname, sha256, size]} of a tar read as a stream."""
    out: dict[str, list[Any]] = {}
    with tar:
        for m in tar:
            kind = _TYPES.get(m.type, "o")  # tarfile made an old-style "\0" named "x/" a "5" already
            digest = None
            if m.isfile():
                fh = tar.extractfile(m)
                h = hashlib.sha256()
                while chunk := fh.read(CHUNK):  # type: ignore[union-attr]
                    h.update(chunk)
                digest = h.hexdigest()
            out[m.name.rstrip("/")] = [kind, m.mode & 0o7777, int(m.mtime), f"{m.uname}:{m.gname}", m.linkname if kind in ("l", "h") else "", digest,
                                       m.size if m.isfile() else 0]
    return out


def listing_from_tar(path: Path) -> dict[str, list[Any]]:
    """{path: [type, mode, mtime, owner, linkname, sha256, size]} read from the tar (never extracted)."""
    return _listing(tarfile.open(path, "r|"))


def _openssh(conn: Connection) -> OpenSsh | None:
    """`ssh` pinned to the host key paramiko checked (ssh/openssh.py), its login
    started, not waited for; None where it cannot serve (then paramiko carries the stream)."""
    bulk = OpenSsh.started(conn)
    if bulk is not None:
        atexit.register(bulk.close)  # a plan that is not carried out: the login ends with relocate
    return bulk


def _close(logins: tuple[OpenSsh | None, OpenSsh | None]) -> None:
    for login in logins:
        if login is not None:
            login.close()


def _ready(bulk: OpenSsh | None) -> OpenSsh | None:
    """The login done, or None (then paramiko carries the stream, as before)."""
    return bulk if bulk is not None and bulk.ready() else None


def _relay_openssh(bulk: OpenSsh, command: str, tee: _Tee) -> tuple[int, bytes]:
    """Run `command` on the source through `ssh`, its stdout relayed chunk by chunk into
    `tee` on this thread; (exit status, stderr)."""
    assert bulk.first is not None
    argv = [*bulk.argv, "-o", f"ControlPath={bulk.first.path}", "-o", "ControlMaster=no", "--", bulk.host, command]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, bufsize=0)
        assert proc.stdout is not None
        widen_pipe(proc.stdout)
        fd = proc.stdout.fileno()
        try:
            while chunk := os.read(fd, CHUNK):
                tee.write(chunk)
                if tee.error is not None:
                    break
        finally:
            if tee.error is not None and proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            status = proc.wait()
        err.seek(0)
        return status, err.read()


class HostFilesKind(Kind):
    name = "hostfiles"

    def enabled(self, config: Config) -> bool:
        return bool(_entries(config))

    def gather(self, ctx: Context) -> list[HostInfo]:
        infos = []
        entries = _entries(ctx.config)
        dests = [posixpath.join(ctx.config.root, e["to"]) for e in entries]
        # The target's record first: where it holds no earlier copy (a first move), there is
        # nothing to compare with and the source's tree is not read twice.
        records, trees = read_records(ctx.conn, ctx.config.root, dests) if entries else ({}, {})
        for i, (entry, dest) in enumerate(zip(entries, dests)):
            # No record at all (a first move): this entry will be copied, so the target's
            # `ssh` login starts now, before the source is even reached; measured, the
            # handshakes otherwise ran past the plan and held the stream back ~0.5 s.
            target_login = _openssh(ctx.conn) if not records else None
            with source_connection(entry, ctx.login, _bastions(ctx.config)) as src:
                info = HostInfo(i, str(src.endpoint), list(entry["paths"]), entry["to"])
                rec = records.get(_record_key(entry, info.label)) or {}
                had = rec.get("tar_sha256")
                # What the target holds first (its record, the tree's fingerprint, the local
                # snapshot's tar): when that is not the earlier copy, the source is not read twice.
                found = _held(ctx, info, rec, trees.get(dest)) if had else None
                if found is None:  # a copy, unless a path is missing
                    info.logins = (_openssh(src), target_login or _openssh(ctx.conn))
                cmd, stdin = shell.script(_PROBE, *info.paths)
                for line in src.run(cmd, stdin, timeout=600).stdout.split(b"\0"):
                    if line:
                        state, size, p = line.decode("utf-8", "surrogateescape").split("\t", 2)
                        if state == "ok":
                            info.sizes[p] = int(size or 0)
                        elif state == "stat":
                            info.stat = size if len(size) == 64 else ""
                        else:
                            info.missing.append(p)
                if not info.missing and found is not None and not (info.stat and rec.get("stat_sha256") == info.stat):
                    # An entry changed since that tar was read, or it is too recent to tell. GNU
                    # tar's output is the same bytes for the same files, modes, owners and
                    # mtimes: its hash says whether this copy is still the source's.
                    cmd, stdin = shell.script(_DIGEST, *tar_command(info.paths, entry.get("exclude") or [])[1:])
                    got = src.run(cmd, stdin, timeout=None, check=False)
                    out = got.stdout.decode("ascii", "replace").strip()
                    info.digest = out if got.status == 0 and len(out) == 64 else ""
                    if info.digest != had:
                        found, info.why = None, "the source changed since the last move"
                if not info.missing and found is not None and ctx.checksum:
                    found = _rehashed(ctx, info, found, dest)
                if found is not None:
                    info.landed, info.landed_tar = found
                if info.landed is None and not info.missing and info.logins == (None, None):
                    info.logins = (_openssh(src), _openssh(ctx.conn))
                elif info.missing:  # blocked: no copy will run
                    _close(info.logins)
                    info.logins = (None, None)
            infos.append(info)
        return infos

    def plan(self, ctx: Context, gathered: list[HostInfo]) -> PlanPart:
        part = PlanPart()
        for info in gathered:
            size = sum(info.sizes.values())
            same = info.landed is not None
            part.steps.append(Step(id=_step_id(info), kind=self.name, source=f"{info.label}:{','.join(info.paths)}",
                                   dest=info.to, count=len(info.paths), bytes=size, todo_count=0 if same else len(info.paths),
                                   todo_bytes=0 if same else size, est_seconds=0.0 if same else 1 + size / 50e6,
                                   detail="nothing to do: the target holds this tar (same sha256) from an earlier move, "
                                   "its tree unchanged since" if same
                                   else "tar stream, owners/modes/links/mtimes kept" + (f" ({info.why})" if info.why else ""),
                                   change="" if same else f"replace {info.to} with {len(info.paths)} path(s) from {info.label}"))
            for p in info.missing:
                part.blockers.append(Finding("hosts-missing", f"{info.label}: {p} does not exist (fix source.hosts[{info.index}].paths)"))
        return part

    def apply(self, ctx: Context, gathered: list[HostInfo], step: Step) -> Outcome:
        index = int(step.id.split(":", 2)[1])
        entry = _entries(ctx.config)[index]
        root, conn = ctx.config.root, ctx.conn
        info = next((g for g in gathered if _step_id(g) == step.id), None)
        if info is not None and info.landed is not None and info.landed_tar is not None:
            # Nothing to send; the snapshot being written keeps the same tar and record.
            keep = Path(ctx.snapshot_dir) / info.landed["tar"]
            keep.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(info.landed_tar, keep)  # snapshot tars are never rewritten: share it, no copy
            except OSError:
                shutil.copyfile(info.landed_tar, keep)
            return Outcome(changed=False, manifest=dict(info.landed))
        stage = posixpath.join(root, STAGING, str(index))
        dest = posixpath.join(root, entry["to"])
        copy_path = Path(ctx.snapshot_dir) / "hosts" / f"{index}.tar"
        copy_path.parent.mkdir(parents=True, exist_ok=True)
        outcome = Outcome(changed=True)
        unread: list[dict[str, str]] = []
        allow = ctx.config.allowed_links
        source_ssh, target_ssh = info.logins if info is not None else (None, None)
        tar_c = shell.line(tar_command(entry["paths"], entry.get("exclude") or []))
        try:
            target_ssh, source_ssh = _ready(target_ssh or _openssh(conn)), _ready(source_ssh)
            if source_ssh is not None:
                got, put, sent = self._stream(conn, None, target_ssh, source_ssh, root, stage, allow, tar_c, copy_path)
            else:  # paramiko to the source (a `via:` tunnel, no `ssh` binary, a login `ssh` cannot do)
                with source_connection(entry, ctx.login, _bastions(ctx.config)) as src:
                    got, put, sent = self._stream(conn, src, target_ssh, None, root, stage, allow, tar_c, copy_path)
        finally:
            _close((source_ssh, target_ssh))
        digest, size, entries = sent
        src_status, src_stderr = got
        if src_status == 255:  # ssh's own failure (tar never exits 255): nothing whole to put in place
            lines = src_stderr.decode("utf-8", "replace").strip().splitlines()
            raise TransientError(f"ssh to the source host {step.source} failed: {lines[-1] if lines else 'exit 255'}",
                                 hint="running again starts this copy over")
        src_err = src_stderr.decode("utf-8", "replace").strip().splitlines()
        if put.status != 0:
            unmade, err = _unmade(put.stderr)
            if err or not unmade or b"\x01" not in put.stdout:  # a failure the rest cannot stand without
                raise nolinks.refusal(put.status, put.stderr) or \
                    TargetError(f"tar on the target failed for {step.source}: {err[0] if err else 'exit ' + str(put.status)}")
            # Only device nodes this login cannot make: the rest is whole and goes in place;
            # those are failed items (exit 4), named, until a root login moves them.
            outcome.failed.extend(f"{step.source}: {name}: a device node, which only a root login on the target can make"
                                  for name in unmade[:20])
        if src_status == 1:  # GNU tar: a file changed while being read; the archive is still whole
            outcome.warnings.extend(f"{step.source}: {line}" for line in src_err[:5])
        elif src_status != 0:  # unreadable files: what could be read still moves, the rest is reported
            said = [line for line in src_err if line != _CLOSING] or [f"tar exit {src_status}"]
            outcome.failed.extend(f"{step.source}: {line}" for line in said[:20])
            # Filed in the manifest too: the tar holds only what was read, so the trees compare
            # equal; the checks (the move's own, `relocate verify`) name these until a move
            # copies them (no record is kept, so the next move sends the tree again).
            unread = _unread(said, entry["to"])
        if entries is None:
            entries = listing_from_tar(copy_path)
        damaged = _damaged(entries, put.stdout)
        if damaged:  # staging is left as it is, never put in place
            raise TransientError(f"host files from {step.source} differ on the target from what was sent ({len(damaged)} file(s), "
                                 f"first {damaged[0]}); nothing was put in place", hint="running again starts this copy over")
        cmd, stdin = shell.script(_PROMOTE, stage, dest, nolinks.root_arg(root), nolinks.allow_arg(allow))
        tree = conn.run(cmd, stdin).stdout.decode("ascii", "replace").strip()
        if not outcome.failed and info is not None:
            _record(conn, root, _record_key(entry, info.label), {"tar_sha256": digest, "stat_sha256": info.stat, "tree_sha256": tree})
        outcome.manifest = {"host": step.source, "to": entry["to"], "tar": f"hosts/{index}.tar", "tar_sha256": digest,
                            "bytes": size, "entries": entries, **({"failed": unread} if unread else {})}
        return outcome

    @staticmethod
    def _stream(conn: Connection, src: Connection | None, target_ssh: OpenSsh | None, source_ssh: OpenSsh | None, root: str,
                stage: str, allow: tuple[str, ...], tar_c: str, copy_path: Path) -> tuple[tuple[int, bytes], Any, tuple[str, int, dict[str, list[Any]] | None]]:
        """`tar c` on the source streamed into `tar x` in staging on the target, as
        `ssh src tar c | ssh dst tar x` would (the `ssh` binary at both ends when it can
        log in, else paramiko), with the snapshot copy and every hash on a side thread.
        Returns ((source status, stderr), target Result, (stream sha256, bytes, listing))."""
        # Checked twice: alone first (a clean refusal before the source is read), then again
        # in the very command that extracts, right before it writes (nolinks.py).
        conn.run(shell.line(nolinks.guard(root, [stage], allow)))
        tar_x = nolinks.guarded(root, [stage], shell.line(["sh", "-c", extract_script(), "sh", stage,
                                                            shell.program("extract_hasher")]), allow)
        target: Exec | OpenSshExec = target_ssh.start(tar_x, target_ssh.first) if target_ssh is not None else conn.start(tar_x)
        with open(copy_path, "wb") as copy:
            snap = _Snapshotter(copy)
            tee = _Tee(target, snap)
            try:
                if source_ssh is not None:
                    got = _relay_openssh(source_ssh, tar_c, tee)
                else:
                    assert src is not None
                    r = src.start(tar_c, stdout_sink=tee).wait(timeout=None)  # type: ignore[arg-type]  # _Tee writes like IO[bytes]
                    got = (r.status, r.stderr)
            except BaseException:
                _abort(target)
                snap.finish()
                raise
            sent = snap.finish()
        if tee.error is not None:
            _abort(target)
            raise tee.error if isinstance(tee.error, RelocateError) else TargetError(f"writing host files to the target failed ({tee.error})")
        return got, target.wait(timeout=None), sent

    def verify(self, ctx: Context, manifest: dict[str, Any]) -> list[Check]:
        root_login = login_is_root(ctx.conn)
        run = ctx.run
        checks = []
        for entry in manifest.values():
            dest = posixpath.join(ctx.config.root, entry["to"])
            rows = entry["entries"]
            # The check ending a move: every tree in its manifest was hashed on the target as it
            # landed and matched the stream before it was put in place (this move's apply, or the
            # earlier move whose record let this one skip it), so sizes stand for contents here.
            # `relocate verify`, `move --checksum` and a manifest without sizes hash again.
            hashed = run is None or run.opts.checksum or any(len(r) < 7 for r in rows.values())
            bad = _differences(rows, target_listing(ctx.conn, dest, hashes=hashed), hashed=hashed, root_login=root_login)
            if bad and ctx.snapshot_dir is not None:
                # The target no longer holds this copy: the next move sends it again, whatever
                # the target's record and its tree's fingerprint say (README, "Snapshots,
                # resume and idempotence"; the analogue of an object leaving the journal).
                with contextlib.suppress(OSError):
                    _differs_mark(Path(ctx.snapshot_dir), entry).write_text(bad[0] + "\n", encoding="utf-8")
            detail = f"{len(rows)} entries" + ("" if hashed else ", contents hashed on arrival") + \
                (f"; {len(bad)} differ (as moved -> on the target): {differences_text(bad)}" if bad else "")
            # What the source login could not read never reached the tar, so it is no
            # difference above: named as failed items (execute/verify.py lists them), and
            # never an OK while they are not there.
            unread = entry.get("failed") or []
            if unread:
                detail += f"; {len(unread)} never moved (the source login could not read them; listed as failed)"
            checks.append(Check(f"host files {entry['host']} -> {entry['to']}", not bad and not unread, detail))
        return checks


# How many differences a check's detail names one by one before "and N more".
SHOWN_DIFFERENCES = 10
_TYPE_NAMES = {"f": "file", "d": "directory", "l": "symlink", "h": "hard link", "p": "fifo", "c": "character device",
               "b": "block device", "s": "socket", "o": "other"}


def _when(epoch: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(epoch)


def _differences(rows: dict[str, list[Any]], on_target: dict[str, list[Any]], *, hashed: bool, root_login: bool) -> list[str]:
    """Where the target's listing (target_listing) is not the delivered tree's manifest rows,
    a line per entry saying in words what differs, "was -> is now on the target": missing,
    extra (on the target, not in the copy moved), type, mode, owner, link target, size,
    content (by sha256 when `hashed`, else by size), mtime. Owners only where the login is
    root (tar's rule: an ordinary user cannot give files away). Ordered by weight, so the
    first named are what matters (a removed file also moves its directory's mtime): what
    is missing, then changed content (type, size, sha256, link target), then extra
    entries, then modes and owners, then mtimes alone; the tree's order within each."""
    found: list[tuple[int, str]] = []  # (rank, line)
    for path, row in rows.items():
        kind, mode, mtime, owner, link, digest = row[:6]
        got = on_target.get(path)
        if got is None:
            found.append((0, f"{_shown(path)}: missing"))
            continue
        if kind == "h":  # a hard link: its content was checked under the name it links to
            linked = (rows.get(link) or ["f"])[0]  # manifests before links were kept: a file's
            if got[0] != linked:
                found.append((1, f"{_shown(path)}: type {_TYPE_NAMES.get(linked, linked)} (a hard link) -> "
                                 f"{_TYPE_NAMES.get(got[0], got[0])}"))
            continue
        what: list[str] = []
        rank = 4
        if got[0] != kind:
            what.append(f"type {_TYPE_NAMES.get(kind, kind)} -> {_TYPE_NAMES.get(got[0], got[0])}")
            rank = 1
        else:
            if kind == "f":
                size = row[6] if len(row) > 6 else None
                if size is not None and size != got[6]:
                    what.append(f"size {size} -> {got[6]} bytes")
                    rank = 1
                if hashed and digest != got[5]:
                    what.append(f"content (sha256 {str(digest)[:12]} -> {str(got[5])[:12] if got[5] else 'unreadable'})")
                    rank = 1
            if link != got[4]:
                what.append(f"link target {_shown(str(link))} -> {_shown(str(got[4]))}")
                rank = 1
        if mode != got[1]:
            what.append(f"mode {int(mode):04o} -> {int(got[1]):04o}")
            rank = min(rank, 3)
        if root_login and owner != got[3]:
            what.append(f"owner {owner} -> {got[3]}")
            rank = min(rank, 3)
        if kind != "l" and got[0] == kind and mtime != got[2]:
            what.append(f"mtime {_when(mtime)} -> {_when(got[2])}")
        if what:
            found.append((rank, f"{_shown(path)}: {', '.join(what)}"))
    # Extra: on the target, not in the copy moved (the tree replaces `to:` whole). The
    # directories above the moved paths (`tmp/` of `/tmp/x/etc`) are tar's, not extra;
    # sockets are never carried, so never compared (README, "Host files").
    kept = {posixpath.normpath(p) for p in rows}
    above = {posixpath.dirname(p) for p in kept}
    while above - kept:
        kept |= above
        above = {posixpath.dirname(p) for p in above if p not in ("", ".", "/")}
    for path, got in sorted(on_target.items()):
        if got[0] != "s" and posixpath.normpath(path) not in kept:
            found.append((2, f"{_shown(path)}: extra ({_TYPE_NAMES.get(got[0], got[0])} not in the copy moved)"))
    found.sort(key=lambda item: item[0])  # stable: the tree's order within a rank
    return [line for _, line in found]


def differences_text(bad: list[str], limit: int = SHOWN_DIFFERENCES) -> str:
    """The differences for a check's detail: the first `limit` in words, then how many more."""
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return "; ".join(bad[:limit]) + more


def _abort(target: Exec | OpenSshExec) -> None:
    """Stop the target's `tar x` mid-stream: staging is left, never the destination."""
    if isinstance(target, OpenSshExec):
        target.kill()
    else:
        target.chan.close()


def _step_id(info: HostInfo) -> str:
    return f"hosts:{info.index}:{info.label}"


def _record(conn: Connection, root: str, key: str, record: dict[str, str]) -> None:
    """Note on the target which copy now sits at this entry's destination (under the move's
    lock): the tar's sha256, the source's stat fingerprint taken before the tar was read (if
    anything changed since, the next fingerprint differs and the next run compares the tar's
    own sha256 instead), and the fingerprint of the tree as it was put in place."""
    from relocate.targets import files

    found = files.read_file(conn, posixpath.join(root, RECORD))
    try:
        records = json.loads(found[0]) if found else {}
    except ValueError:
        records = {}
    records = records if isinstance(records, dict) else {}
    records[key] = record
    files.write_file_atomic(conn, posixpath.join(root, RECORD), json.dumps(records, indent=1).encode(), mode=0o644)


# GNU tar's message for a device node an ordinary user may not make (mknod needs root),
# and its closing line after any error.
_MKNOD = ": Cannot mknod: Operation not permitted"
_CLOSING = "tar: Exiting with failure status due to previous errors"


def _unmade(stderr: bytes) -> tuple[list[str], list[str]]:
    """The target's `tar x` messages: (the members it could not make because only root may,
    every other error line)."""
    unmade, other = [], []
    for line in stderr.decode("utf-8", "replace").strip().splitlines():
        if line.startswith("tar: ") and line.endswith(_MKNOD):
            unmade.append(line[len("tar: "):-len(_MKNOD)])
        elif line != _CLOSING:
            other.append(line)
    return unmade, other


def _unread(lines: list[str], to: str) -> list[dict[str, str]]:
    """The source's `tar c` errors as failed items, {path (on the target, under `to`), error}.
    GNU tar names the member first (`tar: etc/app/key: Cannot open: Permission denied`,
    relative to / as tar_command reads it); when no line has that shape, the entry's `to`
    stands for what is missing, with tar's first line."""
    items = []
    for line in lines:
        name, sep, why = line.removeprefix("tar: ").partition(": ")
        if sep and why.startswith("Cannot "):
            items.append({"path": posixpath.join(to, name), "error": f"the source login could not read it ({why})"})
    return items or [{"path": to, "error": f"tar on the source failed: {lines[0]}"}]


def _damaged(entries: dict[str, list[Any]], hashed: bytes) -> list[str]:
    """The regular files whose sha256 on the target (_EXTRACT's output) is not the one the
    stream carried: "path: missing" or "path: differs"."""
    from relocate.targets.files import parse_hashes

    on_target = parse_hashes(hashed)  # keyed by normalised path ("./etc/x" -> "etc/x")
    bad = []
    for path, row in entries.items():
        if row[0] == "f" and on_target.get(posixpath.normpath(path)) != row[5]:
            bad.append(f"{_shown(path)}: {'missing' if posixpath.normpath(path) not in on_target else 'differs'}")
    return bad


def target_listing(conn: Connection, directory: str, hashes: bool = True) -> dict[str, list[Any]]:
    """{path: [type, mode, mtime, owner, link, sha256 (None unless `hashes`), size]} below `directory`."""
    from relocate.targets import files

    cmd, stdin = shell.script(_LIST, directory)
    listing = conn.start(cmd)  # the metadata listing runs beside the hashing, not after it
    listing.write(stdin)
    digests = files.hash_tree(conn, directory) if hashes else {}
    got = listing.wait(timeout=None)
    if got.status != 0:
        raise TargetError(f"listing {directory} on the target failed: {got.stderr.decode('utf-8', 'replace').strip()[-200:]}")
    out: dict[str, list[Any]] = {}
    for rec in got.stdout.split(b"\0"):
        if rec:
            kind, mode, mtime, owner, link, size, path = rec.decode("utf-8", "surrogateescape").split("\t", 6)
            out[path] = [kind, int(mode, 8), int(float(mtime)), owner, link, digests.get(path), int(size)]
    return out


KIND_CLASS = HostFilesKind
