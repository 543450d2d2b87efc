"""The `databases` component: PostgreSQL and MySQL/MariaDB from `source.databases`
to `target.database`, dumped consistently, restored on the target, proven equal.

- gather: read-only. Resolves each item (RDS describe or URL, password_from,
  `via:` bastion tunnel), reads the source's facts and statistics, and probes the
  target server with its own client over SSH.
- plan: one step per database; blockers: missing tools here or on the target,
  target server unreachable or refusing the login, older target major version,
  missing extensions or ones the target login may not create where the restore runs,
  not enough disk, a non-empty target database that differs (refused unless
  `--replace-database NAME`: exit 3, like every blocker; a NAME that is not a target
  database of the config is a usage error, exit 2).
- execute: restore into a scratch database, check it, swap it in (PostgreSQL);
  a failed move leaves the target database as it was. A PostgreSQL login that may
  not create databases (managed databases) fills the existing EMPTY database in one
  transaction that commits only when the copy checks equal (execute/pg.py
  `move_in_place`); the plan says which path it takes and checks its privileges. A target that already
  matches the source is left alone ("nothing to do").
- verify: exact row counts, sequence values, large objects and per-table sample
  checksums on the target against the manifest (see execute/pg.py for the sample).

Target database naming: with one source database it lands in target.database's
URL database; with several, each lands in a database named like its source.
"""

from __future__ import annotations

import posixpath
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from relocate.kinds import Check, Kind, Context, Outcome, PlanPart
from relocate.config import Config
from relocate.errors import ConfigError, TargetError, UsageError
from relocate.execute import mysql as my
from relocate.execute.dbfiles import in_background
from relocate.execute import pg
from relocate.plan.model import Finding, Step
from relocate.secret import Secret
from relocate.sources.rds import DbAddress, parse_url, rds_address, resolve_password, split_endpoint
from relocate.targets import shell
from relocate.targets.facts import probe as probe_facts
from relocate.ssh.tunnel import Tunnel
from relocate.ssh.via import resolve_via

# Conservative: dump + transfer + restore of a database, per byte of on-disk size.
RATE_BYTES_PER_S = 25e6
SETUP_SECONDS = 3.0
KIND = "databases"


def step_id(name: str) -> str:
    return f"db:{name}"


def _engine_of(engine: str) -> ModuleType:
    return pg if engine == "postgres" else my


@dataclass
class DbGathered:
    item: dict[str, Any]
    name: str  # the source database name (the step id)
    source: DbAddress  # with password; the real endpoint (a tunnel is opened per use)
    target: DbAddress  # with password; the final database name
    facts: dict[str, Any] = field(default_factory=dict)
    tfacts: dict[str, Any] = field(default_factory=dict)
    state: str = "unknown"  # missing | empty | matches | differs | unreachable
    path: str = ""  # PostgreSQL: pg.SWAP or pg.IN_PLACE, the restore the target's privileges allow
    blockers: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)


def compare(expected: dict[str, Any], got: dict[str, Any] | None) -> list[str]:
    """Human-readable differences between two statistics records (empty: equal)."""
    if got is None:
        return ["the database is missing"]
    diffs: list[str] = []
    et, gt = expected.get("tables") or {}, got.get("tables") or {}
    for name in sorted(set(et) | set(gt)):
        e, g = et.get(name), gt.get(name)
        if e is None:
            diffs.append(f"table {name} is not in the source")
        elif g is None:
            diffs.append(f"table {name} is missing")
        elif e.get("rows") != g.get("rows"):
            diffs.append(f"table {name}: {g.get('rows')} rows, expected {e.get('rows')}")
        elif e.get("sample") != g.get("sample"):
            diffs.append(f"table {name}: sample checksum differs")
    es, gs = expected.get("sequences") or {}, got.get("sequences") or {}
    for name in sorted(set(es) | set(gs)):
        if es.get(name) != gs.get(name) or (name in es) != (name in gs):
            diffs.append(f"sequence {name}: {gs.get(name, 'missing')}, expected {es.get(name, 'none')}")
    if (expected.get("large_objects") or {}) != (got.get("large_objects") or {}):
        diffs.append(f"large objects: {got.get('large_objects')}, expected {expected.get('large_objects')}")
    return diffs


