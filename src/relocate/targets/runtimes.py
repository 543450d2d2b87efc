"""Deploy runtimes behind one small interface: install (once per release), start,
stop, logs. Every command line is built from tokens here; `runtime_for` picks one
by name, so a new runtime is a new class in `RUNTIMES`.

All runtimes run the app from `root/current` with these variables set (none secret):
RELOCATE_ROOT, RELOCATE_SHARED, RELOCATE_RELEASE; the env file (secrets) is read
by the runtime itself (sh `.`, systemd EnvironmentFile, sh `.` into the compose
engine's environment), so relocate never puts a value on a command line. (A compose
file that interpolates a secret as `${VAR}` does: podman-compose passes it as
`podman run -e NAME=value`; docs/deploy.md says to list secrets by name instead.)
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from relocate.errors import ConfigError
from relocate.targets import nolinks, shell
from relocate.targets.ports import Holders
from relocate.ssh.connection import Connection


@dataclass(frozen=True)
class DeploySettings:
    runtime: str
    root: str
    service: str  # systemd unit name / compose project / label in messages
    command: str | None = None
    start: str | None = None
    stop: str | None = None
    status: str | None = None
    compose_file: str = "compose.yaml"
    env_file: str | None = None  # relative to root
    log_file: str = "shared/log/app.log"  # relative to root (command runtime)
    user: str | None = None  # systemd User=
    allow: tuple[str, ...] = ()  # target.allow_symlinks (absolute): links the spawn script may write through

    @property
    def current(self) -> str:
        return posixpath.join(self.root, "current")

    @property
    def shared(self) -> str:
        return posixpath.join(self.root, "shared")

    def abs(self, rel: str) -> str:
        return posixpath.join(self.root, rel)


class Runtime(ABC):
    name: ClassVar[str]
    # Debian/RHEL packages the runtime needs (for target.prepare; listed in the plan).
    packages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: DeploySettings) -> None:
        self.s = settings

    def install(self, conn: Connection, release: str) -> None:
        """Anything a release needs before it can start (a unit file, ...)."""

    def preflight(self, conn: Connection) -> list[str]:
        """Read-only: what on the target stops this runtime from working at all (plan
        blockers), so a plan that says "Ready" does not fail halfway through a deploy."""
        return []

    @abstractmethod
    def start_line(self, release: str) -> tuple[str, bytes]:
        """(command line, stdin) that starts `current`."""

    @abstractmethod
    def stop_line(self) -> tuple[str, bytes]:
        ...

    @abstractmethod
    def logs_line(self, lines: int) -> tuple[str, bytes]:
        ...

    def owner_problem(self, conn: Connection, found: Holders) -> str | None:
        """Why the process listening on the health port (`found`) is not the release
        just started, or None when it is or the runtime cannot tell (then the port
        having been free before the start is the proof)."""
        return None

    def exited(self, conn: Connection) -> str | None:
        """Why the release just started can no longer answer (its process is gone), or
        None when it may still (or the runtime cannot tell): the health check stops
        waiting as soon as this says so."""
        return None

    def start(self, conn: Connection, release: str) -> None:
        cmd, stdin = self.start_line(release)
        conn.run(cmd, stdin, timeout=300)  # a refused link (exit 86) is a SafetyError, exit 6

    def stop(self, conn: Connection) -> None:
        cmd, stdin = self.stop_line()
        conn.run(cmd, stdin, timeout=120)

    def logs(self, conn: Connection, lines: int = 20) -> list[str]:
        cmd, stdin = self.logs_line(lines)
        res = conn.run(cmd, stdin, check=False, timeout=60)
        return (res.stdout + res.stderr).decode("utf-8", "replace").splitlines()[-lines:]


# --- command: the user's own start/stop/status, or relocate supervises `command`

# Load the env file (secrets stay in the file: sh reads it), then run the user's
# command from `current`. $1 current, $2 env file or "", $3 release, $4 root, $5 command.
_ENV_PRELUDE = r"""
cd -- "$1" || exit 1
if [ -n "$2" ] && [ -f "$2" ]; then set -a; . "$2"; set +a; fi
export RELOCATE_RELEASE="$3" RELOCATE_ROOT="$4" RELOCATE_SHARED="$4/shared"
"""

_RUN_USER_CMD = _ENV_PRELUDE + r"""
exec sh -c "$5"
"""

# relocate's own supervision of a foreground `command`: a new session (setsid) so the
# app outlives the SSH channel and can be stopped as one process group. The session
# leader writes its own pid (= its process group id) before exec'ing the command:
# `$!` would be wrong when setsid has to fork. Its pid file and log live in shared/.
# $6 log file, $7 pid file.
_SPAWN = nolinks.NOLINKS_FN + _ENV_PRELUDE + r"""
mkdir -p -- "$(dirname -- "$6")" "$(dirname -- "$7")"
relocate_nolinks "$4" "$8" "$6" "$7" "$7.tmp" || exit 86
rm -f -- "$7"
printf '%s relocate: starting release %s\n' "$(date -u +%FT%TZ)" "$3" >> "$6"
setsid sh -c 'echo $$ > "$1.tmp" && mv -f -- "$1.tmp" "$1" && exec sh -c "$2"' relocate-app "$7" "$5" >> "$6" 2>&1 < /dev/null &
i=0; while [ ! -s "$7" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -s "$7" ] || { echo "relocate: the app's process group did not start within 10 s (no $7)" >&2; exit 1; }
"""

# Stop the process group named by the pid file: TERM, wait up to 15 s, then KILL and
# wait 5 s more; exit 1 if any of it still runs. `kill -TERM "-$pid"`, not
# `kill -TERM -- "-$pid"`, which dash (Debian's sh) rejects as "Illegal number".
# Zombies do not count: the app's parent is gone and init may reap them late.
# $1 pid file.
_ALIVE = r"""
alive() {
  for s in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null < "$s" || continue
    rest=${line##*)}
    set -- $rest
    [ "$3" = "$pid" ] && [ "$1" != Z ] && [ "$1" != X ] && return 0
  done
  return 1
}
"""

_KILL = r"""
[ -f "$1" ] || exit 0
pid=$(cat -- "$1")
case $pid in ''|*[!0-9]*) rm -f -- "$1"; exit 0 ;; esac
""" + _ALIVE + r"""waitgone() {
  i=0; while alive && [ $i -lt "$1" ]; do sleep 0.1; i=$((i+1)); done
  ! alive
}
if alive; then
  kill -TERM "-$pid" 2>/dev/null
  if ! waitgone 150; then
    echo "relocate: process group $pid still runs 15 s after TERM: sending KILL" >&2
    kill -KILL "-$pid" 2>/dev/null
    waitgone 50 || { echo "relocate: process group $pid survived KILL" >&2; exit 1; }
  fi
