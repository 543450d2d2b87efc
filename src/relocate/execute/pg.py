"""PostgreSQL: facts, a consistent dump, restore on the target over SSH, and the
statistics that prove the copy equal.

Source side runs the local pg_dump/psql (through a tunnel when `via:` is set); the
target side runs psql/pg_restore ON the target host over SSH, so the target's
database need not listen beyond its own loopback.

Statistics (recorded in the manifest at dump time, compared by verify):
- every ordinary table's exact row count (`count(*)`),
- every sequence's last_value (NULL when never called), identity columns included,
- large objects: count and an md5 over their md5s in OID order (pg_restore keeps OIDs),
- a sample-row checksum per table: rows are numbered in primary-key order (the
  whole row's text when there is no primary key; keys with a collation, e.g. text,
  compare as text in the "C" collation so both servers agree whatever their
  locale); the sample is the first 100, the last 100, and every k-th row with
  k = max(1, rows // 1000), i.e. about 1,200 rows a table. The checksum is md5 over those rows' text form, joined by newlines, in
  that order, with bytea_output, DateStyle, TimeZone and float digits fixed.
The source's statistics are computed inside the very snapshot pg_dump uses
(pg_export_snapshot + pg_dump --snapshot), while the dump runs, so they describe exactly
the dump. On the target they are computed once, in the scratch database closed to other
sessions, right before it is swapped in (`check_in_place`).
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from relocate.errors import SourceError, TargetError, TransientError
from relocate.execute.dbfiles import (SECRET_FD, RemoteSecret, classify, in_background, last_line, local_secret_file,
                                      pgpass_line, pipe_to_target)
from relocate.sources.rds import DbAddress
from relocate.targets import layout, nolinks, shell
from relocate.ssh.openssh import OpenSsh, OpenSshExec
from relocate.ssh.connection import Connection

PSQL = ("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1")  # locally: program("psql") in front
MAINTENANCE_DB = "postgres"

_SESSION = """
SET bytea_output = 'hex'; SET extra_float_digits = 3; SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres';
DO $relocate$ BEGIN IF current_setting('server_version_num')::int >= 110000 THEN PERFORM set_config('jit', 'off', false); END IF; END $relocate$;
"""

_USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"

STATS_SQL = _SESSION + r"""
WITH t AS (
  SELECT c.oid, n.nspname AS s, c.relname AS r,
    -- Primary-key order: the key's own order (an index scan, no sort) when no key column
    -- has a collation; else its text in the "C" collation, which every server agrees on.
    (SELECT CASE WHEN bool_and(a.attcollation = 0) THEN string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
                 ELSE '(ROW(' || string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord) || ')::text) COLLATE "C"' END
       FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = c.oid AND i.indisprimary) AS pk,
    -- heap (every table before PostgreSQL 12, where relam is 0): fetched by ctid, below
    coalesce((SELECT am.amname = 'heap' FROM pg_am am WHERE am.oid = c.relam), true) AS heap,
    row_number() OVER (ORDER BY pg_relation_size(c.oid) DESC, c.oid) AS size_rank
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND """ + _USER_SCHEMAS + r"""
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
), counted AS (
  -- Per table: its row count, and a sample (the first and last 100 rows in key order and
  -- every n/1000-th) as text. Numbering the rows needs a pass over all of them; the rows
  -- themselves are needed only for the ~1,200 sampled. So a heap table's pass carries
  -- each row's address (tableoid and ctid: an inheritance parent's children share ctids)
  -- and only the sampled rows are fetched whole (a TID scan each): a 500,000-row table
  -- took 0.27-0.29 s instead of 0.36-0.40 s carrying every row whole (docs/transfer.md).
  -- The same rows in the same order, so the same statistics as the whole-row form, which
  -- other table access methods keep. The numbering's frame is the current row alone:
  -- row_number() ignores frames, and the default one (from the partition's start) was
  -- slower. JIT is off for these sessions (_SESSION): planned for the ~500,000 fetches
  -- the planner expects, it compiled for 0.35 s.
  SELECT t.s, t.r, x FROM (SELECT * FROM t /*PART*/ OFFSET 0) t CROSS JOIN LATERAL query_to_xml(format(
    CASE WHEN t.heap THEN
    'SELECT c.n, s.h FROM (SELECT count(*) AS n FROM %1$I.%2$I) c CROSS JOIN LATERAL (
       SELECT string_agg(w.x::text, E''\n'' ORDER BY q.rn) AS h
         FROM (SELECT x.tableoid AS o, x.ctid AS tid,
                      row_number() OVER (ORDER BY %3$s ROWS BETWEEN CURRENT ROW AND CURRENT ROW) AS rn FROM %1$I.%2$I x) q
         CROSS JOIN LATERAL (SELECT x FROM %1$I.%2$I x WHERE x.tableoid = q.o AND x.ctid = q.tid OFFSET 0) w
        WHERE q.rn <= 100 OR q.rn > c.n - 100 OR q.rn %% greatest(1, c.n / 1000) = 0) s'
    ELSE
    'SELECT c.n, s.h FROM (SELECT count(*) AS n FROM %1$I.%2$I) c CROSS JOIN LATERAL (
       SELECT string_agg(q.x::text, E''\n'' ORDER BY q.rn)
              FILTER (WHERE q.rn <= 100 OR q.rn > c.n - 100 OR q.rn %% greatest(1, c.n / 1000) = 0) AS h
         FROM (SELECT x, row_number() OVER (ORDER BY %3$s ROWS BETWEEN CURRENT ROW AND CURRENT ROW) AS rn FROM %1$I.%2$I x) q) s'
    END, t.s, t.r, coalesce(t.pk, 'x::text COLLATE "C"')), false, true, '') AS x
)
SELECT json_build_object(
  'tables', coalesce((SELECT json_object_agg(s || '.' || r, json_build_object(
      'rows', (xpath('/row/n/text()', x))[1]::text::bigint,
      'sample', md5(coalesce((xpath('/row/h/text()', x))[1]::text, ''))) ORDER BY s, r) FROM counted), '{}'),
  'sequences', coalesce((SELECT json_object_agg(schemaname || '.' || sequencename, last_value ORDER BY 1)
      FROM pg_sequences WHERE schemaname NOT LIKE 'pg\_%'), '{}'),
  'large_objects', (SELECT json_build_object('count', count(*),
      'md5', md5(coalesce(string_agg(md5(lo_get(oid)), '' ORDER BY oid), ''))) FROM pg_largeobject_metadata)
);
"""

def part_stats_sql(part: int, parts: int) -> str:
    """STATS_SQL over every `parts`-th table by size (largest first), starting at `part`;
    large objects only in part 0. The union of all parts' tables equals STATS_SQL's."""
    if parts <= 1:
        return STATS_SQL
    out = STATS_SQL.replace("/*PART*/", f"WHERE (t.size_rank - 1) % {parts} = {part}")
    lo = "FROM pg_largeobject_metadata)\n);"
    assert "/*PART*/" in STATS_SQL and lo in STATS_SQL
    return out if part == 0 else out.replace(lo, "FROM pg_largeobject_metadata WHERE false)\n);")


SOURCE_FACTS_SQL = r"""
SELECT json_build_object(
  'version_num', current_setting('server_version_num')::int, 'version', current_setting('server_version'),
  'size', pg_database_size(current_database()), 'encoding', pg_encoding_to_char(d.encoding),
  'owner', pg_get_userbyid(d.datdba),
  'extensions', (SELECT coalesce(json_agg(extname ORDER BY extname), '[]') FROM pg_extension WHERE extname <> 'plpgsql'),
  'tables', (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND """ + _USER_SCHEMAS + r""")
) FROM pg_database d WHERE d.datname = current_database();
"""

# Roles that own something in the database or hold a grant on it: the ones the app needs.
# Predefined pg_* roles exist everywhere. RDS's own roles (rdsadmin, rds_superuser,
# rds_*, rdsrepladmin, rdstopmgr) come back flagged `internal`: they must not be created
# for real on a plain host (see `rds_placeholders`). `objects` is false for the database's
# owner when it owns nothing in it and holds no grant there: pg_dump (without --create)
# does not name it, so a restore need not act as it (`keeps_owners`).
ROLES_SQL = r"""
WITH used AS (
  SELECT nspowner AS oid FROM pg_namespace n WHERE """ + _USER_SCHEMAS + r"""
  UNION SELECT c.relowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE """ + _USER_SCHEMAS + r"""
  UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE """ + _USER_SCHEMAS + r"""
  UNION SELECT y.typowner FROM pg_type y JOIN pg_namespace n ON n.oid = y.typnamespace WHERE """ + _USER_SCHEMAS + r"""
  UNION SELECT lomowner FROM pg_largeobject_metadata
  UNION SELECT (aclexplode(c.relacl)).grantee FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relacl IS NOT NULL AND """ + _USER_SCHEMAS + r"""
  UNION SELECT (aclexplode(p.proacl)).grantee FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.proacl IS NOT NULL AND """ + _USER_SCHEMAS + r"""
  UNION SELECT (aclexplode(n.nspacl)).grantee FROM pg_namespace n WHERE n.nspacl IS NOT NULL AND """ + _USER_SCHEMAS + r"""
  UNION SELECT defaclrole FROM pg_default_acl
  UNION SELECT (aclexplode(defaclacl)).grantee FROM pg_default_acl
)
SELECT coalesce(json_agg(json_build_object('name', rolname, 'login', rolcanlogin,
         'internal', rolname ~ '^(rdsadmin|rdsrepladmin|rdstopmgr|rds_.*)$',
         'objects', oid IN (SELECT oid FROM used)) ORDER BY rolname), '[]')
