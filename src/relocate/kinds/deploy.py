"""Deploy: upload a release, switch `current`, start it, prove it answers, or roll back.

    releases/<id>.partial  <- tar stream of deploy.release (a local dir or tarball)
    releases/<id>          <- renamed once whole; ids are "<UTC time>-<content hash>"
    stop old -> switch current (atomic) -> start -> health check through an SSH tunnel
    healthy: prune to keep_releases        unhealthy: switch back, restart, report logs

Each release keeps the runtime settings it was deployed with (RECORD, inside it), so
the release that runs is stopped, and one rolled back to is started and checked, as
it was deployed, whatever deploy: says now.

The same release content already live and healthy, deployed with the same settings
(command, scripts, unit, compose file, env file, log, health URL), is "nothing to do";
other settings make it a new release of the same content.
"""

from __future__ import annotations

import bz2
import calendar
import gzip
import hashlib
import json
import lzma
import os
import posixpath
import tarfile
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, cast

from relocate.kinds import Check, Kind, Context, Outcome, PlanPart
from relocate.config import Config
from relocate.errors import ConfigError, TargetError
from relocate.plan.model import Finding, Step
from relocate.targets import nolinks, ports, releases, shell
from relocate.targets.health import wait_healthy
from relocate.targets.runtimes import RUNTIMES, DeploySettings, Runtime, login_is_root, runtime_for
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


# --- what each release was deployed with: written into it as it is unpacked

# The runtime settings a release was deployed with, inside the release directory: a
# rollback (move's own, or `relocate rollback`) stops the running release and starts the
# one it goes back to with their own command, start/stop scripts, unit, compose file and
# health check, not with what deploy: says now (a changed command or port would start
# the old release wrong). Paths, commands and a URL as relocate.yaml has them: never a
# secret value (env files are named by path; relocate never puts a value on a command
# line). The root, login user and allowed links are the target's, taken from now.
RECORD = ".relocate-release.json"
_RECORDED = ("runtime", "service", "command", "start", "stop", "status", "compose_file", "env_file", "log_file")


def release_record(dep: Deploy) -> str:
    doc: dict[str, Any] = {"format": 1, **{k: getattr(dep.settings, k) for k in _RECORDED},
                           "health": {"url": dep.health_url, "timeout_s": dep.health_timeout}}
    return json.dumps(doc, sort_keys=True)


def settings_changed(dep: Deploy, raw: str) -> list[str]:
    """Which of deploy:'s settings differ from those a release was deployed with (its
    record, `raw`); [] when they are the same or the release has no readable record (made
    by an older relocate: nothing to compare with)."""
    try:
        was = json.loads(raw) if raw.strip() else None
    except ValueError:
        return []
    if not isinstance(was, dict):
        return []
    now = json.loads(release_record(dep))
    # the health check's timeout is how long relocate waits, not how the app runs: no reason to restart it
    for doc in (was, now):
        if isinstance(doc.get("health"), dict):
            doc["health"] = {"url": doc["health"].get("url")}
    return [k for k in sorted(now) if k != "format" and was.get(k) != now[k]]