def _items(config: Config) -> list[dict[str, Any]]:
    return list(((config.data.get("source") or {}).get("databases")) or [])


def _target_spec(config: Config) -> dict[str, Any]:
    spec = (config.data.get("target") or {}).get("database") or {}
    if not spec.get("url"):
        raise ConfigError("target.database.url is required when source.databases lists databases",
                          hint="e.g. postgresql://app@127.0.0.1:5432/app (run on the target host)")
    return spec


def resolve_source(ctx: Context, item: dict[str, Any], index: int) -> DbAddress:
    what = f"source.databases[{index}]"
    engine = item.get("engine")
    if item.get("rds"):
        addr = rds_address(ctx.aws, item["rds"], engine)
    else:
        addr = parse_url(item["url"], f"{what}.url", engine)
    host, port = split_endpoint(item["endpoint"], addr.port) if item.get("endpoint") else (addr.host, addr.port)
    password = resolve_password(ctx.aws, item["password_from"], what) if item.get("password_from") else addr.password
    if password is None:
        raise ConfigError(f"{what}: no password: set password_from (secret:NAME#key, ssm:/name or env:VAR)")
    user = item.get("user") or addr.user
    dbname = item.get("name") or addr.dbname
    if not user or not dbname:
        raise ConfigError(f"{what}: the {'user' if not user else 'database name'} is unknown; set `user:`/`name:`")
    return DbAddress(addr.engine, host, port, user, dbname, password, addr.version, addr.allocated_bytes)


def target_address(ctx: Context, dbname: str | None = None, user: str = "") -> DbAddress:
    """target.database with its password resolved; `dbname` overrides the URL's database."""
    spec = _target_spec(ctx.config)
    addr = parse_url(spec["url"], "target.database.url", spec.get("engine"))
    password = resolve_password(ctx.aws, spec["password_from"], "target.database") if spec.get("password_from") else addr.password
    return DbAddress(addr.engine, addr.host, addr.port, addr.user or user, dbname or addr.dbname, password or Secret(""))


def resolve_target(ctx: Context, source: DbAddress, several: bool) -> DbAddress:
    addr = target_address(ctx, user=source.user)
    if (addr.engine == "postgres") != (source.engine == "postgres"):
        raise ConfigError(f"target.database is {addr.engine}, but {source.dbname} is {source.engine}: "
                          "relocate does not convert between PostgreSQL and MySQL")
    return target_address(ctx, source.dbname if several or not addr.dbname else addr.dbname, source.user)


def check_replace_names(asked: tuple[str, ...] | list[str], targets: list[str]) -> None:
    """`--replace-database NAME` must name a target database of this config: a typo would
    otherwise pass silently, and the move it was meant for would then stop at the
    not-empty blocker, or worse, the name would wait for a database added later."""
    unknown = [n for n in dict.fromkeys(asked) if n not in targets]
    if unknown:
        have = ", ".join(targets) if targets else "none (source.databases is empty)"
        raise UsageError(f"--replace-database {', '.join(unknown)}: no such target database in this config; "
                         f"its target databases: {have}")


@contextmanager
def reach(ctx: Context, item: dict[str, Any], addr: DbAddress) -> Iterator[DbAddress]:
    """The source as reachable from here: directly, or through the `via:` bastion."""
    if not item.get("via"):
        yield addr
        return
    spec = resolve_via(item["via"], (ctx.config.data.get("source") or {}).get("bastions"))
    with Tunnel(spec, addr.host, addr.port, ctx.login) as port:
        yield addr.at("127.0.0.1", port)


# Which tools the target lacks, one a line; "=pg PATH" for each version's binary of a tool
# that is Debian's pg_wrapper there (execute/pg.py: RemotePg runs the newest directly); then
# "=gnu-tar" when its tar is GNU tar (a PostgreSQL dump then goes up in pieces as it is
# written: execute/pg.py `_Upload`).
_TOOLS = r"""for t in "$@"; do
  p=$(command -v "$t" 2>/dev/null) || { echo "$t"; continue; }
  case $(readlink -f "$p" 2>/dev/null) in
    */pg_wrapper) for b in /usr/lib/postgresql/*/bin/"$t"; do if [ -x "$b" ]; then echo "=pg $b"; fi; done ;;
  esac
done
case $(tar --version 2>/dev/null) in *"GNU tar"*) echo =gnu-tar ;; esac
"""