FROM pg_roles WHERE (oid IN (SELECT oid FROM used) OR oid = (SELECT datdba FROM pg_database WHERE datname = current_database()))
  AND rolname NOT LIKE 'pg\_%';
"""

TARGET_FACTS_SQL = r"""
SELECT json_build_object(
  'version_num', current_setting('server_version_num')::int, 'version', current_setting('server_version'),
  'available', (SELECT coalesce(json_agg(name ORDER BY name), '[]') FROM pg_available_extensions),
  -- who may CREATE EXTENSION each (its default version's control file): `superuser` false,
  -- or `trusted` (PostgreSQL 13+; read through to_jsonb, so older servers say false),
  -- lets a login with CREATE on the database; else only a superuser may
  'extension_rules', (SELECT coalesce(json_object_agg(v.name, json_build_object('superuser', v.superuser,
        'trusted', coalesce((to_jsonb(v) ->> 'trusted')::boolean, false))), '{}')
      FROM pg_available_extension_versions v JOIN pg_available_extensions a
        ON a.name = v.name AND a.default_version = v.version),
  'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
  'roles', (SELECT coalesce(json_agg(rolname ORDER BY rolname), '[]') FROM pg_roles),
  'exists', EXISTS (SELECT 1 FROM pg_database WHERE datname = :'dbname'),
  'leftover', (SELECT coalesce(json_agg(datname), '[]') FROM pg_database WHERE datname IN (:'tmpname', :'oldname')),
  -- what the login may do: the scratch-database swap needs CREATEDB; restoring in place
  -- needs CREATE in the existing database; roles it may own objects as (superuser: all)
  'login', current_user,
  'createdb', (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user),
  'createrole', (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user),
  -- roles it may give things to (ALTER ... OWNER TO, CREATE DATABASE ... OWNER): a member
  -- of them up to PostgreSQL 15, one that may SET ROLE to them from 16 on
  'member_of', (SELECT coalesce(json_agg(rolname ORDER BY rolname), '[]') FROM pg_roles
                WHERE pg_has_role(current_user, oid, CASE WHEN current_setting('server_version_num')::int >= 160000
                                                          THEN 'SET' ELSE 'MEMBER' END)),
  -- roles whose privileges it has: a database owned by one of them it may alter, rename, drop
  'privileges_of', (SELECT coalesce(json_agg(rolname ORDER BY rolname), '[]') FROM pg_roles
                    WHERE pg_has_role(current_user, oid, 'USAGE')),
  'db_owner', (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :'dbname'),
  'create_in_db', (SELECT has_database_privilege(oid, 'CREATE') FROM pg_database WHERE datname = :'dbname')
);
"""

# In the existing target database: how many relations it holds (0: empty), and which
# extensions it already has (a restore's CREATE EXTENSION IF NOT EXISTS skips those).
TARGET_DB_SQL = """SELECT json_build_object(
  'objects', (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND """ + _USER_SCHEMAS + """),
  'extensions', (SELECT coalesce(json_agg(extname ORDER BY extname), '[]') FROM pg_extension),
  -- What the statistics read (STATS_SQL) and the login may not: compared with the source
  -- only when nothing is listed, else the plan blocks (kinds/databases.py `_unreadable`).
  'unreadable', (SELECT coalesce(json_agg(json_build_object('object', CASE c.relkind WHEN 'S' THEN 'sequence'
                     ELSE 'table' END || ' ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                     'owner', pg_get_userbyid(c.relowner),
                     'lacks', CASE WHEN NOT has_schema_privilege(n.oid, 'USAGE') THEN 'USAGE on schema '
                                   || quote_ident(n.nspname) ELSE 'SELECT' END)
                   ORDER BY n.nspname, c.relname), '[]')
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'S') AND """ + _USER_SCHEMAS + """
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      AND (NOT has_schema_privilege(n.oid, 'USAGE')
           OR (c.relkind = 'r' AND NOT has_table_privilege(c.oid, 'SELECT'))
           OR (c.relkind = 'S' AND NOT has_sequence_privilege(c.oid, 'SELECT,USAGE')))));
"""


def major(version_num: int) -> int:
    return version_num // 10000 if version_num >= 100000 else version_num // 100


# Debian's /usr/bin/psql, pg_dump and pg_restore are one Perl script (postgresql-common's
# pg_wrapper) that picks a version and runs it: 20-140 ms a call here, paid by every local
# command of a database move, several of them before the dump starts.
WRAPPER, BINROOT = "pg_wrapper", "/usr/lib/postgresql"


def newest_version(versions: Iterable[str]) -> str | None:
    """The newest of BINROOT's version directories, as pg_wrapper reads their names."""
    found = [(float(v), v) for v in versions if re.fullmatch(r"\d+\.?\d+", v)]  # the wrapper's own pattern
    return max(found)[1] if found else None


def newest_program(binroot: str, name: str) -> str | None:
    """What pg_wrapper runs for `name` when the host is named (PGHOST, always set for
    relocate's commands): the newest version under `binroot` that has it."""
    try:
        entries = os.listdir(binroot)
    except OSError:
        return None
    best = newest_version(e for e in entries if os.access(os.path.join(binroot, e, "bin", name), os.X_OK))
    return os.path.join(binroot, best, "bin", name) if best else None


