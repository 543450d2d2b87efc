"""MySQL/MariaDB: facts, a `--single-transaction` dump with routines, triggers and
events, restored with the mysql client on the target over SSH, exact row counts and a
sample-row checksum per table (`stats_sql`: PostgreSQL's sample rule).

Passwords travel only in `--defaults-extra-file` option files (0600; here removed after
use, on the target never named while they hold a password: dbfiles.RemoteSecret).
Limits, said plainly: the statistics are taken in relocate's own consistent-snapshot
transaction, opened right before mysqldump starts (MySQL cannot share one snapshot, and
RDS forbids FLUSH TABLES WITH READ LOCK), so a write committed in that instant makes the
move fail with a difference (never a silent pass); DEFINER clauses are rewritten to
CURRENT_USER on the way to the target (`rewrite_definer`, which also touches the text
"DEFINER=a@b" inside a routine body); a replaced database is dropped before the restore
(no scratch-and-swap: MySQL cannot rename a database with its views and routines).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from relocate.errors import RelocateError, SourceError, TargetError, TransientError
from relocate.execute.dbfiles import (SECRET_FD, RemoteSecret, classify, in_background, last_line, local_secret_file,
                                      mysql_defaults, pipe_to_target)
from relocate.sources.rds import DbAddress
from relocate.targets import shell
from relocate.ssh.connection import Connection

TARGET_TOOLS = ("mysql",)
FACTS_SQL = """SELECT VERSION(), (SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables
 WHERE table_schema = DATABASE()), (SELECT COUNT(*) FROM information_schema.tables
 WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE');
"""
TABLES_SQL = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY 1;\n"


def _first(*names: str) -> str:
    return next((n for n in names if shutil.which(n)), names[0])


def local_tools() -> tuple[str, ...]:
    return (_first("mariadb-dump", "mysqldump"), _first("mariadb", "mysql"))


def dump_tool_major() -> int | None:
    return None  # mysqldump reads older and newer servers alike


def version_key(version: str) -> int:
    """'10.11.6-MariaDB-0+deb12u1' -> 1011: major*100+minor, enough to order servers."""
    nums = version.split("-")[0].split(".")
    try:
        return int(nums[0]) * 100 + int(nums[1])
    except (ValueError, IndexError):
        return 0


def q_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def q_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


# Every base table's columns in order, and its primary-key columns in key order.
COLUMNS_SQL = """SELECT c.table_name, c.column_name, COALESCE(k.ordinal_position, 0)
 FROM information_schema.columns c
 JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
  AND t.table_type = 'BASE TABLE'
 LEFT JOIN information_schema.key_column_usage k ON k.table_schema = c.table_schema AND k.table_name = c.table_name
  AND k.column_name = c.column_name AND k.constraint_name = 'PRIMARY'
 WHERE c.table_schema = DATABASE() ORDER BY c.table_name, c.ordinal_position;
"""

SNAPSHOT_SQL = "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ;\nSTART TRANSACTION WITH CONSISTENT SNAPSHOT;\n"


def table_layout(out: str) -> dict[str, dict[str, list[str]]]:
    """COLUMNS_SQL's rows -> {table: {"columns": [...], "key": [...]}}."""
    tables: dict[str, dict[str, list[str]]] = {}
    keyed: dict[str, list[tuple[int, str]]] = {}
    for row in _rows(out):
        t = tables.setdefault(row[0], {"columns": [], "key": []})
        t["columns"].append(row[1])
        if int(row[2]):
            keyed.setdefault(row[0], []).append((int(row[2]), row[1]))
    for name, cols in keyed.items():
        tables[name]["key"] = [c for _, c in sorted(cols)]
    return tables


def stats_sql(tables: dict[str, dict[str, list[str]]], *, snapshot: bool = True) -> str:
    """Per table, one output row: name, exact count, sample checksum, all in one
    consistent-snapshot transaction (`snapshot=False`: the caller already opened it).

    The sample is PostgreSQL's rule (execute/pg.py): rows numbered in primary-key order
    (the whole row's text, compared as binary, when there is no key); the first 100, the
    last 100 and every k-th row, k = max(1, rows // 1000). A row's text is its columns
    through QUOTE() (NULL stays NULL, blobs byte for byte) joined by commas; the checksum
    is the md5 of the sampled rows' md5s joined by newlines, in that order. Needs window
    functions (MySQL 8.0, MariaDB 10.2 or newer)."""
    out = ["SET SESSION group_concat_max_len = 67108864;\n"]
    if snapshot:
        out.append(SNAPSHOT_SQL)
    for name in sorted(tables):
        cols = tables[name]["columns"]
        text = "CONCAT_WS(',', " + ", ".join(f"QUOTE(x.{q_ident(c)})" for c in cols) + ")"
        order = ", ".join(f"x.{q_ident(c)}" for c in tables[name]["key"]) or f"CAST({text} AS BINARY)"
        out.append(
            f"SELECT COUNT(*) INTO @relocate_n FROM {q_ident(name)};\n"
            f"SELECT {q_str(name)}, @relocate_n, MD5(COALESCE(GROUP_CONCAT(s.h ORDER BY s.relocate_rn SEPARATOR '\\n'), ''))"
            f" FROM (SELECT q.relocate_rn, q.h FROM (SELECT ROW_NUMBER() OVER (ORDER BY {order}) AS relocate_rn,"
            f" MD5({text}) AS h FROM {q_ident(name)} x) q"
            " WHERE q.relocate_rn <= 100 OR q.relocate_rn > @relocate_n - 100"
            " OR MOD(q.relocate_rn, GREATEST(1, @relocate_n DIV 1000)) = 0) s;\n")
    out.append("COMMIT;\n")
    return "".join(out)


def _rows(out: str) -> list[list[str]]:
    return [ln.split("\t") for ln in out.splitlines() if ln]


def parse_stats(out: str) -> dict[str, Any]:
    counts = {r[0]: {"rows": int(r[1]), "sample": r[2]} for r in _rows(out)}
    return {"tables": counts, "sequences": {}, "large_objects": {}}


def _stats(query: Callable[[str], str]) -> dict[str, Any]:
    return parse_stats(query(stats_sql(table_layout(query(COLUMNS_SQL)))))


_NAME = rb"(?:`(?:[^`]|``)*`|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[A-Za-z0-9_.$%-]+)"
_DEFINER = re.compile(rb"DEFINER\s*=\s*(?:" + _NAME + rb"\s*@\s*" + _NAME + rb"|" + _NAME + rb")")


def rewrite_definer(line: bytes) -> bytes:
    """`DEFINER=`someone`@`host`` -> `DEFINER=CURRENT_USER` in a dump line: views, triggers,
    routines and events then belong to the target's login (the user restoring), which
    exists, instead of a source account (RDS's master user, `rdsadmin`@`localhost`) that
    usually does not. SQL SECURITY clauses stay as they were. Row data is left alone."""
    if line.startswith(b"INSERT INTO ") or b"DEFINER" not in line:
        return line
    return _DEFINER.sub(b"DEFINER=CURRENT_USER", line)


class LocalMy:
    def __init__(self, addr: DbAddress, what: str) -> None:
        self.addr, self.what = addr, what
        self.defaults: Path | None = None

    def fail(self, stderr: str) -> Exception:
        kind, msg = classify(stderr), last_line(stderr)
        if kind == "auth":
            return SourceError(f"{self.what}: login refused at {self.addr.label()}: {msg}", hint="check password_from and the user")
        if kind == "unreachable":
            return TransientError(f"{self.what}: cannot reach {self.addr.label()}: {msg}", hint="running again retries")
        return SourceError(f"{self.what}: {msg}")

    def argv(self, tool: str, *args: str) -> list[str]:
        return [tool, f"--defaults-extra-file={self.defaults}", *args]

    def query(self, sql: str) -> str:
        r = subprocess.run(self.argv(local_tools()[1], "-N", "-B", self.addr.dbname), input=sql,
                           capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise self.fail(r.stderr)
        return r.stdout

    @contextmanager
    def snapshot_stats(self, tables: dict[str, dict[str, list[str]]]) -> Iterator[dict[str, Any]]:
        """Open a consistent-snapshot transaction, THEN run the `with` body (which starts
        mysqldump --single-transaction, whose own snapshot therefore starts right after
        ours), while the statistics run in our snapshot on a thread. The yielded dict is
        filled when the block ends. MySQL cannot share one snapshot between two sessions
        (and FLUSH TABLES WITH READ LOCK is not allowed on RDS), so a write committed in the
        instant between the two START TRANSACTIONs makes the restored copy differ from
        these statistics: the move then fails and says so; it never passes silently."""
        proc = subprocess.Popen(self.argv(local_tools()[1], "-N", "-B", "--unbuffered", self.addr.dbname),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(SNAPSHOT_SQL + "SELECT 'relocate:snapshot';\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "relocate:snapshot":
                proc.kill()
                raise self.fail(proc.communicate()[1])

            result: dict[str, Any] = {}
            with in_background(lambda: proc.communicate(stats_sql(tables, snapshot=False), timeout=None),
                               on_abort=proc.kill) as outcome:
                yield result
            out, err = outcome()
            if proc.returncode != 0:
                raise self.fail(err or "")
            result.update(parse_stats(out))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def dump_argv(self) -> list[str]:
        return self.argv(local_tools()[0], "--single-transaction", "--routines", "--triggers", "--events",
                         "--hex-blob", "--no-tablespaces", "--default-character-set=utf8mb4", self.addr.dbname)


class RemoteMy:
    """mysql run on the target; every command from `argv` gets `stdin()` in front of its input."""

    def __init__(self, conn: Connection, addr: DbAddress) -> None:
        self.conn, self.addr = conn, addr
        pw = addr.password.reveal() if addr.password else ""
        self.secret = RemoteSecret(mysql_defaults(addr.user, pw, addr.host, addr.port), ".cnf")

    def fail(self, stderr: str) -> TargetError:
        return TargetError(f"target database {self.addr.label()}: {last_line(stderr)}")

    def argv(self, *args: str) -> list[str]:
        return self.secret.argv(["mysql", f"--defaults-extra-file={SECRET_FD}", *args])

    def stdin(self, data: bytes = b"") -> bytes:
        return self.secret.stdin(data)

    def query(self, sql: str, db: str = "") -> str:
        r = self.conn.run(shell.line(self.argv("-N", "-B", *([db] if db else []))), self.stdin(sql.encode()),
                          timeout=3600, check=False)
        if r.status != 0:
            raise self.fail(r.stderr.decode("utf-8", "replace"))
        return r.text()


def _local(addr: DbAddress) -> AbstractContextManager[Path]:
    pw = addr.password.reveal() if addr.password else ""
    return local_secret_file(mysql_defaults(addr.user, pw, addr.host, addr.port), ".cnf")


def probe_source(src: DbAddress, what: str) -> dict[str, Any]:
    local = LocalMy(src, what)
    with _local(src) as local.defaults:
        version, size, tables = _rows(local.query(FACTS_SQL))[0]
    return {"version": version, "major": version_key(version), "size": int(size), "tables": int(tables),
            "extensions": [], "roles": [], "owner": "", "encoding": "utf8mb4"}


def source_stats(src: DbAddress, what: str) -> dict[str, Any]:
    local = LocalMy(src, what)
    with _local(src) as local.defaults:
        return _stats(local.query)


def probe_target(conn: Connection, dst: DbAddress) -> dict[str, Any]:
    remote = RemoteMy(conn, dst)
    try:
        version = remote.query("SELECT VERSION();").strip()
    except TargetError as exc:
        return {"error": classify(exc.message), "message": exc.message}
    lit = dst.dbname.replace("\\", "\\\\").replace("'", "''")
    objects = int(remote.query(f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{lit}';").strip())
    exists = remote.query(f"SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{lit}';").strip() == "1"
    stats = _stats(lambda sql: remote.query(sql, dst.dbname)) if objects else None
    return {"version": version, "major": version_key(version), "available": [], "roles": [], "exists": exists,
            "objects": objects, "stats": stats}


def target_stats(conn: Connection, dst: DbAddress) -> dict[str, Any] | None:
    facts = probe_target(conn, dst)
    if "error" in facts:
        raise TargetError(facts["message"])
    return facts["stats"] if facts["exists"] else None


def move(conn: Connection, src: DbAddress, dst: DbAddress, *, what: str, roles: list[dict[str, Any]], owner: str,
         encoding: str, existing: bool, dump_dir: Path | None, staging: str, jobs: int, on_stats: Any) -> dict[str, Any]:
    local, remote = LocalMy(src, what), RemoteMy(conn, dst)
    with _local(src) as local.defaults:
        layout = table_layout(local.query(COLUMNS_SQL))
        remote.query(f"DROP DATABASE IF EXISTS {q_ident(dst.dbname)};\n"
                     f"CREATE DATABASE {q_ident(dst.dbname)} CHARACTER SET utf8mb4;\n")
        try:
            restore = shell.line(remote.argv("--default-character-set=utf8mb4", dst.dbname))
            with local.snapshot_stats(layout) as stats:  # the statistics, during the dump
                if dump_dir is None:
                    pipe_to_target(local.dump_argv(), dict(os.environ), conn, restore, local.fail, remote.fail,
                                   line_filter=rewrite_definer, head=remote.stdin())
                else:
                    dump_dir.mkdir(parents=True, exist_ok=True)
                    out = dump_dir / "dump.sql"
                    with open(out, "wb") as fh:
                        r = subprocess.run(local.dump_argv(), stdout=fh, stderr=subprocess.PIPE, timeout=None)
                    if r.returncode != 0:
                        raise local.fail(r.stderr.decode("utf-8", "replace"))
            if dump_dir is not None:  # the kept dump is mysqldump's own; definers are rewritten on the way
                pipe_to_target(["cat", "--", str(out)], dict(os.environ), conn, restore,
                               lambda e: TargetError(f"reading {out}: {last_line(e)}"), remote.fail,
                               line_filter=rewrite_definer, head=remote.stdin())
            diffs = on_stats(stats, _stats(lambda sql: remote.query(sql, dst.dbname)))
            if diffs:
                raise TargetError(f"{what}: the restored copy differs ({'; '.join(diffs[:3])})")
        except BaseException as exc:
            left = drop_unfinished(remote, dst.dbname)
            if left:
                if isinstance(exc, RelocateError):
                    exc.message = f"{exc.message}; {left}"
                else:  # an interrupt (exit 5) or a bug keeps its own line: say it beside it
                    sys.stderr.write(f"relocate: {left}\n")
            raise
    return {"stats": stats, "created_roles": []}


# How long the cleanup's DROP may wait for a table lock: the server's default
# (lock_wait_timeout, a year) would hang an interrupted move for good.
CLEANUP_LOCK_WAIT_S = 10


def drop_unfinished(remote: RemoteMy, name: str) -> str:
    """Drop the database a failed or interrupted restore left half filled; "" when done,
    else one line saying what is left on the target. First the login's own sessions still in
    that database (the restore's mysql, which holds mysqldump's LOCK TABLES ... WRITE until
    its session ends; a statistics transaction) are ended with KILL: the restore's channel
    is closed by then (pipe_to_target), but its client may still wait on a statement. The
    DROP would otherwise wait on their metadata locks; it waits at most
    CLEANUP_LOCK_WAIT_S, never indefinitely. Like PostgreSQL's DROP ... WITH (FORCE)
    (execute/pg.py), but only the login's sessions: this move created that database."""
    try:
        ids = remote.query(f"SELECT id FROM information_schema.processlist WHERE db = {q_str(name)}"
                           " AND user = SUBSTRING_INDEX(USER(), '@', 1) AND id <> CONNECTION_ID();").split()
        for sid in ids:
            try:
                remote.query(f"KILL CONNECTION {int(sid)};")
            except TargetError:  # it ended on its own meanwhile
                pass
        remote.query(f"SET SESSION lock_wait_timeout = {CLEANUP_LOCK_WAIT_S};\n"
                     f"DROP DATABASE IF EXISTS {q_ident(name)};\n")
    except Exception as exc:  # noqa: BLE001 - the move's own error is what is raised
        why = exc.message if isinstance(exc, RelocateError) else str(exc)
        return (f"the database {name} is left partly restored on the target (dropping it failed: {why}); "
                f"drop it there, or run again with --replace-database {name}")
    return ""