def _from_record(dep: Deploy, raw: str) -> Deploy | None:
    """`dep` with a release's recorded settings, None when the record is not one
    (release_record's JSON, with values a deploy: could have had)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("format") != 1 or doc.get("runtime") not in RUNTIMES:
        return None
    optional = ("command", "start", "stop", "status", "env_file")
    if any(doc.get(k) is not None and not isinstance(doc.get(k), str) for k in optional) or \
            not all(isinstance(doc.get(k), str) and doc.get(k) for k in ("service", "compose_file", "log_file")):
        return None
    if doc["runtime"] in ("command", "systemd") and not (doc.get("command") or doc.get("start")):
        return None
    health = doc.get("health")
    if not isinstance(health, dict):
        return None
    url, timeout = health.get("url"), health.get("timeout_s")
    if (url is not None and not isinstance(url, str)) or isinstance(timeout, bool) or \
            not isinstance(timeout, (int, float)) or timeout <= 0:
        return None
    s = replace(dep.settings, runtime=doc["runtime"], service=doc["service"], command=doc.get("command"), start=doc.get("start"),
                stop=doc.get("stop"), status=doc.get("status"), compose_file=doc["compose_file"], env_file=doc.get("env_file"),
                log_file=doc["log_file"])
    return replace(dep, settings=s, health_url=url or None, health_timeout=float(timeout))


def as_deployed(conn: Connection, dep: Deploy, release: str) -> tuple[Deploy, list[str]]:
    """`dep` as `release` was deployed (its RECORD), and the warning when it has none
    (made by an older relocate) or an unreadable one: then the current deploy: settings
    stand in for it."""
    path = posixpath.join(releases.releases_dir(dep.settings.root), release, RECORD)
    res = conn.run(shell.line(["sh", "-c", 'cat -- "$1" 2>/dev/null; exit 0', "sh", path]), timeout=60)
    raw = res.stdout.decode("utf-8", "replace")
    found = _from_record(dep, raw) if raw.strip() else None
    if found is not None:
        return found, []
    why = "its record of them cannot be read" if raw.strip() else "made by an older relocate, it has no record of them"
    return dep, [f"release {release}: {why} ({RECORD}): it is stopped, started and checked with the current "
                 "deploy: settings of relocate.yaml"]


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


# Unpack into `.partial`, write its RECORD, rename it into place once whole; a failed
# unpack or rename removes the `.partial` (nothing half-written is left behind).
# $1 .partial, $2 final, $3 shared, $4 the record's JSON, $5 its name (RECORD: a link there is
# removed, not written through).
_UNPACK = r"""
part=$1 final=$2 shared=$3
rm -rf -- "$part" && mkdir -p -- "$part" || exit 1
tar -x -f - -C "$part" || { s=$?; rm -rf -- "$part"; exit "$s"; }
[ -z "$4" ] || { rm -rf -- "$part/$5" && printf '%s\n' "$4" > "$part/$5"; } || { s=$?; rm -rf -- "$part"; exit "$s"; }
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


def upload(conn: Connection, root: str, release_id: str, path: Path, allow: tuple[str, ...] = (), record: str = "") -> None:
    """Stream the release into releases/<id>.partial, write `record` (release_record)
    into it, then rename it into place; a failed upload leaves no `.partial` behind
    (removed on the target, or by a last command when the stream itself broke)."""
    final = posixpath.join(releases.releases_dir(root), release_id)
    part = final + ".partial"
    shared = posixpath.join(root, "shared")
    # Never through a symlinked releases/, shared/ or release dir (nolinks.py): checked
    # alone first for a clean refusal, then in the very command that writes.
    conn.run(shell.line(nolinks.guard(root, [part, final, shared], allow)))
    proc = conn.start(nolinks.guarded(root, [part, final, shared], allow=allow,
                                      command=shell.line(["sh", "-c", _UNPACK, "sh", part, final, shared, record, RECORD])))
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


def activate(conn: Connection, runtime: Runtime, dep: Deploy, release_id: str, previous: str | None,
             running: Runtime | None = None) -> Activation:
    """Stop what runs, point current at `release_id`, start it, and prove it answers.

    `runtime` and `dep` are `release_id`'s own settings (as_deployed); `running` is the
    runtime of the release that runs now, `previous`, as it was started (default
    `runtime`): each is stopped the way it was started.

    When the health URL is the target's own (127.0.0.1, localhost), nothing may listen
    on its port once the old release is stopped, and after the start the listener must
    be the new release's (runtime.owner_problem): otherwise a release that could not
    bind would pass its health check against the old process. Any step that fails
    ends the activation unhealthy, naming the step; the caller rolls back."""
    port = ports.local_port(dep.health_url)
    step = "stop the running release"
    try:
        if previous is not None:
            (running or runtime).stop(conn)
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
    warnings: list[str]


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
    """Carry out an approved rollback step: switch current, restart, health-check. The
    release that runs is stopped, and the one gone back to started and checked, with
    their own recorded settings (as_deployed), not with what deploy: says now."""
    dep = settings(config)
    root_login = login_is_root(conn)
    current = step.source or None
    back, warnings = as_deployed(conn, dep, step.dest)
    running = None
    if current is not None:
        now, more = as_deployed(conn, dep, current)
        running, warnings = runtime_for(now.settings, login_is_root=root_login), more + warnings
    act = activate(conn, runtime_for(back.settings, login_is_root=root_login), back, step.dest, current, running)
    return RollbackResult(current, step.dest, act.healthy, act.seen, act.logs, warnings)