@functools.lru_cache(maxsize=None)
def program(name: str) -> str:
    """The local `name` to run: pg_wrapper's choice without the Perl, or `name` as PATH has it."""
    found = shutil.which(name)
    if found is None or os.path.basename(os.path.realpath(found)) != WRAPPER:
        return name
    return newest_program(BINROOT, name) or name


def tool_major(argv: list[str]) -> int | None:
    """`pg_dump --version` -> 15; None when it does not run."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    for word in out.split():
        head = word.split(".")[0]
        if head.isdigit():
            return int(head)
    return None


def _env(addr: DbAddress) -> dict[str, str]:
    # Connection settings (not secrets) for local children; the password is in PGPASSFILE.
    return {"PGHOST": addr.host, "PGPORT": str(addr.port), "PGUSER": addr.user, "PGDATABASE": addr.dbname,
            "PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "relocate", "PGTZ": "UTC"}


# --------------------------------------------------------------------------- source (local tools)


class LocalPg:
    """The source database through the local psql/pg_dump; `with` holds the passfile."""

    def __init__(self, addr: DbAddress, what: str) -> None:
        self.addr, self.what = addr, what
        self.env: dict[str, str] = {}

    @contextmanager
    def session(self) -> Iterator["LocalPg"]:
        with local_secret_file(pgpass_line(self.addr.password.reveal() if self.addr.password else "")) as pf:
            self.env = {**os.environ, **_env(self.addr), "PGPASSFILE": str(pf)}
            self.env.pop("PGPASSWORD", None)
            if program("psql") != "psql":
                self.env.setdefault("PGSYSCONFDIR", "/etc/postgresql-common")  # as pg_wrapper sets it
            try:
                yield self
            finally:
                self.env = {}

    def fail(self, stderr: str) -> Exception:
        kind, msg = classify(stderr), last_line(stderr)
        if kind == "auth":
            return SourceError(f"{self.what}: login refused at {self.addr.label()}: {msg}",
                               hint="check password_from and the user")
        if kind == "unreachable":
            return TransientError(f"{self.what}: cannot reach {self.addr.label()}: {msg}",
                                  hint="check the endpoint, `via:` and security groups; running again retries")
        return SourceError(f"{self.what}: {msg}")

    def query(self, sql: str, **variables: str) -> str:
        argv = [program("psql"), *PSQL[1:], *[a for k, v in variables.items() for a in ("-v", f"{k}={v}")], "-f", "-"]
        r = subprocess.run(argv, input=sql, capture_output=True, text=True, env=self.env, timeout=3600)
        if r.returncode != 0:
            raise self.fail(r.stderr)
        return r.stdout.strip()

    def json(self, sql: str) -> Any:
        return json.loads(self.query(sql))

    @contextmanager
    def snapshot(self) -> Iterator[tuple[str, "subprocess.Popen[str]"]]:
        """A REPEATABLE READ transaction held open; yields its exported snapshot id,
        which pg_dump --snapshot imports, so dump and statistics see one instant."""
        proc = subprocess.Popen([program("psql"), *PSQL[1:], "-f", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();\n")
            proc.stdin.flush()
            snap = proc.stdout.readline().strip()
            if not snap:
                proc.kill()
                raise self.fail(proc.communicate()[1])
            yield snap, proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    @contextmanager
    def stats_alongside(self, proc: "subprocess.Popen[str]") -> Iterator[dict[str, Any]]:
        """Compute STATS_SQL in the open snapshot transaction on a thread while the body of
        the `with` runs (the dump); the yielded dict is filled once the block ends. The
        transaction stays open until then, so pg_dump imports the snapshot whatever the timing."""
        assert proc.stdin is not None and proc.stdout is not None

        def stats() -> str:
            proc.stdin.write(STATS_SQL)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            return proc.stdout.readline()  # type: ignore[union-attr]  # one JSON line

        result: dict[str, Any] = {}
        with in_background(stats, on_abort=proc.kill) as outcome:  # a failed dump stops the statistics too
            yield result
        line = outcome()
        if not line.strip():
            proc.kill()
            raise self.fail(proc.communicate()[1])
        result.update(json.loads(line))
        proc.communicate("COMMIT;\n", timeout=600)

    def dump_argv(self, *, snapshot: str, jobs: int, out: Path | None) -> list[str]:
        """Directory format with -j into the snapshot, or custom format to stdout (a stream)."""
        base = [program("pg_dump"), f"--snapshot={snapshot}", "--no-password", "--compress=1", "--dbname", self.addr.dbname]
        if out is None:
            return [*base, "-Fc"]
        return [*base, "-Fd", "-j", str(jobs), "-f", str(out)]

    def dump_to(self, out: Path, *, snapshot: str, jobs: int,
                running: Callable[["subprocess.Popen[str]"], object] | None = None) -> None:
        """The directory-format dump, here, into `out`; `running(process)` once pg_dump started."""
        dump = subprocess.Popen(self.dump_argv(snapshot=snapshot, jobs=jobs, out=out), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.env)
        if running is not None:
            try:
                running(dump)
            except BaseException:
                dump.kill()
                dump.wait()
                raise
        _, err = dump.communicate()
        if dump.returncode != 0:
            raise self.fail(err)


# --------------------------------------------------------------------------- target (over SSH)


class RemotePg:
    """The target database through psql/pg_restore run on the target host. Every command
    built by `argv` must get `stdin()` in front of its input: the password, which the
    target's shell hands to the client as an unlinked file (dbfiles.RemoteSecret)."""

    def __init__(self, conn: Connection, addr: DbAddress, what: str = "target database",
                 programs: dict[str, str] | None = None) -> None:
        self.conn, self.addr, self.what = conn, addr, what
        pw = addr.password.reveal() if addr.password else ""
        self.secret = RemoteSecret(pgpass_line(pw), ".pgpass")
        # tool -> the binary pg_wrapper would run there (the plan's tool probe): no Perl
        # start per command on a Debian target
        self.programs = programs or {}

    def argv(self, tool: str, *args: str, db: str | None = None, app: str = "relocate") -> list[str]:
        env = [f"{k}={v}" for k, v in {**_env(self.addr), "PGAPPNAME": app}.items() if k != "PGDATABASE"]
        return self.secret.argv(["env", f"PGPASSFILE={SECRET_FD}", f"PGDATABASE={db or self.addr.dbname}", *env,
                                 self.programs.get(tool, tool), *args])

    def stdin(self, data: bytes = b"") -> bytes:
        """What a command from `argv` reads first (the password), then `data`."""
        return self.secret.stdin(data)

    def fail(self, stderr: str) -> TargetError:
        return TargetError(f"{self.what} {self.addr.label()}: {last_line(stderr)}")

    def query(self, sql: str, db: str | None = None, **variables: str) -> str:
        args = [*PSQL[1:], *[a for k, v in variables.items() for a in ("-v", f"{k}={v}")], "-f", "-"]
        r = self.conn.run(shell.line(self.argv("psql", *args, db=db)), self.stdin(sql.encode()), timeout=3600, check=False)
        if r.status != 0:
            raise self.fail(r.stderr.decode("utf-8", "replace"))
        return r.text().strip()

    def try_query(self, sql: str, db: str | None = None, **variables: str) -> tuple[str | None, str, str]:
        """(output or None, failure kind, message): for probes that become plan blockers."""
        try:
            return self.query(sql, db, **variables), "", ""
        except TargetError as exc:
            return None, classify(exc.message), exc.message


