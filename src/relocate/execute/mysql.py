"""MySQL/MariaDB: facts, a `--single-transaction` dump with routines, triggers and
events, restored with the mysql client on the target over SSH, and exact row counts.

Passwords travel only in `--defaults-extra-file` option files (0600, removed after).
Limits, said plainly: the row counts are taken in their own consistent-snapshot
transaction, not mysqldump's (MySQL cannot share one), so a source still being
written to can differ by the writes in between; there is no sample checksum for
MySQL yet; a replaced database is dropped before the restore (no scratch-and-swap:
MySQL cannot rename a database with its views and routines).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from relocate.errors import SourceError, TargetError, TransientError
from relocate.execute.dbfiles import (classify, last_line, local_secret_file, mysql_defaults, pipe_to_target,
                                      remote_secret_file)
from relocate.sources.rds import DbAddress
from relocate.targets import shell
from relocate.targets.ssh import Connection

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


def count_sql(tables: list[str]) -> str:
    if not tables:
        return "SELECT 1 LIMIT 0;\n"
    parts = [f"SELECT '{t.replace(chr(39), chr(39) * 2)}', COUNT(*) FROM {q_ident(t)}" for t in tables]
    return "START TRANSACTION WITH CONSISTENT SNAPSHOT;\n" + "\nUNION ALL ".join(parts) + ";\nCOMMIT;\n"


def _rows(out: str) -> list[list[str]]:
    return [ln.split("\t") for ln in out.splitlines() if ln]


def _stats(query) -> dict[str, Any]:
    tables = [r[0] for r in _rows(query(TABLES_SQL))]
    counts = {r[0]: {"rows": int(r[1])} for r in _rows(query(count_sql(tables)))}
    return {"tables": counts, "sequences": {}, "large_objects": {}}


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

    def dump_argv(self) -> list[str]:
        return self.argv(local_tools()[0], "--single-transaction", "--routines", "--triggers", "--events",
                         "--hex-blob", "--no-tablespaces", "--default-character-set=utf8mb4", self.addr.dbname)


class RemoteMy:
    def __init__(self, conn: Connection, addr: DbAddress) -> None:
        self.conn, self.addr = conn, addr
        self.defaults: str | None = None

    def fail(self, stderr: str) -> TargetError:
        return TargetError(f"target database {self.addr.label()}: {last_line(stderr)}")

    def argv(self, *args: str) -> list[str]:
        return ["mysql", f"--defaults-extra-file={self.defaults}", *args]

    def query(self, sql: str, db: str = "") -> str:
        r = self.conn.run(shell.line(self.argv("-N", "-B", *([db] if db else []))), sql.encode(), timeout=3600, check=False)
        if r.status != 0:
            raise self.fail(r.stderr.decode("utf-8", "replace"))
        return r.text()


def _local(addr: DbAddress):
    pw = addr.password.reveal() if addr.password else ""
    return local_secret_file(mysql_defaults(addr.user, pw, addr.host, addr.port), ".cnf")


def _remote(conn: Connection, addr: DbAddress):
    pw = addr.password.reveal() if addr.password else ""
    return remote_secret_file(conn, mysql_defaults(addr.user, pw, addr.host, addr.port), ".cnf")


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
    with _remote(conn, dst) as remote.defaults:
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
    with _local(src) as local.defaults, _remote(conn, dst) as remote.defaults:
        stats = _stats(local.query)
        remote.query(f"DROP DATABASE IF EXISTS {q_ident(dst.dbname)};\n"
                     f"CREATE DATABASE {q_ident(dst.dbname)} CHARACTER SET utf8mb4;\n")
        try:
            restore = shell.line(remote.argv("--default-character-set=utf8mb4", dst.dbname))
            if dump_dir is None:
                pipe_to_target(local.dump_argv(), dict(os.environ), conn, restore, local.fail, remote.fail)
            else:
                dump_dir.mkdir(parents=True, exist_ok=True)
                out = dump_dir / "dump.sql"
                with open(out, "wb") as fh:
                    r = subprocess.run(local.dump_argv(), stdout=fh, stderr=subprocess.PIPE, timeout=None)
                if r.returncode != 0:
                    raise local.fail(r.stderr.decode("utf-8", "replace"))
                pipe_to_target(["cat", "--", str(out)], dict(os.environ), conn, restore,
                               lambda e: TargetError(f"reading {out}: {last_line(e)}"), remote.fail)
            diffs = on_stats(stats, _stats(lambda sql: remote.query(sql, dst.dbname)))
            if diffs:
                raise TargetError(f"{what}: the restored copy differs ({'; '.join(diffs[:3])})")
        except BaseException:
            try:
                remote.query(f"DROP DATABASE IF EXISTS {q_ident(dst.dbname)};")
            except Exception:
                pass
            raise
    return {"stats": stats, "created_roles": []}