# The plan's look at the target for the deploy, in one command: where `current` points,
# that release's RECORD, the command runtime's pid files (`name<TAB>pid`), and who listens
# on the app's port; sections end with a NUL. $1 root, $2 port ("" when the health URL
# is not the target's own), $3 RECORD.
_LOOK = ports.HOLDERS_FN + r"""
c=$(readlink -- "$1/current" 2>/dev/null) || c=
printf '%s\0' "$c"
[ -z "$c" ] || cat -- "$1/releases/${c##*/}/$3" 2>/dev/null
printf '\0'
for f in "$1"/shared/run/*.pid; do
  [ -f "$f" ] && [ ! -L "$f" ] && printf '%s\t%s\n' "${f##*/}" "$(head -c 32 -- "$f")"
done
printf '\0'
[ -z "$2" ] || relocate_holders "$2"
exit 0
"""


def port_problem(port: int, found: ports.Holders, current: str | None, group: int | None, supervised: bool) -> str | None:
    """Why the new release could not bind `port` (a plan blocker), or None. Held with no
    release running (a first deploy: nothing is stopped), or, when relocate supervises the
    running release (`command:`: its process group is in its pid file, `group`), held by
    any process outside that group: stopping the release will not free it. With systemd,
    compose or your own start/stop, relocate cannot tell the app's processes from others:
    the stop and the port check during the move decide."""
    if not found.held:
        return None
    fix = "stop that process, or give the app another port"
    if current is None:
        return f"port {port} (deploy.health.url) is {found.describe()}, and no release of the app runs there to stop: {fix}"
    if not supervised or not found.known:
        return None
    if found.procs and group is not None and all(pgid == group for _pid, pgid in found.procs):
        return None
    running = f"process group {group}" if group is not None else "no pid file names its process group"
    return (f"port {port} (deploy.health.url) is {found.describe()}, not by the running release {current} ({running}), "
            f"which the deploy stops first: it would still be held; {fix}")


