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

import hashlib
import json
import posixpath
import shutil
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

from relocate.kinds import Check, Kind, Context, Outcome, PlanPart
from relocate.config import Config, SshSpec, ssh_spec
from relocate.errors import RelocateError, TargetError
from relocate.plan.model import Finding, Step
from relocate.targets import nolinks, shell
from relocate.targets.runtimes import login_is_root
from relocate.targets.ssh import Connection, Exec

STAGING = ".relocate/staging/hosts"
# What earlier moves put in place, per source entry: the sha256 of the tar stream that
# landed (README, "Snapshots, resume and idempotence"). Lets a rerun see "nothing to do".
RECORD = ".relocate/hosts.json"

# The same tar the move would stream, hashed on the source: only the digest travels.
_DIGEST = r"""
set -e
tar "$@" | sha256sum | cut -c1-64
"""

# The record of earlier moves, then which destinations still exist (one command).
_ON_TARGET = r"""
record=$1; shift
cat -- "$record" 2>/dev/null || true
printf '\0'
for d in "$@"; do if [ -d "$d" ]; then printf '%s\0' "$d"; fi; done
"""

# Sizes and presence, read-only; `du -s --apparent-size` is what the tar will carry.
_PROBE = r"""
for p in "$@"; do
  if [ -e "$p" ] || [ -L "$p" ]; then printf 'ok\t%s\t%s\0' "$(du -s -B1 --apparent-size -- "$p" | cut -f1)" "$p"
  else printf 'missing\t0\t%s\0' "$p"; fi
done
"""

# Move the staged tree into place: the old tree is set aside first, dropped last. Never
# through a symlinked directory under the root ($3, allowed links $4; nolinks.py), and
# a link at `to:` itself is refused: the tree replaces `to:` whole, link included.
_PROMOTE = nolinks.NOLINKS_FN + r"""
set -e
stage=$1 dest=$2
relocate_nolinks "$3" "$4" "$stage" "$(dirname -- "$dest")" || exit 86
if [ -L "$dest" ]; then printf 'relocate: symlink: %s -> %s\n' "$dest" "$(readlink -- "$dest")" >&2; exit 86; fi
mkdir -p -- "$(dirname -- "$dest")"
rm -rf -- "$dest.relocate-old"
if [ -e "$dest" ]; then mv -T -- "$dest" "$dest.relocate-old"; fi
mv -T -- "$stage" "$dest"
rm -rf -- "$dest.relocate-old"
"""

# What verify compares: type, mode, mtime, link target, owner, path (NUL-separated).
_LIST = r"""
[ -d "$1" ] || exit 0
cd "$1" && find . -mindepth 1 -printf '%y\t%m\t%T@\t%u:%g\t%l\t%P\0'
"""


@dataclass
class HostInfo:
    index: int
    label: str  # user@host:port, for messages
    paths: list[str]
    to: str
    sizes: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    digest: str = ""  # sha256 of the tar stream the move would send, computed on the source
    # the manifest of an earlier move that sent exactly this tar, when the target still
    # has it and the local snapshot still holds its tar: then there is nothing to do
    landed: dict[str, Any] | None = None
    landed_tar: Path | None = None


def _entries(config: Config) -> list[dict[str, Any]]:
    return list((config.data.get("source") or {}).get("hosts") or [])


def via_spec(value: str | dict[str, Any], bastions: dict[str, Any] | None) -> SshSpec:
    """`via:` names an entry of source.bastions (shared with databases) or is itself an SSH address."""
    if isinstance(value, str) and value in (bastions or {}):
        return ssh_spec((bastions or {})[value])
    return ssh_spec(value)


def _bastions(config: Config) -> dict[str, Any] | None:
    return (config.data.get("source") or {}).get("bastions")