@dataclass
class Names:
    """The final database, the one a restore fills, and the one a replaced db parks in."""

    final: str

    @property
    def tmp(self) -> str:
        return self.final[:48] + "__relocating"

    @property
    def old(self) -> str:
        return self.final[:48] + "__relocate_old"


def q_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def q_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def create_roles_sql(roles: list[dict[str, Any]], existing: set[str]) -> str:
    """CREATE ROLE for each missing role, with LOGIN if it could log in at the source,
    and NO password: other roles' passwords are never copied (set them on the target).
    RDS-internal roles are created NOLOGIN, as placeholders (`rds_placeholders`)."""
    out = []
    for r in roles:
        if r["name"] not in existing:
            login = " LOGIN" if r["login"] and not r.get("internal") else ""
            out.append(f"CREATE ROLE {q_ident(r['name'])}{login};")
    return "\n".join(out)


def rds_placeholders(roles: list[dict[str, Any]], existing: set[str]) -> list[str]:
    """RDS-internal roles the dump names (as owner, grantee or default-privilege role) that
    the target lacks. pg_restore would fail on their GRANTs and ALTER ... OWNER TO, and
    `--no-privileges`/`--no-owner` would drop the app's own grants and owners with them;
    a `pg_restore -l`/`-L` list cannot help either (a custom-format stream is read once,
    and one ACL entry holds every grantee of an object). So they exist only during the
    restore: NOLOGIN placeholders, then `strip_roles_sql` in the scratch database, then
    DROP ROLE. The app's own roles, owners and grants are restored exactly."""
    return [r["name"] for r in roles if r.get("internal") and r["name"] not in existing]


def strip_roles_sql(placeholders: list[str], owner: str) -> str:
    """In the restored scratch database: what a placeholder owned goes to the database
    owner; its grants and default privileges go away (REASSIGN first, so DROP OWNED only
    revokes)."""
    to = q_ident(owner) if owner else "CURRENT_USER"
    return "".join(f"REASSIGN OWNED BY {q_ident(r)} TO {to};\nDROP OWNED BY {q_ident(r)};\n" for r in placeholders)

# The fenced check (see `check_in_place`): run connected to the scratch database. Both
# sides poll every 10 ms (a catalog lookup each): at 0.1 s, each of the two waits lost
# up to 0.1 s of the move.
_CHECK_SQL = r"""
DO $relocate$ BEGIN
  -- Wait (up to 60 s) for the other session to close the database to new connections ...
  FOR i IN 1..6000 LOOP
    EXIT WHEN (SELECT NOT datallowconn FROM pg_database WHERE datname = current_database());
    PERFORM pg_sleep(0.01);
  END LOOP;
  IF (SELECT datallowconn FROM pg_database WHERE datname = current_database()) THEN
    RAISE EXCEPTION 'the scratch database % was not closed to new connections', current_database();
  END IF;
  -- ... then (up to 30 s: pg_restore's sessions may still be ending) to be its only client.
  FOR i IN 1..3000 LOOP
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                          AND pid <> pg_backend_pid() AND backend_type = 'client backend'
                          AND application_name NOT LIKE @APP@);
    PERFORM pg_sleep(0.01);
  END LOOP;
  PERFORM pg_stat_clear_snapshot();
  IF EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
             AND pid <> pg_backend_pid() AND backend_type = 'client backend'
             AND application_name NOT LIKE @APP@) THEN
    RAISE EXCEPTION 'another session is connected to the scratch database %; not swapping it in', current_database();
  END IF;
END $relocate$;
"""

# Run from the maintenance database once the checking session is connected: close the door.
_FENCE_SQL = r"""
DO $relocate$ BEGIN
  FOR i IN 1..6000 LOOP
    EXIT WHEN (SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE @APP@) >= @N@;
    PERFORM pg_sleep(0.01);
    PERFORM pg_stat_clear_snapshot();
  END LOOP;
END $relocate$;
ALTER DATABASE :"tmpname" ALLOW_CONNECTIONS false;
"""


def check_in_place(conn: Connection, remote: "RemotePg", names: Names, parts: int = 1) -> dict[str, Any]:
    """The restored copy's statistics, taken so that nothing can change it before the swap:
    `parts` sessions connected to the scratch database (each reads its share of the tables,
    largest first, so the pass runs in parallel like pg_restore -j) wait until another
    session has set the database to refuse new connections (ALLOW_CONNECTIONS false:
    superusers included) and until only they are left, then read the statistics. The swap
    (`swap_sql`) renames the still-closed database into place and only then opens it. So
    this single pass over the restored rows is also the move's verification of that
    database (kinds/databases.py reuses it instead of reading every row again);
    `relocate verify` reads them again."""
    token = f"relocate-check-{secrets.token_hex(6)}"
    pattern = q_literal(token + "-%")
    checkers = []
    try:
        for part in range(parts):
            cmd = remote.argv("psql", *PSQL[1:], "-f", "-", db=names.tmp, app=f"{token}-{part}")
            checker = conn.start(shell.line(cmd))
            checker.write(remote.stdin((_CHECK_SQL.replace("@APP@", pattern) + part_stats_sql(part, parts)).encode()))
            checkers.append(checker)
        remote.query(_FENCE_SQL.replace("@APP@", pattern).replace("@N@", str(parts)), MAINTENANCE_DB,
                     tmpname=names.tmp)
    finally:
        results = [c.wait(None) for c in checkers]
    merged: dict[str, Any] = {}
    for part, r in enumerate(results):
        if r.status != 0:
            raise remote.fail(r.stderr.decode("utf-8", "replace"))
        got = json.loads(r.text().strip().splitlines()[-1])
        if part == 0:
            merged = got
        else:
            merged["tables"].update(got["tables"])
    return merged


def swap_sql(names: Names, existing: bool) -> str:
    swap = ""
    if existing:
        swap += (f"DROP DATABASE IF EXISTS {q_ident(names.old)} WITH (FORCE);\n"
                 f"ALTER DATABASE {q_ident(names.final)} RENAME TO {q_ident(names.old)};\n")
    swap += f"ALTER DATABASE {q_ident(names.tmp)} RENAME TO {q_ident(names.final)};\n"
    swap += f"ALTER DATABASE {q_ident(names.final)} ALLOW_CONNECTIONS true;\n"
    if existing:
        swap += f"DROP DATABASE {q_ident(names.old)} WITH (FORCE);\n"
    return swap

class _Bulk:
    """`ssh` to the target for the dump's upload (ssh/openssh.py: pinned to the host
    key paramiko checked), started early; paramiko carries it when `ssh` cannot log in."""

    def __init__(self, ssh: OpenSsh) -> None:
        self.ssh = ssh

    @staticmethod
    def open(conn: Connection) -> "_Bulk | None":
        ssh = OpenSsh.started(conn)
        return _Bulk(ssh) if ssh is not None else None

    @staticmethod
    def ready(bulk: "_Bulk | None", conn: Connection) -> Any:
        """Something with Connection's `start` for the upload: `ssh`, or conn itself."""
        return bulk if bulk is not None and bulk.ssh.ready() else conn

    def start(self, command: str) -> OpenSshExec:
        return self.ssh.start(command, self.ssh.first)

    def close(self) -> None:
        self.ssh.close()


