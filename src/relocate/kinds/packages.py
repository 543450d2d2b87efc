"""`target.prepare: true`: install what the move and the app need on a fresh host.

What is needed: the tools the move itself runs (tar, coreutils, findutils), the
database client for `target.database`, the deploy runtime's packages, and
`target.packages` from relocate.yaml. What is missing is found read-only (dpkg or
rpm) and listed as the plan's first step; installing goes through `sudo -n` when
the login user is not root, so a host without passwordless sudo is a blocker in the
plan, not a password prompt halfway through a move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relocate.kinds import Check, Kind, Context, Outcome, PlanPart
from relocate.config import Config
from relocate.plan.model import Finding, Step
from relocate.targets import shell
from relocate.ssh.connection import Connection

# Debian names; the RHEL family's where they differ.
_RHEL_NAMES = {
    "docker.io": "docker",
    "postgresql-client": "postgresql",
    "mariadb-client": "mariadb",
}
_BASE = ("tar", "coreutils", "findutils")
_DB_CLIENT = {"postgres": "postgresql-client", "mysql": "mariadb-client", "mariadb": "mariadb-client"}

_PROBE = r"""
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "id=${ID:-}"
echo "like=${ID_LIKE:-}"
if [ "$(id -u)" = 0 ]; then echo root=1; else echo root=0; fi
if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then echo sudo=1; else echo sudo=0; fi
for p in "$@"; do
  if command -v dpkg-query >/dev/null 2>&1; then
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then echo "have=$p"; fi
  elif command -v rpm >/dev/null 2>&1; then
    if rpm -q "$p" >/dev/null 2>&1; then echo "have=$p"; fi
  fi
done
"""


@dataclass
class HostPackages:
    family: str  # debian | rhel | unknown
    os_id: str
    root: bool
    sudo: bool
    wanted: dict[str, str]  # package -> why it is needed
    installed: set[str] = field(default_factory=set)

    @property
    def missing(self) -> list[str]:
        return [p for p in self.wanted if p not in self.installed]

    def install_line(self, packages: list[str]) -> str:
        if self.family == "debian":
            cmds = [["apt-get", "update", "-q"],
                    ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends", "--", *packages]]
        else:
            cmds = [["dnf", "install", "-y", "--", *packages]]
        sudo = [] if self.root else ["sudo", "-n"]
        return shell.all_of(*[sudo + c for c in cmds])


def family_of(os_id: str, like: str) -> str:
    ids = {os_id, *like.split()}
    if ids & {"debian", "ubuntu"}:
        return "debian"
    if ids & {"rhel", "centos", "fedora", "rocky", "almalinux", "amzn", "ol"}:
        return "rhel"
    return "unknown"


def wanted_packages(config: Config, family: str) -> dict[str, str]:
    """Package name -> why, in the family's naming. Pure, so it is table-testable."""
    wanted: dict[str, str] = {p: "used by relocate's move" for p in _BASE}
    engine = ((config.data.get("target") or {}).get("database") or {}).get("engine")
    if engine:
        wanted[_DB_CLIENT[engine]] = f"restores the {engine} database"
    deploy = config.data.get("deploy") or {}
    if deploy.get("runtime"):
        from relocate.targets.runtimes import RUNTIMES

        for p in RUNTIMES[deploy["runtime"]].packages:
            wanted[p] = f"deploy runtime {deploy['runtime']}"
    for p in (config.data.get("target") or {}).get("packages") or ():
        wanted[p] = "target.packages"
    if family == "rhel":
        return {_RHEL_NAMES.get(p, p): why for p, why in wanted.items()}
    return wanted


def probe(conn: Connection, config: Config) -> HostPackages:
    # Ask about both namings; the family tells which list applies.
    names = sorted(set(wanted_packages(config, "debian")) | set(wanted_packages(config, "rhel")))
    cmd, stdin = shell.script(_PROBE, *names)
    facts: dict[str, str] = {}
    have: set[str] = set()
    for raw in conn.run(cmd, stdin, timeout=120).text().splitlines():
        key, _, value = raw.partition("=")
        if key == "have":
            have.add(value)
        else:
            facts[key] = value
    family = family_of(facts.get("id", ""), facts.get("like", ""))
    return HostPackages(family, facts.get("id", ""), facts.get("root") == "1", facts.get("sudo") == "1",
                        wanted_packages(config, family), have)


class PackagesKind(Kind):
    name = "prepare"

    def enabled(self, config: Config) -> bool:
        return bool((config.data.get("target") or {}).get("prepare"))

    def gather(self, ctx: Context) -> HostPackages:
        return probe(ctx.conn, ctx.config)

    def plan(self, ctx: Context, host: HostPackages) -> PlanPart:
        missing = host.missing
        detail = (f"install {', '.join(missing)}" if missing else f"all {len(host.wanted)} packages present")
        step = Step(id="prepare", kind="prepare", source=f"{host.os_id or '?'} packages", dest="/",
                    count=len(host.wanted), todo_count=len(missing), est_seconds=30.0 + 10 * len(missing) if missing else 0.5,
                    detail=detail,
                    change=(f"install {len(missing)} package(s) as root{'' if host.root else ' (sudo)'}: {', '.join(missing)}"
                            if missing else ""))
        blockers: list[Finding] = []
        if missing and host.family == "unknown":
            blockers.append(Finding("prepare", f"target.prepare: cannot tell the package manager of this host (os-release ID={host.os_id or 'none'}); "
                                               f"install {', '.join(missing)} by hand and set prepare: false"))
        elif missing and not (host.root or host.sudo):
            blockers.append(Finding("prepare", f"target.prepare: {', '.join(missing)} must be installed, but the login user is not root "
                                               "and has no passwordless sudo (sudo -n); grant it, or install them by hand"))
        return PlanPart(steps=[step], blockers=blockers)

    def apply(self, ctx: Context, host: HostPackages, step: Step) -> Outcome:
        missing = host.missing
        if not missing:
            return Outcome(False, {"packages": sorted(host.wanted), "installed": []})
        result = ctx.conn.run(host.install_line(missing), timeout=1800, check=False)
        after = probe(ctx.conn, ctx.config)
        still = [p for p in missing if p not in after.installed]
        failed = [f"prepare: {p} is still not installed" for p in still]
        if failed and result.status != 0:
            err = result.stderr.decode("utf-8", "replace").strip().splitlines()
            failed.append(f"prepare: the package manager said: {err[-1] if err else 'exit ' + str(result.status)}")
        return Outcome(True, {"packages": sorted(host.wanted), "installed": [p for p in missing if p not in still]}, failed=failed)

    def verify(self, ctx: Context, manifest: dict[str, Any]) -> list[Check]:
        host = probe(ctx.conn, ctx.config)
        checks = []
        for record in manifest.values():
            for p in record.get("packages", []):
                checks.append(Check(f"package {p}", p in host.installed, "" if p in host.installed else "not installed"))
        return checks


KIND_CLASS = PackagesKind