class DeployKind(Kind):
    name = "deploy"

    def enabled(self, config: Config) -> bool:
        return bool(config.data.get("deploy"))

    def gather(self, ctx: Context) -> dict[str, Any]:
        dep = settings(ctx.config)
        digest, size = release_digest(dep.release_path)
        runtime = runtime_for(dep.settings, login_is_root=login_is_root(ctx.conn))
        port = ports.local_port(dep.health_url)
        # `current`, its record, the pid files and the port's holders: one round trip
        cmd, stdin = shell.script(_LOOK, ctx.config.root, "" if port is None else str(port), RECORD)
        target, record, pids, held = (ctx.conn.run(cmd, stdin, timeout=60).stdout.split(b"\0") + [b""] * 4)[:4]
        current = posixpath.basename(target.decode("utf-8", "surrogateescape").strip()) or None
        # the running release is stopped with its own settings (as_deployed); only relocate's
        # own supervision (`command:`) names its processes: the group in its pid file
        now = (_from_record(dep, record.decode("utf-8", "replace")) if record.strip() else None) or dep
        supervised = now.settings.runtime == "command" and not now.settings.start
        pid_files = dict(line.partition("\t")[::2] for line in pids.decode("utf-8", "replace").splitlines())
        group = pid_files.get(f"{now.settings.service}.pid", "").strip()
        found = ports.parse_holders(held.decode("utf-8", "replace"))
        healthy = True
        # The same content deployed with other settings (a new command, port, health URL)
        # is a new release: the app must run as deploy: says now.
        changed = settings_changed(dep, record.decode("utf-8", "replace")) if current else []
        if current and current.endswith("-" + digest[:12]) and dep.health_url and not changed:
            # Read-only: whether the current release answers decides whether the plan has a
            # redeploy to show (and the gate a change to ask about).
            healthy = wait_healthy(ctx.conn, dep.health_url, min(dep.health_timeout, 5))[0]
        return {"digest": digest, "bytes": size, "current": current, "current_healthy": healthy, "settings_changed": changed,
                "releases": releases.list_releases(ctx.conn, ctx.config.root), "runtime_blockers": runtime.preflight(ctx.conn),
                "port_problem": port_problem(port, found, current, int(group) if group.isdigit() else None, supervised)
                if port is not None else None}

    def plan(self, ctx: Context, gathered: dict[str, Any]) -> PlanPart:
        dep = settings(ctx.config)
        part = PlanPart()
        current = bool(gathered["current"] and gathered["current"].endswith("-" + gathered["digest"][:12]))
        changed = gathered.get("settings_changed") or []
        same = current and gathered.get("current_healthy", True) and not changed
        part.steps.append(Step(
            id="deploy", kind=self.name, source=str(dep.release_path), dest="releases/ + current", count=1,
            bytes=gathered["bytes"], todo_count=0 if same else 1, todo_bytes=0 if same else gathered["bytes"],
            est_seconds=2 + gathered["bytes"] / 50e6 + (dep.health_timeout if dep.health_url else 0) * 0.1,
            detail=(f"runtime {dep.settings.runtime}; " + ("this release is already current" if same else
                    f"health {dep.health_url or 'not configured'}; rollback to {gathered['current'] or 'nothing (first deploy)'} on failure")),
            change="" if same else (f"unpack {dep.release_path.name} as a new release, switch current to it; (re)start the app "
                                    f"({dep.settings.runtime})" + (f"; deploy: changed since it was deployed ({', '.join(changed)})"
                                                                   if current and changed else
                                                                   "; the current release does not answer" if current else "")),
        ))
        part.inputs[f"deploy.release {dep.release_path}"] = gathered["digest"]
        for why in gathered.get("runtime_blockers") or ():
            part.blockers.append(Finding("deploy-runtime", f"deploy.runtime {dep.settings.runtime}: {why}"))
        if gathered.get("port_problem") and not same:  # a release to start: the port must be its to bind
            part.blockers.append(Finding("deploy-port", gathered["port_problem"]))
        if not dep.health_url:
            part.warnings.append(Finding("deploy-health", "deploy.health.url is not set: a release that starts but does not answer will not be rolled back"))
        return part

    def apply(self, ctx: Context, gathered: dict[str, Any], step: Step) -> Outcome:
        dep = settings(ctx.config)
        conn, root = ctx.conn, ctx.config.root
        root_login = login_is_root(conn)
        runtime = runtime_for(dep.settings, login_is_root=root_login)
        current = releases.current_release(conn, root)
        digest = gathered["digest"]
        if current and current.endswith("-" + digest[:12]):
            ok, seen = wait_healthy(conn, dep.health_url, min(dep.health_timeout, 5)) if dep.health_url else (True, "")
            if (ok and not gathered.get("settings_changed")) or not step.change:  # not answering now, but the gate approved no redeploy: verify says so
                return Outcome(changed=False, manifest={"release": current, "active": current, "healthy": ok, "health": seen})
        # after the newest release there (failed ones too), so id order is deploy order
        release_id = releases.new_id(releases.all_ids(conn, root), digest, calendar.timegm(time.gmtime()))
        if ctx.run is not None:
            # known from here on: the audit line names it even if the move ends in an
            # error or an interrupt (execute/runner.py writes it from the report)
            ctx.run.report.release_tried = release_id
        upload(conn, root, release_id, dep.release_path, ctx.config.allowed_links, release_record(dep))
        # the release that runs now is stopped (and, should the new one fail, started and
        # checked again) the way it was deployed, not with what deploy: says now
        warnings: list[str] = []
        old_dep, old_runtime = dep, runtime
        if current is not None:
            old_dep, warnings = as_deployed(conn, dep, current)
            old_runtime = runtime_for(old_dep.settings, login_is_root=root_login)
        act = activate(conn, runtime, dep, release_id, current, old_runtime)
        # "release"/"tried": the one this run deployed; "active": what current points at after it.
        manifest: dict[str, Any] = {"release": release_id, "tried": release_id, "previous": current, "runtime": dep.settings.runtime}
        if act.healthy:
            dropped = releases.prune(conn, root, dep.keep, (release_id,))
            manifest.update(active=release_id, healthy=True, health=act.seen, pruned=dropped)
            return Outcome(changed=True, manifest=manifest, warnings=warnings)
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
            return Outcome(changed=True, manifest=manifest, warnings=warnings, failed=failed)
        # Whatever step failed (stop, switch, unit install, start, health), current goes
        # back to the release that ran before, which is started and checked again with
        # its own settings; the new one is stopped as it was started.
        back = activate(conn, old_runtime, old_dep, current, release_id, runtime)
        if releases.current_release(conn, root) != current:
            # the way back failed before its switch (the new release would not stop):
            # current still goes back, so it never names the release set aside below
            releases.switch(conn, root, current)
        manifest["failed_release"] = releases.mark_failed(conn, root, release_id)
        failed.append(f"rolled back to {current}: " + ("answering again" if back.healthy else f"NOT answering either ({back.seen})"))
        manifest.update(active=releases.current_release(conn, root), healthy=back.healthy, health=back.seen, rolled_back=True)
        return Outcome(changed=True, manifest=manifest, warnings=warnings, failed=failed)

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