class _Closed:
    """Files of one directory as pg_dump writes them (Linux inotify, through libc):
    `wait` returns the names closed after writing (a directory-format dump's file is
    complete once pg_dump closes it) and keeps `writing`, the names created and not
    closed yet."""

    CLOSE_WRITE, MOVED_TO, CREATE = 0x08, 0x80, 0x100

    def __init__(self, directory: Path) -> None:
        import ctypes

        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.writing: dict[str, None] = {}  # in the order created
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        mask = self.CLOSE_WRITE | self.MOVED_TO | self.CREATE
        if self.fd < 0 or self._libc.inotify_add_watch(self.fd, os.fsencode(directory), mask) < 0:
            if self.fd >= 0:
                os.close(self.fd)
            raise OSError("inotify unavailable")
        self._bell = os.pipe()  # `wake`: the dump ended, stop waiting

    def wake(self) -> None:
        os.write(self._bell[1], b"!")

    def wait(self, timeout: float) -> list[str]:
        import select
        import struct

        ready = select.select([self.fd, self._bell[0]], [], [], timeout)[0]
        if self.fd not in ready:
            return []
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        closed, at = [], 0
        while at + 16 <= len(buf):
            _, mask, _, size = struct.unpack_from("iIII", buf, at)
            name = os.fsdecode(buf[at + 16:at + 16 + size].rstrip(b"\0"))
            at += 16 + size
            if not name:
                continue
            if mask & self.CREATE:
                self.writing[name] = None
            else:
                self.writing.pop(name, None)
                closed.append(name)
        return list(dict.fromkeys(closed))

    def close(self) -> None:
        for fd in (self.fd, *self._bell):
            os.close(fd)


# The target's end of an upload in pieces: GNU tar runs this for each member, with the
# member's bytes on stdin. The staging directory is the dump's alone (0700, made new).
APPEND = 'umask 077 && cat >> "$TAR_FILENAME"'
PIECE_MIN, PIECE_MAX = 4 << 20, 64 << 20