@contextmanager
def source_connection(entry: dict[str, Any], accept_new: bool, bastions: dict[str, Any] | None = None) -> Iterator[Connection]:
    """An SSH session to the source host, through its bastion when `via:` names one."""
    bastion = None
    if entry.get("via"):
        bastion = Connection(via_spec(entry["via"], bastions), accept_new_host_key=accept_new)
        bastion.connect()
    try:
        conn = Connection(ssh_spec(entry["ssh"]), accept_new_host_key=accept_new, via=bastion)
        conn.connect()
        try:
            yield conn
        finally:
            conn.close()
    finally:
        if bastion is not None:
            bastion.close()


def _record_key(entry: dict[str, Any], label: str) -> str:
    """Which source.hosts entry a record belongs to: where from, what, where to."""
    return json.dumps([label, list(entry["paths"]), entry["to"], list(entry.get("exclude") or [])])


def read_records(conn: Connection, root: str, dests: list[str]) -> tuple[dict[str, Any], set[str]]:
    """(records of earlier moves, the destinations among `dests` that exist), in one command."""
    cmd, stdin = shell.script(_ON_TARGET, posixpath.join(root, RECORD), *dests)
    raw, _, rest = conn.run(cmd, stdin, timeout=120).stdout.partition(b"\0")
    try:
        records = json.loads(raw) if raw.strip() else {}
    except ValueError:
        records = {}  # a damaged record only costs a copy
    present = {d.decode("utf-8", "surrogateescape") for d in rest.split(b"\0") if d}
    return (records if isinstance(records, dict) else {}), present


def _earlier(snapshot_dir: Path, step_id: str, digest: str) -> tuple[dict[str, Any], Path] | None:
    """The newest local snapshot's record of this step, if it sent this very tar."""
    from relocate.snapshot import store

    snap = store.latest(snapshot_dir)
    if snap is None:
        return None
    try:
        rec = ((snap.manifest().get("components") or {}).get("hostfiles") or {}).get(step_id)
    except RelocateError:
        return None
    if not rec or rec.get("tar_sha256") != digest or not (snap.path / rec.get("tar", "")).is_file():
        return None
    return rec, snap.path / rec["tar"]


def tar_command(paths: list[str], excludes: list[str]) -> list[str]:
    """GNU tar on the source: paths relative to / so they land as root/<to>/etc/...;
    symlinks are stored as links (no -h), owners and mtimes in the headers."""
    argv = ["tar", "-c", "-f", "-", "-C", "/"]
    argv += [f"--exclude={pat}" for pat in excludes]
    return [*argv, "--", *(p.lstrip("/") or "." for p in paths)]


class _Tee:
    """stdout sink of the source's tar: into the target's tar and the snapshot file.

    It runs on the channel's reader thread, so it records a failure instead of raising
    (an exception there would vanish with the thread) and keeps draining."""

    def __init__(self, target: Exec, copy: IO[bytes]) -> None:
        self.target, self.copy = target, copy
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                self.target.write(data)
                self.copy.write(data)
                self.sha.update(data)
                self.bytes += len(data)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller thread
                self.error = exc
        return len(data)


def listing_from_tar(path: Path) -> dict[str, list[Any]]:
    """{path: [type, mode, mtime, owner, linkname, sha256]} read from the tar (never extracted)."""
    out: dict[str, list[Any]] = {}
    with tarfile.open(path, "r|") as tar:
        for m in tar:
            kind = "d" if m.isdir() else "l" if m.issym() else "f" if m.isfile() else "h" if m.islnk() else "o"
            digest = None
            if m.isfile():
                fh = tar.extractfile(m)
                h = hashlib.sha256()
                while chunk := fh.read(1 << 20):  # type: ignore[union-attr]
                    h.update(chunk)
                digest = h.hexdigest()
            out[m.name.rstrip("/")] = [kind, m.mode & 0o7777, int(m.mtime), f"{m.uname}:{m.gname}", m.linkname if m.issym() else "", digest]
    return out