fi
rm -f -- "$1"
"""

# Whether the process group named by the pid file still has a live process: prints
# `gone PGID` when not (nothing when it runs, or no pid file to go by). $1 pid file.
_GONE = r"""
[ -f "$1" ] || exit 0
pid=$(cat -- "$1")
case $pid in ''|*[!0-9]*) exit 0 ;; esac
""" + _ALIVE + r"""
alive || echo "gone $pid"
"""


class CommandRuntime(Runtime):
    name = "command"

    @property
    def pid_file(self) -> str:
        return posixpath.join(self.s.shared, "run", f"{self.s.service}.pid")

    def _args(self, release: str, command: str) -> list[str]:
        env = self.s.abs(self.s.env_file) if self.s.env_file else ""
        return [self.s.current, env, release, self.s.root, command]

    def start_line(self, release: str) -> tuple[str, bytes]:
        if self.s.start:
            return shell.script(_RUN_USER_CMD, *self._args(release, self.s.start))
        assert self.s.command
        # $8: the links target.allow_symlinks lets it write through; the log and the pid file
        # are appended and written by the shell (`>>`, `>`), which follow links, so the
        # script checks them itself, right before (targets/nolinks.py).
        return shell.script(_SPAWN, *self._args(release, self.s.command), self.s.abs(self.s.log_file), self.pid_file,
                            nolinks.allow_arg(self.s.allow))

    def stop_line(self) -> tuple[str, bytes]:
        if self.s.stop:
            return shell.script(_RUN_USER_CMD, *self._args("", self.s.stop))
        return shell.script(_KILL, self.pid_file)

    def logs_line(self, lines: int) -> tuple[str, bytes]:
        return shell.line(["tail", "-n", str(lines), "--", self.s.abs(self.s.log_file)]), b""

    def exited(self, conn: Connection) -> str | None:
        if self.s.start:  # the user's own start script: relocate knows no process to watch
            return None
        cmd, stdin = shell.script(_GONE, self.pid_file)
        out = conn.run(cmd, stdin, check=False, timeout=60).text().split()
        if len(out) == 2 and out[0] == "gone":
            return f"the app exited: no process of its process group {out[1]} runs any more"
        return None

    def owner_problem(self, conn: Connection, found: Holders) -> str | None:
        if self.s.start or not found.known:  # the user's own start script: relocate knows no pid to compare
            return None
        res = conn.run(shell.line(["cat", "--", self.pid_file]), check=False)
        group = res.text().strip()
        if not group.isdigit():
            return f"no pid file {self.pid_file}: the release's process group is unknown"
        if any(pgid == int(group) for _pid, pgid in found.procs):
            return None
        return f"the port is {found.describe()}, not by this release's process group {group}"


# --- systemd: a generated unit, enabled and started through sudo unless root

def systemd_escape(value: str) -> str:
    """One double-quoted systemd word: specifiers (%) and variables ($) taken literally."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def unit_text(s: DeploySettings, description: str) -> str:
    assert s.command
    lines = [
        "# written by relocate; regenerated on every deploy",
        "[Unit]",
        f"Description={description}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        *( [f"User={s.user}"] if s.user else [] ),
        f"WorkingDirectory={s.current}",
        f"Environment={systemd_escape('RELOCATE_ROOT=' + s.root)} {systemd_escape('RELOCATE_SHARED=' + s.shared)}",
        *( [f"EnvironmentFile=-{s.abs(s.env_file)}"] if s.env_file else [] ),
        f"ExecStart=/bin/sh -c {systemd_escape('exec ' + s.command)}",
        "Restart=on-failure",
        "RestartSec=2",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


# One line per reason the unit cannot be installed and started by this login.
# /run/systemd/system exists exactly when systemd is PID 1 (sd_booted(3)).
_SYSTEMD_PREFLIGHT = r"""
[ -d /run/systemd/system ] || echo "systemd is not running on the target (no /run/systemd/system): use runtime command or compose"
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "the login user $(id -un) is not root and sudo is not installed: it cannot install a unit in /etc/systemd/system or run systemctl; log in as root, install sudo with passwordless rights, or use runtime command"
  elif ! sudo -n true >/dev/null 2>&1; then
    echo "the login user $(id -un) is not root and has no passwordless sudo (sudo -n): it cannot install a unit or run systemctl; grant it, log in as root, or use runtime command"
  fi
fi
"""


class SystemdRuntime(Runtime):
    name = "systemd"
    packages = ("systemd",)

    def __init__(self, settings: DeploySettings, *, sudo: bool = True) -> None:
        super().__init__(settings)
        self.sudo = sudo  # False when the login user is root

    @property
    def unit_name(self) -> str:
        return f"{self.s.service}.service"

    def _priv(self, *argv: str) -> list[str]:
        return ["sudo", "-n", *argv] if self.sudo else list(argv)

    def preflight(self, conn: Connection) -> list[str]:
        cmd, stdin = shell.script(_SYSTEMD_PREFLIGHT)
        return [line for line in conn.run(cmd, stdin, timeout=60).text().splitlines() if line.strip()]

    def install_lines(self, staged_unit: str) -> str:
        return shell.all_of(
            ["sh", "-c", 'command -v systemd-analyze >/dev/null 2>&1 || exit 0; systemd-analyze verify "$1"', "verify", staged_unit],
            self._priv("install", "-m", "0644", "--", staged_unit, f"/etc/systemd/system/{self.unit_name}"),
            self._priv("systemctl", "daemon-reload"),
            self._priv("systemctl", "enable", self.unit_name),
        )

    def install(self, conn: Connection, release: str) -> None:
        from relocate.targets import files

        staged = posixpath.join(self.s.root, ".relocate", self.unit_name)
        files.write_file_atomic(conn, staged, unit_text(self.s, f"{self.s.service} (deployed by relocate)").encode(), mode=0o644,
                                root=self.s.root)  # never through a symlinked .relocate (nolinks.py)
        conn.run(self.install_lines(staged), timeout=120)

    def start_line(self, release: str) -> tuple[str, bytes]:
        return shell.line(self._priv("systemctl", "restart", self.unit_name)), b""

    def stop_line(self) -> tuple[str, bytes]:
        return shell.line(self._priv("systemctl", "stop", self.unit_name)), b""

    def logs_line(self, lines: int) -> tuple[str, bytes]:
        return shell.line(self._priv("journalctl", "-u", self.unit_name, "-n", str(lines), "--no-pager")), b""


# --- compose: the release's compose file, run by whichever engine the target has

# The env file is read into the engine's environment by sh (as for `command`), so
# `environment: [NAME]` (by name) in the compose file passes a moved value on without
# a command line, and `${VAR}` sees it too (text substitution: fine for RELOCATE_*,
# not for secrets, which podman-compose then puts on `podman run`'s line). Engines, first found wins: Docker's `docker compose` plugin with a
# daemon this login reaches, Debian's `podman-compose`, the old `docker-compose`.
# Only `docker compose` has `up --wait`; relocate's own health check decides anyway.
# $1-$4 as _ENV_PRELUDE, $5 project, $6 compose file (absolute), $7 up|down|logs, $8 lines.
_COMPOSE = _ENV_PRELUDE + r"""
project=$5 file=$6 verb=$7 lines=${8:-20}
if docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  set -- docker compose --project-name "$project" -f "$file"; wait_flag=--wait
elif command -v podman-compose >/dev/null 2>&1; then
  set -- podman-compose --project-name "$project" -f "$file"; wait_flag=
elif command -v docker-compose >/dev/null 2>&1; then
  set -- docker-compose --project-name "$project" -f "$file"; wait_flag=
else
  echo "relocate: no compose engine on the target (docker compose, podman-compose or docker-compose)" >&2; exit 127
fi
case $verb in
  up) exec "$@" up -d --remove-orphans $wait_flag ;;
  down) exec "$@" down ;;
  logs) exec "$@" logs --tail "$lines" ;;
esac
"""


class ComposeRuntime(Runtime):
    name = "compose"
    # Debian's packages (podman-compose runs the file); a host with Docker's own
    # `docker compose` plugin needs neither: relocate uses that one first.
    packages = ("podman", "podman-compose")

    def _line(self, release: str, verb: str, *extra: str) -> tuple[str, bytes]:
        env = self.s.abs(self.s.env_file) if self.s.env_file else ""
        return shell.script(_COMPOSE, self.s.current, env, release, self.s.root, self.s.service,
                            posixpath.join(self.s.current, self.s.compose_file), verb, *extra)

    def start_line(self, release: str) -> tuple[str, bytes]:
        return self._line(release, "up")

    def stop_line(self) -> tuple[str, bytes]:
        return self._line("", "down")

    def logs_line(self, lines: int) -> tuple[str, bytes]:
        return self._line("", "logs", str(lines))


def login_is_root(conn: Connection) -> bool:
    """Whether the SSH login is root (no sudo for systemctl; tar applies owners)."""
    return conn.run(shell.line(["id", "-u"])).text().strip() == "0"


RUNTIMES: dict[str, type[Runtime]] = {r.name: r for r in (CommandRuntime, SystemdRuntime, ComposeRuntime)}


def runtime_for(settings: DeploySettings, *, login_is_root: bool = False) -> Runtime:
    cls = RUNTIMES.get(settings.runtime)
    if cls is None:
        raise ConfigError(f"deploy.runtime: unknown runtime {settings.runtime!r} (one of {', '.join(RUNTIMES)})")
    if cls is SystemdRuntime:
        return SystemdRuntime(settings, sudo=not login_is_root)
    return cls(settings)


