"""Deploy: upload a release, switch `current`, start it, prove it answers, or roll back.

    releases/<id>.partial  <- tar stream of deploy.release (a local dir or tarball)
    releases/<id>          <- renamed once whole; ids are "<UTC time>-<content hash>"
    stop old -> switch current (atomic) -> start -> health check through an SSH tunnel
    healthy: prune to keep_releases        unhealthy: switch back, restart, report logs

The same release content already live and healthy is "nothing to do".
"""

from __future__ import annotations

import bz2
import calendar
import gzip
import hashlib
import lzma
import os
import posixpath
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from relocate.kinds import Check, Kind, Context, Outcome, PlanPart
from relocate.config import Config
from relocate.errors import ConfigError, TargetError
from relocate.plan.model import Finding, Step
from relocate.targets import nolinks, ports, releases, shell
from relocate.targets.health import wait_healthy
from relocate.targets.runtimes import DeploySettings, Runtime, login_is_root, runtime_for
from relocate.ssh.connection import Connection

CHUNK = 1 << 20
LOG_LINES = 20


@dataclass(frozen=True)
class Deploy:
    settings: DeploySettings
    release_path: Path
    health_url: str | None
    health_timeout: float
    keep: int


def settings(config: Config) -> Deploy:
    """deploy: with the cross-key rules the schema cannot say (one clear line each)."""
    d = config.data.get("deploy") or {}
    src = config.path.name
    rt = d["runtime"]

    def need(key: str, why: str) -> None:
        if not d.get(key):
            raise ConfigError(f"{src}: deploy.{key}: required {why}")

    need("release", "(a local directory or .tar/.tar.gz with the app's build, relative to relocate.yaml)")
    if rt == "systemd":
        need("command", "for runtime systemd (the app's foreground command, e.g. ./bin/server --port 8080)")
    elif rt == "command":
        if not d.get("command") and not d.get("start"):
            raise ConfigError(f"{src}: deploy: runtime command needs `command:` (relocate runs and supervises it) or your own `start:`/`stop:`")
        if d.get("start") and not d.get("stop"):
            raise ConfigError(f"{src}: deploy.stop: required with deploy.start (relocate must be able to stop a release to roll back)")
    for key in ("start", "stop", "status", "log_file") if rt != "command" else ():
        if d.get(key):
            raise ConfigError(f"{src}: deploy.{key}: only for runtime command")
    if d.get("compose_file") and rt != "compose":
        raise ConfigError(f"{src}: deploy.compose_file: only for runtime compose")
    release = Path(os.path.expanduser(d["release"]))
    release = release if release.is_absolute() else config.path.resolve().parent / release
    env_file = d.get("env_file") or (config.env_files[0] if config.env_files else None)
    s = DeploySettings(
        runtime=rt, root=config.root, service=d.get("service") or _service(config.app.name),
        command=d.get("command"), start=d.get("start"), stop=d.get("stop"), status=d.get("status"),
        compose_file=d.get("compose_file") or "compose.yaml", env_file=env_file,
        log_file=d.get("log_file") or f"shared/log/{_service(config.app.name)}.log", user=config.ssh.user,
        allow=tuple(config.allowed_links),
    )
    health = d.get("health") or {}
    return Deploy(s, release, health.get("url"), float(health.get("timeout_s") or 60.0), int(d.get("keep_releases") or 5))