@dataclass
class TargetTools:
    missing: list[str]
    gnu_tar: bool
    programs: dict[str, str]  # tool -> the binary pg_wrapper would run (RemotePg)


def _target_tools(ctx: Context, tools: tuple[str, ...]) -> TargetTools:
    cmd, stdin = shell.script(_TOOLS, *tools)
    return tools_found(ctx.conn.run(cmd, stdin, timeout=60).text())


def tools_found(said: str) -> TargetTools:
    """What `_TOOLS` printed."""
    got = TargetTools([], False, {})
    versions: dict[str, list[str]] = {}
    for line in said.splitlines():
        if line == "=gnu-tar":
            got.gnu_tar = True
        elif line.startswith("=pg " + pg.BINROOT + "/"):
            version, _, tool = line[len("=pg " + pg.BINROOT + "/"):].partition("/bin/")
            versions.setdefault(tool, []).append(version)
        elif line.strip():
            got.missing.append(line.strip())
    for tool, found in versions.items():
        best = pg.newest_version(found)
        if best is not None:
            got.programs[tool] = f"{pg.BINROOT}/{best}/bin/{tool}"
    return got


def _staging(ctx: Context, name: str) -> str:
    return posixpath.join(ctx.config.root, ".relocate", "db", name)


def _change(g: DbGathered) -> str:
    """How a restore changes the target, for the gate."""
    name = g.target.dbname
    if g.state == "differs":
        return f"replace database {name} ({g.target.engine} {g.target.label()})"
    if g.state == "empty":
        return f"restore into the empty database {name} ({g.target.engine} {g.target.label()})"
    return f"create database {name} and restore into it ({g.target.engine} {g.target.label()})"