class HostFilesKind(Kind):
    name = "hostfiles"

    def enabled(self, config: Config) -> bool:
        return bool(_entries(config))

    def gather(self, ctx: Context) -> list[HostInfo]:
        infos = []
        entries = _entries(ctx.config)
        for i, entry in enumerate(entries):
            with source_connection(entry, ctx.accept_new_host_key, _bastions(ctx.config)) as src:
                info = HostInfo(i, str(src.endpoint), list(entry["paths"]), entry["to"])
                cmd, stdin = shell.script(_PROBE, *info.paths)
                for line in src.run(cmd, stdin, timeout=600).stdout.split(b"\0"):
                    if line:
                        state, size, p = line.decode("utf-8", "surrogateescape").split("\t", 2)
                        if state == "ok":
                            info.sizes[p] = int(size or 0)
                        else:
                            info.missing.append(p)
                if not info.missing:
                    # GNU tar's output is the same bytes for the same files, modes, owners and
                    # mtimes: its hash says whether the target already holds this copy.
                    cmd, stdin = shell.script(_DIGEST, *tar_command(info.paths, entry.get("exclude") or [])[1:])
                    got = src.run(cmd, stdin, timeout=None, check=False)
                    out = got.stdout.decode("ascii", "replace").strip()
                    info.digest = out if got.status == 0 and len(out) == 64 else ""
            infos.append(info)
        dests = [posixpath.join(ctx.config.root, e["to"]) for e in entries]
        records, present = read_records(ctx.conn, ctx.config.root, dests) if entries else ({}, set())
        for info, entry, dest in zip(infos, entries, dests):
            rec = records.get(_record_key(entry, info.label)) or {}
            if info.digest and rec.get("tar_sha256") == info.digest and dest in present:
                found = _earlier(ctx.config.snapshot_dir, _step_id(info), info.digest)
                if found is not None:
                    info.landed, info.landed_tar = found
        return infos

    def plan(self, ctx: Context, gathered: list[HostInfo]) -> PlanPart:
        part = PlanPart()
        for info in gathered:
            size = sum(info.sizes.values())
            same = info.landed is not None
            part.steps.append(Step(id=_step_id(info), kind=self.name, source=f"{info.label}:{','.join(info.paths)}",
                                   dest=info.to, count=len(info.paths), bytes=size, todo_count=0 if same else len(info.paths),
                                   todo_bytes=0 if same else size, est_seconds=0.0 if same else 1 + size / 50e6,
                                   detail="nothing to do: the target holds this tar (same sha256) from an earlier move" if same
                                   else "tar stream, owners/modes/links/mtimes kept",
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
            shutil.copyfile(info.landed_tar, keep)
            return Outcome(changed=False, manifest=dict(info.landed))
        stage = posixpath.join(root, STAGING, str(index))
        dest = posixpath.join(root, entry["to"])
        copy_path = Path(ctx.snapshot_dir) / "hosts" / f"{index}.tar"
        copy_path.parent.mkdir(parents=True, exist_ok=True)
        outcome = Outcome(changed=True)
        allow = ctx.config.allowed_links
        # Checked twice: alone first (a clean refusal before the source is read), then again
        # in the very command that extracts, right before it writes (nolinks.py).
        conn.run(shell.line(nolinks.guard(root, [stage], allow)))
        target = conn.start(nolinks.guarded(root, [stage], shell.all_of(
            ["rm", "-rf", "--", stage], ["mkdir", "-p", "--", stage], ["tar", "-x", "-p", "-f", "-", "-C", stage]), allow))
        with source_connection(entry, ctx.accept_new_host_key, _bastions(ctx.config)) as src, open(copy_path, "wb") as copy:
            tee = _Tee(target, copy)
            try:
                got = src.start(shell.line(tar_command(entry["paths"], entry.get("exclude") or [])), stdout_sink=tee).wait(timeout=None)  # type: ignore[arg-type]  # _Tee writes like IO[bytes]
            except BaseException:
                target.chan.close()
                raise
        if tee.error is not None:
            target.chan.close()
            raise tee.error if isinstance(tee.error, RelocateError) else TargetError(f"writing host files to the target failed ({tee.error})")
        put = target.wait(timeout=None)
        src_err = got.stderr.decode("utf-8", "replace").strip().splitlines()
        if put.status != 0:
            err = put.stderr.decode("utf-8", "replace").strip().splitlines()
            raise nolinks.refusal(put.status, put.stderr) or TargetError(f"tar on the target failed for {step.source}: {err[-1] if err else 'exit ' + str(put.status)}")
        if got.status == 1:  # GNU tar: a file changed while being read; the archive is still whole
            outcome.warnings.extend(f"{step.source}: {line}" for line in src_err[:5])
        elif got.status != 0:  # unreadable files: what could be read still moves, the rest is reported
            outcome.failed.extend(f"{step.source}: {line}" for line in (src_err or [f"tar exit {got.status}"])[:20])
        cmd, stdin = shell.script(_PROMOTE, stage, dest, nolinks.root_arg(root), nolinks.allow_arg(allow))
        conn.run(cmd, stdin)
        if not outcome.failed and info is not None:
            _record(conn, root, _record_key(entry, info.label), tee.sha.hexdigest())
        outcome.manifest = {"host": step.source, "to": entry["to"], "tar": f"hosts/{index}.tar", "tar_sha256": tee.sha.hexdigest(),
                            "bytes": tee.bytes, "entries": listing_from_tar(copy_path)}
        return outcome

    def verify(self, ctx: Context, manifest: dict[str, Any]) -> list[Check]:
        root_login = login_is_root(ctx.conn)
        checks = []
        for entry in manifest.values():
            dest = posixpath.join(ctx.config.root, entry["to"])
            on_target = target_listing(ctx.conn, dest)
            bad: list[str] = []
            for path, (kind, mode, mtime, owner, link, digest) in entry["entries"].items():
                got = on_target.get(path)
                if got is None:
                    bad.append(f"{path}: missing")
                    continue
                if kind == "h":  # a hard link: its content was checked under the name it links to
                    if got[0] != "f":
                        bad.append(f"{path}: not a regular file")
                    continue
                wanted = [kind, mode, link, digest] + ([mtime] if kind != "l" else []) + ([owner] if root_login else [])
                have = [got[0], got[1], got[4], got[5]] + ([got[2]] if kind != "l" else []) + ([got[3]] if root_login else [])
                if wanted != have:
                    bad.append(f"{path}: {have} != {wanted}")
            detail = f"{len(entry['entries'])} entries" + (f"; {len(bad)} differ, first {bad[0]}" if bad else "")
            checks.append(Check(f"host files {entry['host']} -> {entry['to']}", not bad, detail))
        return checks


def _step_id(info: HostInfo) -> str:
    return f"hosts:{info.index}:{info.label}"


def _record(conn: Connection, root: str, key: str, digest: str) -> None:
    """Note on the target which tar now sits at this entry's destination (under the move's lock)."""
    from relocate.targets import files

    found = files.read_file(conn, posixpath.join(root, RECORD))
    try:
        records = json.loads(found[0]) if found else {}
    except ValueError:
        records = {}
    records = records if isinstance(records, dict) else {}
    records[key] = {"tar_sha256": digest}
    files.write_file_atomic(conn, posixpath.join(root, RECORD), json.dumps(records, indent=1).encode(), mode=0o644)


def target_listing(conn: Connection, directory: str) -> dict[str, list[Any]]:
    from relocate.targets import files

    cmd, stdin = shell.script(_LIST, directory)
    hashes = files.hash_tree(conn, directory)
    out: dict[str, list[Any]] = {}
    for rec in conn.run(cmd, stdin, timeout=None).stdout.split(b"\0"):
        if rec:
            kind, mode, mtime, owner, link, path = rec.decode("utf-8", "surrogateescape").split("\t", 5)
            out[path] = [kind, int(mode, 8), int(float(mtime)), owner, link, hashes.get(path)]
    return out


KIND_CLASS = HostFilesKind