def _service(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "app"


# --- the release as one tar stream (deterministic, so its hash names the content)

def _open_release(path: Path) -> IO[bytes]:
    """A readable tar stream of the release: a directory is archived in name order;
    a tarball is decompressed locally (tar on the target then needs no flags)."""
    if path.is_dir():
        buf = tempfile.TemporaryFile()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for p in sorted(path.rglob("*")):
                tar.add(p, arcname=str(p.relative_to(path)), recursive=False)
        buf.seek(0)
        return buf
    if not path.is_file():
        raise ConfigError(f"deploy.release: {path}: no such directory or tarball")
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        # GzipFile is a binary file at run time; typeshed just does not derive it from IO[bytes] (BZ2File, LZMAFile are)
        return cast(IO[bytes], gzip.open(path, "rb"))
    if name.endswith((".tar.xz", ".txz")):
        return lzma.open(path, "rb")
    if name.endswith((".tar.bz2", ".tbz2")):
        return bz2.open(path, "rb")
    if name.endswith(".tar"):
        return open(path, "rb")
    raise ConfigError(f"deploy.release: {path}: expected a directory, .tar, .tar.gz, .tar.xz or .tar.bz2")


def release_digest(path: Path) -> tuple[str, int]:
    """(sha256 naming the release content, bytes). A directory hashes names and
    contents, not mtimes, so rebuilding the same files is the same release."""
    h, n = hashlib.sha256(), 0
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            if p.is_symlink():
                h.update(b"L" + os.readlink(p).encode())
            elif p.is_file():
                data = p.read_bytes()
                h.update(hashlib.sha256(data).digest() + bytes([p.stat().st_mode & 0o111 and 1]))
                n += len(data)
        return h.hexdigest(), n
    with _open_release(path) as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


# Unpack into `.partial`, rename it into place once whole; a failed unpack or rename
# removes the `.partial` (nothing half-written is left behind). $1 .partial, $2 final, $3 shared.
_UNPACK = r"""
part=$1 final=$2 shared=$3
rm -rf -- "$part" && mkdir -p -- "$part" || exit 1
tar -x -f - -C "$part" || { s=$?; rm -rf -- "$part"; exit "$s"; }
{ mkdir -p -- "$shared" && mv -T -- "$part" "$final"; } || { s=$?; rm -rf -- "$part"; exit "$s"; }
"""


def tar_reason(stderr: bytes) -> str:
    """The line of tar's stderr that says what went wrong: the first real error, not
    "Exiting with failure status" nor a "Removing leading ..." note when anything else
    was said; the count of further lines after it."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    real = [ln for ln in lines if "Exiting with failure status" not in ln]
    errors = [ln for ln in real if "Removing leading" not in ln] or real
    if not errors:
        return lines[-1] if lines else ""
    more = len(errors) - 1
    return errors[0] + (f" (and {more} more error line(s))" if more else "")


def upload(conn: Connection, root: str, release_id: str, path: Path, allow: tuple[str, ...] = ()) -> None:
    """Stream the release into releases/<id>.partial, then rename it into place; a
    failed upload leaves no `.partial` behind (removed on the target, or by a last
    command when the stream itself broke)."""
    final = posixpath.join(releases.releases_dir(root), release_id)
    part = final + ".partial"
    shared = posixpath.join(root, "shared")
    # Never through a symlinked releases/, shared/ or release dir (nolinks.py): checked
    # alone first for a clean refusal, then in the very command that writes.
    conn.run(shell.line(nolinks.guard(root, [part, final, shared], allow)))
    proc = conn.start(nolinks.guarded(root, [part, final, shared], allow=allow,
                                      command=shell.line(["sh", "-c", _UNPACK, "sh", part, final, shared])))
    try:
        with _open_release(path) as fh:
            while chunk := fh.read(CHUNK):
                proc.write(chunk)
    except BaseException:
        proc.chan.close()
        try:  # best effort: the connection may be what failed
            conn.run(nolinks.guarded(root, [part], shell.line(["rm", "-rf", "--", part]), allow=allow), check=False, timeout=60)
        except Exception:
            pass
        raise
    res = proc.wait(600)
    if res.status != 0:
        refused = nolinks.refusal(res.status, res.stderr)
        if refused:
            raise refused
        reason = tar_reason(res.stderr) or f"exit {res.status}"
        raise TargetError(f"uploading release {release_id} failed, nothing was kept on the target: {reason}",
                          hint="check deploy.release: the target's tar refused it" if b"tar:" in res.stderr else None)


@dataclass
class Activation:
    healthy: bool
    seen: str
    logs: list[str]
    step: str = "health check"  # the step that failed, when not healthy


# How long a stopped release may take to let go of the health port (systemd and
# compose stop asynchronously; relocate's own `command` stop waits for the group).
PORT_FREE_S = 15.0


def activate(conn: Connection, runtime: Runtime, dep: Deploy, release_id: str, previous: str | None) -> Activation:
    """Stop what runs, point current at `release_id`, start it, and prove it answers.

    When the health URL is the target's own (127.0.0.1, localhost), nothing may listen
    on its port once the old release is stopped, and after the start the listener must
    be the new release's (runtime.owner_problem): otherwise a release that could not
    bind would pass its health check against the old process. Any step that fails
    ends the activation unhealthy, naming the step; the caller rolls back."""
    port = ports.local_port(dep.health_url)
    step = "stop the running release"
    try:
        if previous is not None:
            runtime.stop(conn)
        if port is not None:
            step = f"free port {port}"
            # nothing was stopped on a first deploy: one look, no waiting for a squatter to leave
            found = ports.wait_free(conn, port, PORT_FREE_S if previous is not None else 0)
            if found.held:
                return Activation(False, f"port {port} is still {found.describe()} after stopping "
                                         f"{previous or 'nothing (no release ran)'}: not starting {release_id} beside it", [], step)
        step = "switch current"
        releases.switch(conn, dep.settings.root, release_id)
        step = "install"
        runtime.install(conn, release_id)
        step = "start"
        runtime.start(conn, release_id)
    except TargetError as exc:
        return Activation(False, f"{step} failed: {exc.message}", runtime.logs(conn, LOG_LINES) if step == "start" else [], step)
    if not dep.health_url:
        return Activation(True, "started (no health check configured)", [])
    # the app's process gone (command runtime): no point waiting out timeout_s
    ok, seen = wait_healthy(conn, dep.health_url, dep.health_timeout, gone=lambda: runtime.exited(conn))
    if ok and port is not None:
        problem = runtime.owner_problem(conn, ports.holders(conn, port))
        if problem:
            ok, seen = False, f"{seen}, but {problem}"
    return Activation(ok, seen, [] if ok else runtime.logs(conn, LOG_LINES))


@dataclass
class RollbackResult:
    from_release: str | None
    to_release: str
    healthy: bool
    seen: str
    logs: list[str]


def rollback_step(config: Config, conn: Connection, to: str | None = None) -> Step:
    """`rollback` as a one-step plan: from the current release to the one before it (or
    `to`), with the change the gate lists. Read-only."""
    settings(config)
    root = config.root
    have = releases.list_releases(conn, root)
    current = releases.current_release(conn, root)
    target = to or releases.previous_of(have, current)
    if target is None or target not in have:
        if to:
            why = f"release {to} is not on the target" + (" (failed releases are never rolled back to)" if to.endswith(".failed") else "")
        elif current is None:
            why = "no release is on the target" if not have else "no release before the newest"
        else:
            why = f"no release before {current}"
        known = ", ".join(have) or "none (failed ones aside)"
        raise ConfigError(f"nothing to roll back to: {why} (releases: {known})")
    frm = f"from release {current}" if current else "(it points at no release now)"
    return Step(id="rollback", kind="deploy", source=current or "", dest=target, count=1, todo_count=1,
                change=f"switch current {frm} back to {target}; restart the app")


def rollback(config: Config, conn: Connection, step: Step) -> RollbackResult:
    """Carry out an approved rollback step: switch current, restart, health-check."""
    dep = settings(config)
    runtime = runtime_for(dep.settings, login_is_root=login_is_root(conn))
    current = step.source or None
    act = activate(conn, runtime, dep, step.dest, current)
    return RollbackResult(current, step.dest, act.healthy, act.seen, act.logs)


class DeployKind(Kind):
    name = "deploy"

    def enabled(self, config: Config) -> bool:
        return bool(config.data.get("deploy"))

    def gather(self, ctx: Context) -> dict[str, Any]:
        dep = settings(ctx.config)
        digest, size = release_digest(dep.release_path)
        runtime = runtime_for(dep.settings, login_is_root=login_is_root(ctx.conn))
        current = releases.current_release(ctx.conn, ctx.config.root)
        healthy = True
        if current and current.endswith("-" + digest[:12]) and dep.health_url:
            # Read-only: whether the current release answers decides whether the plan has a
            # redeploy to show (and the gate a change to ask about).
            healthy = wait_healthy(ctx.conn, dep.health_url, min(dep.health_timeout, 5))[0]
        return {"digest": digest, "bytes": size, "current": current, "current_healthy": healthy,
                "releases": releases.list_releases(ctx.conn, ctx.config.root), "runtime_blockers": runtime.preflight(ctx.conn)}

    def plan(self, ctx: Context, gathered: dict[str, Any]) -> PlanPart:
        dep = settings(ctx.config)
        part = PlanPart()
        current = bool(gathered["current"] and gathered["current"].endswith("-" + gathered["digest"][:12]))
        same = current and gathered.get("current_healthy", True)
        part.steps.append(Step(
            id="deploy", kind=self.name, source=str(dep.release_path), dest="releases/ + current", count=1,
            bytes=gathered["bytes"], todo_count=0 if same else 1, todo_bytes=0 if same else gathered["bytes"],
            est_seconds=2 + gathered["bytes"] / 50e6 + (dep.health_timeout if dep.health_url else 0) * 0.1,
            detail=(f"runtime {dep.settings.runtime}; " + ("this release is already current" if same else
                    f"health {dep.health_url or 'not configured'}; rollback to {gathered['current'] or 'nothing (first deploy)'} on failure")),
            change="" if same else (f"unpack {dep.release_path.name} as a new release, switch current to it; (re)start the app "
                                    f"({dep.settings.runtime})" + ("; the current release does not answer" if current else "")),
        ))
        part.inputs[f"deploy.release {dep.release_path}"] = gathered["digest"]
        for why in gathered.get("runtime_blockers") or ():
            part.blockers.append(Finding("deploy-runtime", f"deploy.runtime {dep.settings.runtime}: {why}"))
        if not dep.health_url:
            part.warnings.append(Finding("deploy-health", "deploy.health.url is not set: a release that starts but does not answer will not be rolled back"))
        return part

    def apply(self, ctx: Context, gathered: dict[str, Any], step: Step) -> Outcome:
        dep = settings(ctx.config)
        conn, root = ctx.conn, ctx.config.root
        runtime = runtime_for(dep.settings, login_is_root=login_is_root(conn))
        current = releases.current_release(conn, root)
        digest = gathered["digest"]
        if current and current.endswith("-" + digest[:12]):
            ok, seen = wait_healthy(conn, dep.health_url, min(dep.health_timeout, 5)) if dep.health_url else (True, "")
            if ok or not step.change:  # not answering now, but the gate approved no redeploy: verify says so
                return Outcome(changed=False, manifest={"release": current, "active": current, "healthy": ok, "health": seen})
        # after the newest release there (failed ones too), so id order is deploy order
        release_id = releases.new_id(releases.all_ids(conn, root), digest, calendar.timegm(time.gmtime()))
        if ctx.run is not None:
            # known from here on: the audit line names it even if the move ends in an
            # error or an interrupt (execute/runner.py writes it from the report)
            ctx.run.report.release_tried = release_id
        upload(conn, root, release_id, dep.release_path, ctx.config.allowed_links)
        act = activate(conn, runtime, dep, release_id, current)
        # "release"/"tried": the one this run deployed; "active": what current points at after it.
        manifest: dict[str, Any] = {"release": release_id, "tried": release_id, "previous": current, "runtime": dep.settings.runtime}
        if act.healthy:
            dropped = releases.prune(conn, root, dep.keep, (release_id,))
            manifest.update(active=release_id, healthy=True, health=act.seen, pruned=dropped)
            return Outcome(changed=True, manifest=manifest)
        what = (f"failed its health check ({dep.health_url}: {act.seen})" if act.step == "health check"
                else f"failed at step '{act.step}': {act.seen}")
        failed = [f"release {release_id} {what}"]
        failed += [f"  log: {line}" for line in act.logs]
        if current is None:
            # Nothing to go back to: the new release is stopped, `current` no longer names
            # it, and it is set aside as <id>.failed like any failed release (so neither
            # `rollback` nor the next deploy ever takes it for a good one).
            if act.step in ("start", "health check"):
                try:
                    runtime.stop(conn)
                except TargetError as exc:
                    failed.append(f"stopping {release_id} failed too: {exc.message}")
            releases.unswitch(conn, root, release_id)
            manifest["failed_release"] = releases.mark_failed(conn, root, release_id)
            failed.append("no earlier release to roll back to: the app is down")
            manifest.update(active=releases.current_release(conn, root), healthy=False, health=act.seen)
            return Outcome(changed=True, manifest=manifest, failed=failed)
        # Whatever step failed (stop, switch, unit install, start, health), current goes
        # back to the release that ran before, which is started and checked again.
        back = activate(conn, runtime, dep, current, release_id)
        if releases.current_release(conn, root) != current:
            # the way back failed before its switch (the new release would not stop):
            # current still goes back, so it never names the release set aside below
            releases.switch(conn, root, current)
        manifest["failed_release"] = releases.mark_failed(conn, root, release_id)
        failed.append(f"rolled back to {current}: " + ("answering again" if back.healthy else f"NOT answering either ({back.seen})"))
        manifest.update(active=releases.current_release(conn, root), healthy=back.healthy, health=back.seen, rolled_back=True)
        return Outcome(changed=True, manifest=manifest, failed=failed)

    def verify(self, ctx: Context, manifest: dict[str, Any]) -> list[Check]:
        dep = settings(ctx.config)
        checks = []
        for entry in manifest.values():
            current = releases.current_release(ctx.conn, ctx.config.root)
            ok = current == entry["active"]
            detail = f"current -> {current or 'no release'}, recorded {entry['active'] or 'no release'}"
            # No release live by record (a first deploy that failed): nothing is meant to
            # answer, and waiting out the health timeout for it would tell nothing.
            if ok and dep.health_url and current is not None:
                ok, seen = wait_healthy(ctx.conn, dep.health_url, min(dep.health_timeout, 10))
                detail += f"; {dep.health_url}: {seen}"
            checks.append(Check(f"deploy {entry['release']}", ok and bool(entry.get("healthy")) and not entry.get("rolled_back"), detail))
        return checks


KIND_CLASS = DeployKind

