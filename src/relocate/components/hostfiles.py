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
import posixpath
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

from relocate.components import Check, Component, Context, Outcome, PlanPart
from relocate.config import Config, SshSpec, ssh_spec
from relocate.errors import RelocateError, TargetError
from relocate.plan.model import Finding, Step
from relocate.targets import nolinks, shell
from relocate.targets.runtimes import login_is_root
from relocate.targets.ssh import Connection, Exec

STAGING = ".relocate/staging/hosts"

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


class HostFilesComponent(Component):
    name = "hostfiles"

    def enabled(self, config: Config) -> bool:
        return bool(_entries(config))

    def gather(self, ctx: Context) -> list[HostInfo]:
        infos = []
        for i, entry in enumerate(_entries(ctx.config)):
            with source_connection(entry, ctx.accept_new_host_key, _bastions(ctx.config)) as src:
                info = HostInfo(i, str(src.endpoint), list(entry["paths"]), entry["to"])
                cmd, stdin = shell.script(_PROBE, *info.paths)
                for rec in src.run(cmd, stdin, timeout=600).stdout.split(b"\0"):
                    if rec:
                        state, size, p = rec.decode("utf-8", "surrogateescape").split("\t", 2)
                        if state == "ok":
                            info.sizes[p] = int(size or 0)
                        else:
                            info.missing.append(p)
            infos.append(info)
        return infos

    def plan(self, ctx: Context, gathered: list[HostInfo]) -> PlanPart:
        part = PlanPart()
        for info in gathered:
            size = sum(info.sizes.values())
            part.steps.append(Step(id=f"hosts:{info.index}:{info.label}", kind=self.name, source=f"{info.label}:{','.join(info.paths)}",
                                   dest=info.to, count=len(info.paths), bytes=size, todo_count=len(info.paths), todo_bytes=size,
                                   est_seconds=1 + size / 50e6, detail="tar stream, owners/modes/links/mtimes kept"))
            for p in info.missing:
                part.blockers.append(Finding("hosts-missing", f"{info.label}: {p} does not exist (fix source.hosts[{info.index}].paths)"))
        return part

    def execute(self, ctx: Context, gathered: list[HostInfo], step: Step) -> Outcome:
        index = int(step.id.split(":", 2)[1])
        entry = _entries(ctx.config)[index]
        root, conn = ctx.config.root, ctx.conn
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
                got = src.start(shell.line(tar_command(entry["paths"], entry.get("exclude") or [])), stdout_sink=tee).wait(timeout=None)
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


COMPONENT = HostFilesComponent