class Databases(Kind):
    name = KIND

    def enabled(self, config: Config) -> bool:
        return bool(_items(config))

    def gather(self, ctx: Context) -> list[DbGathered]:
        items = _items(ctx.config)
        out: list[DbGathered] = []
        for i, item in enumerate(items):
            src = resolve_source(ctx, item, i)
            out.append(DbGathered(item, src.dbname, src, resolve_target(ctx, src, len(items) > 1)))
        check_replace_names(ctx.switches.replace_database, [g.target.dbname for g in out])  # before any probe
        for i, g in enumerate(out):
            self._probe(ctx, g, i)
        return out

    def _probe(self, ctx: Context, g: DbGathered, index: int) -> None:
        eng = _engine_of(g.source.engine)
        missing_here = [t for t in eng.local_tools() if shutil.which(t) is None]
        if missing_here:
            g.blockers.append(Finding("db-tools", f"{g.name}: {', '.join(missing_here)} not found on this machine "
                                      f"(install the {g.source.engine} client tools)"))
            return
        what = f"source.databases[{index}] ({g.name})"

        def target_side() -> tuple[list[str], dict[str, Any]]:
            tools = _target_tools(ctx, eng.TARGET_TOOLS)
            if tools.missing:
                return tools.missing, {}
            if g.source.engine != "postgres":
                return [], eng.probe_target(ctx.conn, g.target)
            return [], {**pg.probe_target(ctx.conn, g.target, tools.programs), "gnu_tar": tools.gnu_tar,
                        "programs": tools.programs}

        # The target's two round trips run on a thread while the source is probed here.
        with in_background(target_side, on_abort=lambda: None, name="relocate-target-db-probe") as target_probe, \
                reach(ctx, g.item, g.source) as here:
            g.facts = eng.probe_source(here, what)
            tool = eng.dump_tool_major()
            if g.source.engine == "postgres" and tool is not None and tool < g.facts["major"]:
                g.blockers.append(Finding("db-tools", f"{g.name}: the local pg_dump is version {tool}, older than the "
                                          f"source server ({g.facts['version']}); install pg_dump {g.facts['major']} or newer"))
            missing_there, g.tfacts = target_probe()
            if missing_there:
                g.blockers.append(Finding("db-tools", f"{g.name}: the target lacks {', '.join(missing_there)} "
                                          f"(install the {g.target.engine} client there)"))
                return
            if "error" in g.tfacts:
                g.state = "unreachable"
                how = "refused the login" if g.tfacts["error"] == "auth" else "is unreachable"
                g.blockers.append(Finding("db-target", f"{g.name}: the target database server {g.target.label()} {how}: "
                                          f"{g.tfacts['message']}"))
                return
            if g.tfacts.get("objects") and not g.tfacts.get("unreadable"):  # something to compare with: only then read every source row
                g.facts["stats"] = eng.source_stats(here, what)
        self._judge(ctx, g)
        self._disk(ctx, g)

    def _judge(self, ctx: Context, g: DbGathered) -> None:
        """Pure: blockers and state from the two sides' facts."""
        f, t = g.facts, g.tfacts
        if t["major"] < f["major"]:
            g.blockers.append(Finding("db-version", f"{g.name}: the target server is {g.target.engine} {t['version']}, "
                                      f"older than the source's {f['version']}; install {f['major']} or newer there"))
        lacking = sorted(set(f.get("extensions") or []) - set(t.get("available") or []))
        if lacking:
            g.blockers.append(Finding("db-extensions", f"{g.name}: the target server lacks the extension(s) "
                                      f"{', '.join(lacking)} (e.g. install postgresql-contrib)"))
        if not t["exists"]:
            g.state = "missing"
        elif not t.get("objects"):
            g.state = "empty"
        elif t.get("unreadable"):
            g.state = "differs"  # not proven equal: a move would replace it
            self._unreadable(ctx, g)
        else:
            diffs = compare(f["stats"], t.get("stats"))
            g.state = "differs" if diffs else "matches"
            replace = set(ctx.switches.replace_database)
            if diffs and g.target.dbname not in replace:
                g.blockers.append(Finding("db-not-empty", f"{g.name}: the target database {g.target.dbname} is not empty "
                                          f"and differs ({diffs[0]}); pass --replace-database {g.target.dbname} to overwrite it"))
            elif diffs:
                g.warnings.append(Finding("db-replace", f"{g.name}: {g.target.dbname} on the target will be replaced "
                                          f"({len(diffs)} difference(s), e.g. {diffs[0]})"))
        if g.source.engine == "postgres" and g.state != "matches":
            self._privileges(ctx, g)
            self._extension_rights(g)

    def _unreadable(self, ctx: Context, g: DbGathered) -> None:
        """Pure: the existing target database holds what the target login may not read
        (pg.probe_target's `unreadable`), so the plan cannot compare it with the source: a
        blocker naming what and the missing privilege, unless --replace-database names it
        (then it is replaced unread; whether the login may replace it is judged as usual)."""
        t, db, q = g.tfacts, g.target.dbname, pg.q_ident
        login = t.get("login") or g.target.user
        items = list(t.get("unreadable") or [])
        if db in ctx.switches.replace_database:
            g.warnings.append(Finding("db-replace", f"{g.name}: {db} on the target will be replaced without being "
                                      f"compared with the source (the target login {login} may not read all of it)"))
            return
        named = [i for i in items if i.get("object")]
        if named:
            shown = "; ".join(f"{i['object']} (owned by {i['owner']}): no {i['lacks']}" for i in named[:5])
            more = f"; and {len(named) - 5} more" if len(named) > 5 else ""
            grants = sorted({f"GRANT USAGE ON SCHEMA {i['lacks'].rsplit(' ', 1)[-1]} TO {q(login)}" for i in named
                             if i["lacks"].startswith("USAGE")}
                            | {f"GRANT SELECT ON {i['object']} TO {q(login)}" for i in named[:5]})
            what = f"permission denied: {shown}{more}"
            fix = f"have the owner run {'; '.join(grants)}"
        else:
            what = f"permission denied: {items[0].get('message', '') if items else ''}"
            fix = "grant it SELECT on what it may not read"
        g.blockers.append(Finding("db-unreadable", f"{g.name}: the target login {login} cannot read the existing target "
                                  f"database {db}'s statistics to compare it with the source ({what}); {fix}, use "
                                  f"the owner's or a superuser login in target.database, or, if {db} is to be "
                                  f"replaced and {login} may (it owns {db}, with CREATEDB), pass --replace-database {db}"))

    def _privileges(self, ctx: Context, g: DbGathered) -> None:
        """Pure: the restore path the target login's privileges allow, and what blocks it."""
        t, db = g.tfacts, g.target.dbname
        login = t.get("login") or g.target.user
        g.path = pg.restore_path(t, g.state)
        if g.path == pg.SWAP:
            self._swap_owners(g, login)
            return
        why = f"the target login {login} may not create databases (no CREATEDB)"
        if g.state == "missing":
            g.blockers.append(Finding("db-privileges", f"{g.name}: {why} and database {db} does not exist there: "
                                      f"create it empty, owned by {login} (CREATE DATABASE {pg.q_ident(db)} OWNER "
                                      f"{pg.q_ident(login)}), or grant {login} CREATEDB"))
        elif g.state == "differs" and db in ctx.switches.replace_database:
            g.blockers.append(Finding("db-privileges", f"{g.name}: {why}, so {db} cannot be replaced safely (that "
                                      f"needs a scratch database swapped in); empty {db} on the target, or grant CREATEDB"))
        elif g.state == "empty" and not t.get("create_in_db"):
            g.blockers.append(Finding("db-privileges", f"{g.name}: {why}, and it may not create schemas in {db} "
                                      f"either: GRANT CREATE ON DATABASE {pg.q_ident(db)} TO {pg.q_ident(login)}, "
                                      f"or make it the database's owner"))
        roles = g.facts.get("roles") or []
        if g.state == "empty" and not pg.keeps_owners(roles, t):
            others = sorted(r["name"] for r in roles if r["name"] not in set(t.get("member_of") or ()))
            g.warnings.append(Finding("db-owners", f"{g.name}: {login} may not act as {', '.join(others)} on the target "
                                      f"(and may not create roles): the restored objects will belong to {login}, "
                                      "without the source's owners and grants"))

    def _swap_owners(self, g: DbGathered, login: str) -> None:
        """Pure: what the swap's owners will be for a login that is not a superuser (from the
        target probe's member_of/privileges_of: no round trip of its own). The move works
        either way (execute/pg.py `owner_kept`, `swap_keeps_owners`): the plan warns where owners
        differ from the source's, and blocks where the swap itself could not run."""
        t, db = g.tfacts, g.target.dbname
        if t.get("superuser"):
            return
        q = pg.q_ident
        held = t.get("db_owner")
        if g.state in ("empty", "differs") and held and t.get("privileges_of") is not None \
                and held not in set(t.get("privileges_of") or ()):
            # the swap renames and drops the existing database: only its owner may
            g.blockers.append(Finding("db-privileges", f"{g.name}: the target login {login} may not rename or drop "
                                      f"the existing database {db} (owned by {held}), which the swap replaces: "
                                      f"ALTER DATABASE {q(db)} OWNER TO {q(login)}, or use a superuser login"))
        owner = g.facts.get("owner") or ""
        if owner and not pg.owner_kept(owner, t):
            why = ("may not act as it" if owner in set(t.get("roles") or ()) or t.get("roles") is None
                   else "it does not exist there")
            g.warnings.append(Finding("db-owner", f"{g.name}: the new database {db} will be owned by the target login "
                                      f"{login}, not by {owner} as on the source ({login} is not a superuser and "
                                      f"{why}); to keep {owner}, GRANT {q(owner)} TO {q(login)} on the target "
                                      "first, or use a superuser login"))
        roles = g.facts.get("roles") or []
        if not pg.swap_keeps_owners(roles, owner, t):
            named = sorted(r["name"] for r in roles if r.get("objects", True))
            g.warnings.append(Finding("db-owners", f"{g.name}: the restored objects will belong to {login}, without the "
                                      f"source's owners and grants ({', '.join(named) or 'none'}): a login that is not a "
                                      f"superuser keeps them only when every object and grant is the database owner's "
                                      f"({owner or '?'}) and {login} may act as that role; use a superuser login to keep them"))

    def _extension_rights(self, g: DbGathered) -> None:
        """Pure: extensions the target offers but the login may not create where the restore
        runs (pg.uncreatable_extensions): the restore would fail on them, so the plan blocks."""
        t, db = g.tfacts, g.target.dbname
        login = t.get("login") or g.target.user
        lacking = pg.uncreatable_extensions(list(g.facts.get("extensions") or []), t, g.path)
        su = sorted(n for n, why in lacking.items() if why == "superuser")
        if su and g.path == pg.IN_PLACE:
            g.blockers.append(Finding("db-extensions", f"{g.name}: the target login {login} may not create the "
                                      f"extension(s) {', '.join(su)} (not trusted: only a superuser may); have a "
                                      f"superuser create them in {db} on the target first ("
                                      + "; ".join(f"CREATE EXTENSION {pg.q_ident(n)}" for n in su)
                                      + "), or use a superuser login"))
        elif su:
            g.blockers.append(Finding("db-extensions", f"{g.name}: the target login {login} may not create the "
                                      f"extension(s) {', '.join(su)} (not trusted: only a superuser may) in the new "
                                      "database the restore fills; use a superuser login in target.database"))
        create = sorted(n for n, why in lacking.items() if why == "create")
        if create:
            g.blockers.append(Finding("db-extensions", f"{g.name}: the target login {login} needs CREATE on {db} to "
                                      f"create the extension(s) {', '.join(create)}: GRANT CREATE ON DATABASE "
                                      f"{pg.q_ident(db)} TO {pg.q_ident(login)}"))

    def _disk(self, ctx: Context, g: DbGathered) -> None:
        """The dump must fit here (unless streamed) and, staged, on the target."""
        size = int(g.facts.get("size") or 0)
        if g.state != "matches":
            if not ctx.switches.no_local_copy or g.path == pg.IN_PLACE:  # in place: the dump is replayed
                snapdir = ctx.config.snapshot_dir
                probe_dir = next((p for p in (snapdir, *snapdir.parents) if p.exists()), Path("/"))
                free = shutil.disk_usage(probe_dir).free
                if free < size:
                    g.blockers.append(Finding("disk", f"{g.name}: {free} bytes free at {probe_dir} for a dump of up to "
                                              f"{size} bytes (free space, or pass --no-local-copy to stream it)"))
                tfree = probe_facts(ctx.conn, ctx.config.root).free_bytes
                if tfree is not None and tfree < size:
                    g.blockers.append(Finding("disk", f"{g.name}: the target has {tfree} bytes free under "
                                              f"{ctx.config.root} to stage a dump of up to {size} bytes"))

    def plan(self, ctx: Context, gathered: list[DbGathered]) -> PlanPart:
        part = PlanPart()
        for g in gathered:
            f, t = g.facts, g.tfacts
            size = int(f.get("size") or 0)
            todo = g.state not in ("matches",)
            src_v = f"{g.source.engine} {f.get('version', '?')}"
            dst_v = f"{g.target.engine} {t.get('version', '?')}" if t and "version" in t else f"{g.target.engine} ?"
            detail = {"matches": "nothing to do: the target database already matches the source",
                      "missing": "will create the database", "empty": "the target database is empty: will fill it",
                      "differs": "the target database differs", "unreachable": "target server unreachable"}.get(g.state, "")
            if g.state == "differs" and t.get("unreadable"):
                detail = "the target database exists and the target login may not read all of it to compare"
            if g.path == pg.SWAP:
                detail += "; restore path: a scratch database, checked, then swapped in (the login has CREATEDB)"
            elif g.path == pg.IN_PLACE:
                detail += ("; restore path: into the existing empty database in ONE transaction, committed only if "
                           "the copy checks equal (the login may not create databases); a failure leaves it empty")
            part.steps.append(Step(
                id=step_id(g.name), kind=KIND, source=f"{src_v} {g.source.label()}", dest=f"{dst_v} {g.target.label()}",
                count=int(f.get("tables") or 0), bytes=size, todo_count=int(f.get("tables") or 0) if todo else 0,
                todo_bytes=size if todo else 0, est_seconds=(SETUP_SECONDS + size / RATE_BYTES_PER_S) if todo else 0.0,
                detail=detail, change=_change(g) if todo else ""))
            part.blockers.extend(g.blockers)
            part.warnings.extend(g.warnings)
        return part

    def apply(self, ctx: Context, gathered: list[DbGathered], step: Step) -> Outcome:
        g = next(x for x in gathered if step_id(x.name) == step.id)
        manifest: dict[str, Any] = {"engine": g.source.engine, "source": g.source.label(), "target": g.target.label(),
                                    "target_db": g.target.dbname, "version": g.facts.get("version"),
                                    "target_version": g.tfacts.get("version")}
        if g.state == "matches":
            return Outcome(False, {**manifest, "stats": g.facts["stats"], "dump": None})
        eng = _engine_of(g.source.engine)
        dump: Path | None = None
        if not ctx.switches.no_local_copy:
            dump = Path(ctx.snapshot_dir) / "databases" / g.name
            dump.parent.mkdir(parents=True, exist_ok=True)
        jobs = int(g.item.get("jobs") or 2)
        # The in-place path replays a dump: without a kept copy, it lives in a temp dir until then.
        extra: dict[str, Any] = {"path": g.path} if g.path else {}
        if g.source.engine == "postgres":
            extra["appends"] = bool(g.tfacts.get("gnu_tar"))  # the kept dump goes up in pieces as pg_dump writes it
            extra["programs"] = g.tfacts.get("programs") or {}
        with reach(ctx, g.item, g.source) as here, tempfile.TemporaryDirectory(prefix="relocate-pg-") as scratch:
            if g.path == pg.IN_PLACE:
                extra["scratch"] = Path(scratch) / "dump"
            result = eng.move(ctx.conn, here, g.target, what=f"database {g.name}", roles=g.facts.get("roles") or [],
                              owner=g.facts.get("owner") or "", encoding=g.facts.get("encoding") or "UTF8",
                              existing=g.state in ("differs", "empty"), dump_dir=dump,
                              staging=_staging(ctx, g.name), jobs=jobs, on_stats=compare, **extra)
        warnings = [f"database {g.name}: created role {r} on the target without a password; set one there "
                    f"(ALTER ROLE ... PASSWORD) if the app logs in as it" for r in result.get("created_roles", [])]
        if result.get("checked") is not None and not compare(result["stats"], result["checked"]):
            # PostgreSQL: proven where nothing else could change the copy before it was
            # published (execute/pg.py): the closed scratch database right before the swap,
            # or, in place, the restore's own transaction right before its COMMIT.
            how = (" (checked inside the restore's transaction, before it committed)" if g.path == pg.IN_PLACE
                   else " (checked before the swap, with the database closed to other sessions)")
            self._checked()[step.id] = (result["checked"], how)
        rel = str(dump.relative_to(ctx.snapshot_dir)) if dump is not None else None
        return Outcome(True, {**manifest, "stats": result["stats"], "dump": rel}, warnings=warnings)

    def _checked(self) -> dict[str, tuple[dict[str, Any], str]]:
        """Statistics this process already proved on the target, and how, by step id."""
        if not hasattr(self, "_proved"):
            self._proved: dict[str, tuple[dict[str, Any], str]] = {}
        return self._proved

    def verify(self, ctx: Context, manifest: dict[str, Any]) -> list[Check]:
        """Within a move, a PostgreSQL database restored by this process was already compared,
        in full (counts, sequences, large objects, samples): in its scratch database while
        that database refused connections, right before the swap; or, restored in place,
        inside the restore's transaction right before its COMMIT. Nothing could change it
        between that check and its publication, so the check is its verification (the
        check line says which) and the rows are not read a second time. `relocate verify`
        always reads them again."""
        checks: list[Check] = []
        for sid, rec in manifest.items():
            proved, how = self._checked().get(sid, (None, ""))
            if proved is not None and not compare(rec["stats"], proved):
                got = proved
            else:
                dst = target_address(ctx, rec["target_db"])
                try:
                    got, how = _engine_of(rec["engine"]).target_stats(ctx.conn, dst), ""
                except TargetError as exc:
                    # The login may not read what was restored (a table or large object
                    # handed to another role since): this database is not verified, the
                    # rest of the checks still run, and verify exits 4 naming why.
                    checks.append(Check(f"database {rec['target_db']} ({sid})", False,
                                        f"cannot be read to compare: {exc.message}"))
                    continue
            diffs = compare(rec["stats"], got)
            tables = len(rec["stats"].get("tables") or {})
            rows = sum(int(t.get("rows") or 0) for t in (rec["stats"].get("tables") or {}).values())
            label = f"database {rec['target_db']} ({sid})"
            if diffs:
                checks.append(Check(label, False, f"{len(diffs)} difference(s): " + "; ".join(diffs[:5])))
            else:
                checks.append(Check(label, True, f"{tables} tables, {rows} rows, "
                                    f"{len(rec['stats'].get('sequences') or {})} sequences match{how}"))
        return checks


KIND_CLASS = Databases