class _Upload:
    """A tar stream into the target's staging directory (1 MiB writes), one of two ways:

    - whole files, into `tar x`: a file goes once pg_dump has closed it (a later member
      of a name replaces an earlier one);
    - in pieces (`appends`, GNU tar on the target: `tar x --to-command` appends each
      member to its name, `APPEND`): a data file goes up while pg_dump still writes it,
      a piece whenever enough was added (4 MiB, then a quarter of what went before, at
      most 64 MiB: a few dozen forks of `cat` on the target per GiB), the rest once it
      is closed. The biggest table's file, which pg_dump closes last, then no longer waits
      for the dump's end to travel. pg_dump writes a data file once, front to back;
      toc.dat, which it writes at its start and again at its end, goes whole at the end.
    """

    def __init__(self, target: Any, directory: Path, appends: bool = False) -> None:
        import tarfile

        self.target, self.directory, self.buf, self.appends = target, directory, bytearray(), appends
        self.sent: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) as sent (appends: (bytes sent, 0))
        self.tar = tarfile.open(fileobj=self, mode="w|", format=tarfile.GNU_FORMAT)  # type: ignore[call-overload]

    def write(self, data: bytes) -> int:
        self.buf += data
        if len(self.buf) >= 1 << 20:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            self.target.write(bytes(self.buf))
            self.buf.clear()

    def send(self, name: str, piece: int = 0) -> None:
        """The file whole; with `appends`, what was added since the last piece (only when
        that is at least `piece` bytes)."""
        with open(self.directory / name, "rb") as fh:
            st = os.fstat(fh.fileno())
            info = self.tar.gettarinfo(fileobj=fh, arcname=name)
            if self.appends:
                done = self.sent.get(name, (0, 0))[0]
                if st.st_size < done:
                    raise OSError(f"{name} in the dump shrank while it was sent ({st.st_size} < {done} bytes)")
                if st.st_size == done or st.st_size - done < piece:
                    return
                fh.seek(done)
                info.size = st.st_size - done
                self.tar.addfile(info, fh)
                self.sent[name] = (st.st_size, 0)
                return
            self.tar.addfile(info, fh)
        self.sent[name] = (st.st_size, st.st_mtime_ns)

    def grow(self, name: str) -> None:
        """With `appends`: a piece of a file pg_dump is still writing, when enough was added."""
        done = self.sent.get(name, (0, 0))[0]
        self.send(name, piece=max(PIECE_MIN, min(PIECE_MAX, done // 4)))

    def changed(self, name: str) -> bool:
        """A regular file not sent yet, or changed since it was (appends: grown)."""
        try:
            st = os.lstat(self.directory / name)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        if self.appends:
            return st.st_size != self.sent.get(name, (0, 0))[0]
        return self.sent.get(name) != (st.st_size, st.st_mtime_ns)

    def unsent(self) -> list[str]:
        """Files not sent, or changed since they were (sent again: a later member wins in tar x)."""
        out = [name for name in os.listdir(self.directory) if self.changed(name)]
        return sorted(out, key=lambda n: n == "toc.dat")  # the table of contents last

    def finish(self) -> None:
        self.tar.close()
        self.flush()


def upload_command(appends: bool) -> list[str]:
    """The target's end of `_Upload`, run in the staging directory."""
    if appends:
        return ["tar", "-x", "-f", "-", "--to-command", APPEND]
    return ["tar", "-x", "-f", "-"]


def dump_and_upload(local: "LocalPg", dump_dir: Path, snap_id: str, jobs: int, start: Any, fail: Any,
                    appends: bool = False) -> None:
    """The directory-format dump into `dump_dir` (the snapshot's copy), its files sent to
    the target's staging directory while pg_dump runs (`_Upload`: each file once it is
    closed, or, with `appends`, in pieces as it is written), so the upload runs beside
    the dump instead of after it (the peers' `pg_dump -Fd; tar | ssh tar x` run one after
    the other). Whatever was not sent while the dump ran (toc.dat, written last; a file
    changed after it was sent) goes at the end. Without inotify: the dump, then the
    whole directory."""
    import threading

    dump_dir.mkdir(parents=True, exist_ok=True)  # pg_dump -Fd accepts an existing empty directory
    try:
        watch: _Closed | None = _Closed(dump_dir)
    except (OSError, AttributeError):
        watch = None
    done, box = threading.Event(), {}
    uploads: list[_Upload] = []
    dumps: list["subprocess.Popen[str]"] = []

    def upload() -> _Upload:
        # Started once pg_dump runs: the target's `ssh` login (0.3 s here) is then off the
        # dump's path (the dump waited for it).
        if not uploads:
            uploads.append(_Upload(start(), dump_dir, appends))
        return uploads[0]

    def follow() -> None:
        try:
            up = upload()
            while True:
                last = done.is_set()  # the dump ended: one more read drains what was queued
                assert watch is not None
                # pg_dump's last step syncs its output: each file opened read-write and closed
                # again, a second "closed after writing". A file sent as it is now is not sent
                # again (it was: 0.3-0.6 s of a 554 MiB database's move went to sending it twice).
                for name in watch.wait(0.1 if appends else 0.2):
                    if name != "toc.dat" and up.changed(name):
                        up.send(name)
                if appends:
                    for name in list(watch.writing):
                        if name != "toc.dat":
                            up.grow(name)
                if last:
                    return
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = exc
            for dump in dumps:  # the copy cannot reach the target: no point dumping on
                dump.terminate()

    sender = threading.Thread(target=follow, name="relocate-pg-upload", daemon=True) if watch is not None else None

    def running(dump: "subprocess.Popen[str]") -> None:
        dumps.append(dump)
        if sender is not None:
            sender.start()

    try:
        try:
            local.dump_to(dump_dir, snapshot=snap_id, jobs=jobs, running=running)
        finally:
            done.set()
            if watch is not None:
                watch.wake()  # the sender's last round starts now, not at its next timeout
            if sender is not None and sender.is_alive():
                sender.join()
            if watch is not None:
                watch.close()
            if "error" in box:  # the upload's failure, not the dump it stopped
                raise box["error"]
        up = upload()
        for name in up.unsent():
            up.send(name)
        up.finish()
    except BaseException:
        for up in uploads:
            _kill(up.target)
        raise
    result = uploads[0].target.wait(None)
    if result.status != 0:
        refused = nolinks.refusal(result.status, result.stderr)
        # tar's last line only says it failed ("Exiting with failure status ..."): the first says why
        said = [ln for ln in result.stderr.decode("utf-8", "replace").splitlines()
                if ln.strip() and "Exiting with failure status" not in ln]
        raise refused or fail(f"sending the dump to the target failed: {said[0] if said else 'tar exited ' + str(result.status)}")


def unstage_command(staging: str) -> str:
    """Remove the dump's staging directory `<root>/.relocate/db/<name>`, then `db/` itself
    when that leaves it empty (README, "Where things land on the target", lists no `db/`),
    never through a symlinked component (nolinks.py: `rm -rf` would follow one). `rmdir`
    removes only an empty directory, never a link, and another database's staging (or
    anything else put there) keeps `db/`; its failure is no error."""
    root = staging.rsplit("/" + layout.STATE_DIR + "/", 1)[0]
    parent = posixpath.dirname(staging)
    return nolinks.guarded(root, [staging], shell.line(["rm", "-rf", "--", staging]) + " && { "
                           + shell.line(["rmdir", "--", parent]) + " 2>/dev/null || true; }")


def _kill(target: Any) -> None:
    """Stop a remote `tar x` mid-stream (staging is removed by the caller)."""
    if isinstance(target, OpenSshExec):
        target.kill()
    else:
        try:
            target.chan.close()
        except Exception:  # noqa: BLE001 - already gone
            pass


# --------------------------------------------------------------------------- the engine, as the component drives it

LOCAL_TOOLS = ("pg_dump", "psql", "pg_restore")  # pg_restore: the in-place path replays the dump as SQL
TARGET_TOOLS = ("psql", "pg_restore")


def _json_object(text: str) -> dict[str, Any]:
    """psql's output of our own SQL, which builds one JSON object (a ValueError like json's own otherwise)."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object from psql, got {text[:80]!r}")
    return doc


def probe_source(src: DbAddress, what: str) -> dict[str, Any]:
    """Read-only: version, size, tables, extensions, owner, roles."""
    local = LocalPg(src, what)
    with local.session():
        facts = _json_object(local.query(SOURCE_FACTS_SQL))
        facts["roles"] = local.json(ROLES_SQL)
    facts["major"] = major(facts["version_num"])
    return facts


def source_stats(src: DbAddress, what: str) -> dict[str, Any]:
    """Today's statistics (a full pass over every table): only asked for when the target
    already holds a non-empty database to compare with."""
    local = LocalPg(src, what)
    with local.session():
        return _json_object(local.query(STATS_SQL).splitlines()[-1])


def probe_target(conn: Connection, dst: DbAddress, programs: dict[str, str] | None = None) -> dict[str, Any]:
    """{'error': kind, 'message'} when the target server cannot be used; else its facts, and
    when the database exists: whether it is empty, and its statistics."""
    names = Names(dst.dbname)
    remote = RemotePg(conn, dst, programs=programs)
    out, kind, msg = remote.try_query(TARGET_FACTS_SQL, MAINTENANCE_DB, dbname=names.final,
                                      tmpname=names.tmp, oldname=names.old)
    if out is None:
        return {"error": kind, "message": msg}
    facts: dict[str, Any] = json.loads(out)
    facts["major"] = major(facts["version_num"])
    if facts["exists"]:
        facts.update(_json_object(remote.query(TARGET_DB_SQL, names.final)))  # objects, extensions
        facts["stats"] = None
        if facts["objects"] and not facts.get("unreadable"):
            args = [*PSQL[1:], "-f", "-"]
            r = conn.run(shell.line(remote.argv("psql", *args, db=names.final)), remote.stdin(STATS_SQL.encode()),
                         timeout=3600, check=False)
            err = r.stderr.decode("utf-8", "replace")
            reason = error_reason(err)
            denied = reason if "permission denied" in reason else ""
            if r.status == 0:
                facts["stats"] = json.loads(r.text().strip().splitlines()[-1])
            elif denied:  # what the catalog check above cannot see (a large object's content)
                facts["unreadable"] = [{"object": "", "owner": "", "lacks": "", "message": denied}]
            else:
                raise remote.fail(err)
    return facts


def error_reason(err: str) -> str:
    """What PostgreSQL said went wrong, from psql's stderr: its ERROR line's text (psql's
    last line is often the failing query's own text), or "" when there is none."""
    return next((ln.split("ERROR:", 1)[1].strip() for ln in err.splitlines() if "ERROR:" in ln), "")


def target_stats(conn: Connection, dst: DbAddress) -> dict[str, Any] | None:
    out, kind, msg = RemotePg(conn, dst).try_query(STATS_SQL, dst.dbname)
    if out is None:
        if kind == "missing-db":
            return None
        raise TargetError(f"{dst.dbname}: {error_reason(msg)}" if error_reason(msg) else msg)
    return _json_object(out.splitlines()[-1])


# --------------------------------------------------------------------------- restore paths

SWAP = "swap"  # a scratch database, checked while closed, renamed into place: needs CREATEDB
IN_PLACE = "in-place"  # the existing EMPTY database, filled and checked in one transaction


def restore_path(tfacts: dict[str, Any], state: str) -> str:
    """Which restore a target allows: the swap when the login may create databases, else
    into the existing database (only when it is empty: see `move_in_place`)."""
    return SWAP if tfacts.get("createdb") else IN_PLACE


def uncreatable_extensions(wanted: list[str], tfacts: dict[str, Any], path: str) -> dict[str, str]:
    """The source's extensions the target login may not create where the restore runs:
    {name: "superuser" | "create"}, by PostgreSQL's rules for CREATE EXTENSION. A superuser
    may create any; a trusted extension (or one whose control file says `superuser = false`)
    needs CREATE on the database; any other, a superuser. In place, an extension the
    database already has is fine (the dump says CREATE EXTENSION IF NOT EXISTS); the swap
    restores into a new database from template0, which has none, made by the login (so it
    may create in it). One the target does not offer at all is the "lacks" blocker's."""
    if tfacts.get("superuser"):
        return {}
    rules: dict[str, dict[str, Any]] = tfacts.get("extension_rules") or {}
    have = set(tfacts.get("extensions") or ()) if path == IN_PLACE else set()
    may_create = bool(tfacts.get("create_in_db")) if path == IN_PLACE else True
    out: dict[str, str] = {}
    for name in wanted:
        rule = rules.get(name)
        if rule is None or name in have:
            continue
        if rule.get("trusted") or not rule.get("superuser", True):
            if not may_create:
                out[name] = "create"
        else:
            out[name] = "superuser"
    return out


def keeps_owners(roles: list[dict[str, Any]], tfacts: dict[str, Any]) -> bool:
    """In place, objects keep their owners and grants only if every role the dump names
    exists on the target and the login may act as it (no role can be created there)."""
    member = set(tfacts.get("member_of") or ())
    return all(r["name"] in member for r in roles)


def swap_keeps_owners(roles: list[dict[str, Any]], owner: str, tfacts: dict[str, Any]) -> bool:
    """Whether the swap's restore keeps the dump's owners and grants. A superuser login does
    (it creates the roles the target lacks). Any other login creates no role, and
    PostgreSQL lets it give an object to a role x (ALTER ... OWNER TO x) only when it is a
    member of x (15 and older) / may SET ROLE to x (16+) AND x may CREATE in the object's
    schema (ALTER SCHEMA ... OWNER TO x: CREATE on the database) at that moment, before
    the dump's grants (restored last) exist. In a new database that holds for its owner
    (public belongs to pg_database_owner), not for other roles: so the owners are kept
    only when the source's owner is kept (`owner_kept`) and every role the dump names is
    that owner, the common "the app's role owns its database" case. Otherwise
    pg_restore would stop at an `ALTER ... OWNER TO`, so the objects are restored owned by
    the login, without grants (--no-owner --no-privileges), and the plan warns (db-owners).
    The database's owner counts as named only when it owns or holds something (`objects`)."""
    named = {r["name"] for r in roles if r.get("objects", True)}
    if tfacts.get("superuser") or not named:
        return True
    return named == {owner} and owner_kept(owner, tfacts)


def owner_kept(owner: str, tfacts: dict[str, Any]) -> bool:
    """Whether the swap's new database may be created OWNER the source database's owner.
    `CREATE DATABASE ... OWNER x` (and `ALTER DATABASE ... OWNER TO x`) needs a superuser,
    or a login that is a member of x (15 and older) / may SET ROLE to x (16+); the swap
    then alters, renames and drops that database, which needs x's privileges. A login with
    CREATEDB alone (the source's owner being e.g. `postgres`) may do neither, nor could it
    hand the database over later: so, rather than block, the database is created owned by
    the login itself, the restored objects keep the dump's owners when `swap_keeps_owners`
    allows, and the plan warns (db-owner), naming `GRANT x TO login` for keeping x. Chosen
    over a blocker because PostgreSQL's rules allow it cleanly and the copy is complete
    and checked either way; only the database's owner (and, without `swap_keeps_owners`,
    the objects' owners and grants) differ from the source's, which the plan says."""
    if tfacts.get("superuser"):
        return True
    return owner in set(tfacts.get("member_of") or ()) and owner in set(tfacts.get("privileges_of") or ())


def _in_place_tail(source_stats: dict[str, Any]) -> bytes:
    """After the dump, still inside its transaction: the copy's statistics, compared in SQL
    with the source's; COMMIT only when equal, else ROLLBACK (the database stays empty)."""
    tag = "relocate_" + secrets.token_hex(6)
    src = json.dumps(source_stats, ensure_ascii=False)
    assert f"${tag}$" not in src
    keys = ("tables", "sequences", "large_objects")
    same = " AND ".join(f"coalesce(g->'{k}', '{{}}') = coalesce(s->'{k}', '{{}}')" for k in keys)
    return ("\\echo relocate-stats\n"  # psql output: the marker line, then the JSON line
            + STATS_SQL.rstrip().rstrip(";") + " \\gset relocate_\n"
            + "SELECT :'relocate_json_build_object';\n"
            + f"SELECT {same} AS relocate_same FROM (SELECT :'relocate_json_build_object'::jsonb AS g, "
            + f"${tag}${src}${tag}$::jsonb AS s) x \\gset\n"
            + "\\if :relocate_same\nCOMMIT;\n\\echo relocate-committed\n\\else\nROLLBACK;\n\\endif\n").encode()


_TOC_EXTENSION_COMMENT = re.compile(r"^\d+; \d+ \d+ COMMENT - EXTENSION (\S+)")


def _without_extension_comments(dump_dir: Path, present: frozenset[str], listing: Path) -> list[str]:
    """pg_restore options leaving out COMMENT ON EXTENSION for each extension the target
    database already has: only its owner (a superuser, for one the login could not create)
    may comment on it, and the comment is its control file's anyway, already there. The
    table of contents (`pg_restore -l`) with those entries commented out, as `-L`."""
    toc = subprocess.run(["pg_restore", "-l", str(dump_dir)], capture_output=True, text=True, timeout=600)
    if toc.returncode != 0:
        raise TargetError(f"reading the dump {dump_dir}: {last_line(toc.stderr)}")
    lines = toc.stdout.splitlines()
    hits = [i for i, ln in enumerate(lines) if (m := _TOC_EXTENSION_COMMENT.match(ln)) and m.group(1) in present]
    if not hits:
        return []
    for i in hits:
        lines[i] = ";" + lines[i]
    listing.write_text("\n".join(lines) + "\n")
    return ["-L", str(listing)]


def move_in_place(conn: Connection, local: "LocalPg", remote: "RemotePg", names: Names, *, what: str,
                  exact: bool, dump_dir: Path, jobs: int, on_stats: Any, present: frozenset[str] = frozenset()) -> dict[str, Any]:
    """For a login that may not create databases (managed databases): dump into `dump_dir`
    (with the source's statistics taken in the dump's snapshot), then replay it as SQL
    into the existing, empty database inside ONE transaction that also computes the
    copy's statistics and commits only if they equal the source's. Any failure, a
    difference included, rolls everything back: the database is left empty, as it was.
    `exact` False: the dump names roles the login cannot act as, so objects are restored
    owned by the login, without the source's grants (--no-owner --no-privileges).
    `present`: extensions the database already has (their comments are left out)."""
    with local.snapshot() as (snap_id, holder):
        with local.stats_alongside(holder) as stats:
            local.dump_to(dump_dir, snapshot=snap_id, jobs=jobs)
    out: list[bytes] = []
    psql = remote.argv("psql", *PSQL[1:], "-f", "-", db=names.final)
    with tempfile.TemporaryDirectory(prefix="relocate-pg-list-") as tmp:
        opts = ([] if exact else ["--no-owner", "--no-privileges"]) + \
            _without_extension_comments(dump_dir, present, Path(tmp) / "toc.list")
        pipe_to_target(["pg_restore", "-f", "-", *opts, str(dump_dir)], dict(os.environ), conn, shell.line(psql),
                       lambda e: TargetError(f"reading the dump {dump_dir}: {last_line(e)}"),
                       lambda e: TargetError(f"{what}: restoring into {names.final} failed, and was rolled back "
                                             f"(the database is empty, as it was): {last_line(e)}"),
                       head=remote.stdin(b"BEGIN;\n"), tail=_in_place_tail(stats), output=out)
    lines = out[0].decode("utf-8", "replace").splitlines() if out else []
    at = lines.index("relocate-stats") if "relocate-stats" in lines else -1
    got = json.loads(lines[at + 1]) if 0 <= at < len(lines) - 1 else None
    if "relocate-committed" not in lines:
        diffs = on_stats(stats, got) if got is not None else ["no statistics came back"]
        raise TargetError(f"{what}: the restored copy differs from the dump ({'; '.join(diffs[:3]) or 'see the statistics'}); "
                          f"the transaction was rolled back, {names.final} is empty as it was")
    return {"stats": stats, "checked": got, "created_roles": []}


def move(conn: Connection, src: DbAddress, dst: DbAddress, *, what: str, roles: list[dict[str, Any]],
         owner: str, encoding: str, existing: bool, dump_dir: Path | None, staging: str, jobs: int,
         on_stats: Any, path: str = SWAP, scratch: Path | None = None, appends: bool = False,
         programs: dict[str, str] | None = None) -> dict[str, Any]:
    """Dump the source (consistent snapshot) and restore it on the target into a scratch
    database, check it, then swap it in under the final name. A failure leaves the final
    database as it was. `on_stats(stats)` returns a list of differences (empty = equal).
    `path` IN_PLACE: `move_in_place` (the dump goes to `scratch` when no `dump_dir` is kept).
    `appends`: the target's tar is GNU tar, so a kept dump's files go up in pieces as
    pg_dump writes them (`_Upload`). `programs`: RemotePg's."""
    names = Names(dst.dbname)
    if path == IN_PLACE:
        local, remote = LocalPg(src, what), RemotePg(conn, dst, programs=programs)
        with local.session():
            tfacts = json.loads(remote.query(TARGET_FACTS_SQL, MAINTENANCE_DB, dbname=names.final,
                                             tmpname=names.tmp, oldname=names.old))
            present = frozenset(_json_object(remote.query(TARGET_DB_SQL, names.final))["extensions"])
            where = dump_dir if dump_dir is not None else scratch
            assert where is not None, "an in-place restore needs a directory for the dump"
            return move_in_place(conn, local, remote, names, what=what, exact=keeps_owners(roles, tfacts),
                                 dump_dir=where, jobs=jobs, on_stats=on_stats, present=present)
    local, remote = LocalPg(src, what), RemotePg(conn, dst, programs=programs)
    with local.session():
        made: dict[str, Any] = {}  # what make_scratch() learnt, also for the cleanup should the move fail

        def make_scratch() -> dict[str, Any]:
            """The target's facts, the roles the dump names, an empty scratch database."""
            tfacts: dict[str, Any] = json.loads(remote.query(TARGET_FACTS_SQL, MAINTENANCE_DB, dbname=names.final,
                                             tmpname=names.tmp, oldname=names.old))
            # Roles are created (and RDS placeholders used) only by a superuser login, the one
            # that may then give objects to them; any other keeps the owners only when it may
            # act as every role the dump names, which exist already (`swap_keeps_owners`), else
            # the restore drops owners and grants. The database's owner: `owner_kept`.
            existing_roles = set(tfacts["roles"])
            su = bool(tfacts.get("superuser"))
            made["exact"] = swap_keeps_owners(roles, owner, tfacts)
            made["created"] = [r["name"] for r in roles if su and r["name"] not in existing_roles and not r.get("internal")]
            created = create_roles_sql(roles, existing_roles) if su else ""
            made["placeholders"] = placeholders = rds_placeholders(roles, existing_roles) if su else []
            admin = f"DROP DATABASE IF EXISTS {q_ident(names.tmp)} WITH (FORCE);\n" + created + "\n"
            made["owner_ok"] = owner_ok = (bool(owner) and owner_kept(owner, tfacts)
                                           and (owner in existing_roles or (su and any(r["name"] == owner for r in roles)))
                                           and owner not in placeholders)
            admin += (f"CREATE DATABASE {q_ident(names.tmp)} TEMPLATE template0 ENCODING {q_literal(encoding)}"
                      + (f" OWNER {q_ident(owner)}" if owner_ok else "") + ";\n")
            remote.query(admin, MAINTENANCE_DB)
            return tfacts

        # The dump's upload goes through `ssh` like the peers' `tar | ssh tar x` (paramiko
        # encrypts in Python, at about half the speed); its login runs while the dump does.
        bulk = _Bulk.open(conn) if dump_dir is not None else None
        try:
            # The scratch database is made on a thread while the source's snapshot opens and
            # the dump starts: its two round trips to the target (~0.14 s here) are off the
            # move's path. pg_restore waits for it; a failure joins it before the cleanup.
            with in_background(make_scratch, on_abort=lambda: None, name="relocate-target-scratch") as target_ready, \
                    local.snapshot() as (snap_id, holder):
                def restore() -> list[str]:  # once make_scratch() has said whether the owners are kept
                    return ["pg_restore", "--no-password", "--dbname", names.tmp,
                            *([] if made["exact"] else ["--no-owner", "--no-privileges"])]

                with local.stats_alongside(holder) as stats:  # the source's statistics, during the dump
                    if dump_dir is None:
                        target_ready()  # the stream is restored as it comes
                        pipe_to_target(local.dump_argv(snapshot=snap_id, jobs=jobs, out=None), local.env, conn,
                                       shell.line(remote.argv(*restore(), db=names.tmp)), local.fail, remote.fail,
                                       head=remote.stdin())
                    else:
                        # staging is <root>/.relocate/db/<name>: never through a symlinked component
                        root = staging.rsplit("/" + layout.STATE_DIR + "/", 1)[0]
                        upload = nolinks.guarded(root, [staging], shell.all_of(
                            ["rm", "-rf", "--", staging], ["mkdir", "-m", "700", "-p", "--", staging], ["cd", staging],
                            upload_command(appends)))
                        dump_and_upload(local, dump_dir, snap_id, jobs, lambda: _Bulk.ready(bulk, conn).start(upload),
                                        remote.fail, appends)
                target_ready()  # the scratch database is there (or its failure is raised here)
                placeholders: list[str] = made["placeholders"]
                owner_ok: bool = made["owner_ok"]
                if dump_dir is not None:
                    try:
                        cmd = remote.argv(*restore(), "-j", str(jobs), "-Fd", staging, db=names.tmp)
                        r = conn.run(shell.line(cmd), remote.stdin(), timeout=None, check=False)
                        if r.status != 0:
                            raise remote.fail(r.stderr.decode("utf-8", "replace"))
                    finally:
                        conn.run(unstage_command(staging), check=False, timeout=600)
            if placeholders:  # RDS's own roles: out of the copy, then off the server
                remote.query(strip_roles_sql(placeholders, owner if owner_ok else ""), names.tmp)
                remote.query("".join(f"DROP ROLE {q_ident(r)};\n" for r in placeholders), MAINTENANCE_DB)
            # One pass over the restored copy, with the database closed to everyone else until the swap.
            if bulk is not None:
                bulk.close()
            got = check_in_place(conn, remote, names, parts=max(1, min(jobs, 8)))
            diffs = on_stats(stats, got)
            if diffs:
                raise TargetError(f"{what}: the restored copy differs from the dump ({'; '.join(diffs[:3])}); "
                                  f"{names.final} on the target was left as it was")
            remote.query(swap_sql(names, existing), MAINTENANCE_DB)
        except BaseException:
            if bulk is not None:
                bulk.close()
            try:
                remote.query(f"DROP DATABASE IF EXISTS {q_ident(names.tmp)} WITH (FORCE);\n"
                             + "".join(f"DROP ROLE IF EXISTS {q_ident(r)};\n" for r in made.get("placeholders", ())),
                             MAINTENANCE_DB)
            except Exception:
                pass
            raise
    return {"stats": stats, "checked": got, "created_roles": list(made["created"])}


def local_tools() -> tuple[str, ...]:
    return LOCAL_TOOLS


def dump_tool_major() -> int | None:
    return tool_major([program("pg_dump"), "--version"])  # the one the dump runs
