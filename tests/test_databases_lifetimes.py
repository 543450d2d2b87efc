"""Database moves against the real PostgreSQL clusters and sshd (tests/conftest.py): what a
killed move leaves on the target (no password file), the check line of each restore path,
extensions the target login may not create, and `--replace-database` naming nothing."""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from helpers import cli, make_config
from test_databases import db_config, env_for, psql, reset_db, small_url

BIG = r"""
CREATE TABLE events (id bigserial PRIMARY KEY, body text, n int);
INSERT INTO events (body, n) SELECT repeat(md5(g::text), 4), g FROM generate_series(1, 600000) g;
"""


def _home(sshd: Any) -> Path:
    return Path(pwd.getpwnam(sshd.user).pw_dir)


def _files_holding(home: Path, secret: str) -> list[Path]:
    """relocate's credential files in the login's home that hold `secret` (this test's own
    password: other test sessions share the home and may have files of their own there)."""
    return [p for p in home.glob(".relocate-db-*") if p.is_file() and secret.encode() in p.read_bytes()]


def _login_role(server: Any, role: str, pw: str, *, createdb: bool, owns: str | None = None,
                superuser: bool = False) -> None:
    """A target login of this test's own, so its password is this test's alone."""
    psql(server, f"DROP ROLE IF EXISTS {role};", check=False)
    rights = "SUPERUSER" if superuser else ("CREATEDB" if createdb else "NOCREATEDB") + " NOCREATEROLE"
    psql(server, f"CREATE ROLE {role} LOGIN {rights} PASSWORD '{pw}';")
    if owns:
        psql(server, f'DROP DATABASE IF EXISTS "{owns}" WITH (FORCE);')
        psql(server, f'CREATE DATABASE "{owns}" OWNER {role};')


def _as_login(cfg: Path, server: Any, role: str, db: str) -> None:
    doc = yaml.safe_load(cfg.read_text())
    doc["target"]["database"]["url"] = f"postgresql://{role}@127.0.0.1:{server.port}/{db}"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))


def _killed_while(cfg: Path, env: dict[str, str], restoring: Callable[[], bool]) -> None:
    """`relocate move` as a real process, SIGKILLed once `restoring()` sees the restore
    running on the target (the same kill -9 the acceptance tester used)."""
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes"],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline and not restoring():
            time.sleep(0.02)
        assert proc.poll() is None, "the move ended before its restore was seen"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _stale_file(home: Path, login: str, content: str) -> Path:
    """A password file as relocate before this fix left it when killed (name shape, 0600, the login's)."""
    path = home / f".relocate-db-{secrets.token_hex(8)}.pgpass"
    path.write_text(content)
    pw = pwd.getpwnam(login)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o600)
    return path


def _lookalike(home: Path, login: str) -> Path:
    """Not relocate's (not its name shape): a later move must leave it alone."""
    path = home / f".relocate-db-notes-{secrets.token_hex(3)}.pgpass"
    path.write_text("mine\n")
    pw = pwd.getpwnam(login)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def _db_check(run: Any, db: str) -> dict[str, Any]:
    checks = run.json()["result"]["verify"]["checks"]
    return next(c for c in checks if c["label"].startswith(f"database {db} "))


def test_a_killed_swap_move_leaves_no_password_file_and_the_next_move_clears_old_ones(
        tmp_path: Path, sshd: Any, postgres_server: Any, postgres_target: Any) -> None:
    tag = secrets.token_hex(4)
    src_db, db, role, pw = f"killsrc_{tag}", f"killswap_{tag}", f"killswap_{tag}", f"pw-swap-{secrets.token_hex(12)}"
    reset_db(postgres_server, src_db, BIG)
    _login_role(postgres_target, role, pw, createdb=True, superuser=True)  # the swap path's usual login
    home = _home(sshd)
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(postgres_server, src_db),
                                                       "password_from": "env:SRC_DB_PW"}], target_db=db)
    _as_login(cfg, postgres_target, role, db)
    env = env_for(postgres_server, postgres_target, TGT_DB_PW=pw)
    stale = lookalike = None
    try:
        # pg_restore (application_name relocate) connected to the scratch database: mid-restore
        _killed_while(cfg, env, lambda: psql(postgres_target, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                             f"'{db}__relocating' AND application_name = 'relocate';") != "0")
        # The client may still be running there; its password was never in a named file.
        assert _files_holding(home, pw) == []
        stale, lookalike = _stale_file(home, sshd.user, f"*:*:*:*:{pw}\n"), _lookalike(home, sshd.user)
        assert _files_holding(home, pw) == [stale]

        moved = cli("move", "-f", str(cfg), "--yes", "--json", env=env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        assert psql(postgres_target, "SELECT count(*) FROM events;", db) == "600000"
        assert not stale.exists() and _files_holding(home, pw) == []
        assert lookalike.exists()  # not relocate's name shape: left alone
        check = _db_check(moved, db)
        assert check["ok"] and "checked before the swap, with the database closed to other sessions" in check["detail"]
    finally:
        for p in (stale, lookalike):
            if p is not None:
                p.unlink(missing_ok=True)
        reset_db(postgres_target, db)
        reset_db(postgres_target, f"{db}__relocating")
        psql(postgres_target, f"DROP ROLE IF EXISTS {role};", check=False)
        reset_db(postgres_server, src_db)


def test_a_killed_one_transaction_move_leaves_no_password_file_and_says_how_it_checked(
        tmp_path: Path, sshd: Any, postgres_server: Any, postgres_target: Any) -> None:
    tag = secrets.token_hex(4)
    src_db, db, role, pw = f"killsrc2_{tag}", f"killtx_{tag}", f"killtx_{tag}", f"pw-tx-{secrets.token_hex(12)}"
    reset_db(postgres_server, src_db, BIG)
    _login_role(postgres_target, role, pw, createdb=False, owns=db)  # a managed database: no CREATEDB
    home = _home(sshd)
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(postgres_server, src_db),
                                                       "password_from": "env:SRC_DB_PW"}], target_db=db)
    _as_login(cfg, postgres_target, role, db)
    env = env_for(postgres_server, postgres_target, TGT_DB_PW=pw)
    stale = None
    try:
        plan = cli("plan", "-f", str(cfg), "--json", env=env)
        assert plan.exit_code == 0, plan.stdout + plan.stderr
        assert "in ONE transaction" in next(s for s in plan.json()["steps"] if s["kind"] == "databases")["detail"]
        # the restore's transaction is open in the target database: mid-restore
        _killed_while(cfg, env, lambda: psql(postgres_target, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                             f"'{db}' AND usename = '{role}' AND xact_start IS NOT NULL;") != "0")
        assert _files_holding(home, pw) == []
        stale = _stale_file(home, sshd.user, f"*:*:*:*:{pw}\n")

        moved = cli("move", "-f", str(cfg), "--yes", "--json", env=env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        assert psql(postgres_target, "SELECT count(*) FROM events;", db) == "600000"
        assert not stale.exists() and _files_holding(home, pw) == []
        # This path has no swap: the check line says what really happened.
        check = _db_check(moved, db)
        assert check["ok"] and "checked inside the restore's transaction, before it committed" in check["detail"], check
        assert "swap" not in check["detail"]
    finally:
        if stale is not None:
            stale.unlink(missing_ok=True)
        reset_db(postgres_target, db)
        psql(postgres_target, f"DROP ROLE IF EXISTS {role};", check=False)
        reset_db(postgres_server, src_db)


EXTENSIONS = r"""
CREATE EXTENSION dblink;
CREATE EXTENSION pgcrypto;
CREATE TABLE secrets_kept (id int PRIMARY KEY, digest bytea);
INSERT INTO secrets_kept SELECT g, digest(g::text, 'sha256') FROM generate_series(1, 50) g;
"""


def test_an_extension_the_login_may_not_create_blocks_the_plan(tmp_path: Path, sshd: Any, postgres_server: Any,
                                                                postgres_target: Any) -> None:
    """dblink is not trusted (only a superuser may create it); pgcrypto is trusted (CREATE on
    the database suffices). A login without superuser is blocked on dblink alone, until a
    superuser has created it in the target database."""
    tag = secrets.token_hex(4)
    src_db, db, role, pw = f"extsrc_{tag}", f"extdst_{tag}", f"extapp_{tag}", f"pw-ext-{secrets.token_hex(8)}"
    creator = f"extcdb_{tag}"
    reset_db(postgres_server, src_db, EXTENSIONS)
    _login_role(postgres_target, role, pw, createdb=False, owns=db)
    _login_role(postgres_target, creator, pw, createdb=True)
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(postgres_server, src_db),
                                                       "password_from": "env:SRC_DB_PW"}], target_db=db)
    _as_login(cfg, postgres_target, role, db)
    env = env_for(postgres_server, postgres_target, TGT_DB_PW=pw)
    try:
        plan = cli("plan", "-f", str(cfg), "--json", env=env)
        assert plan.exit_code == 3, plan.stdout + plan.stderr
        found = [b["message"] for b in plan.json()["blockers"] if b["code"] == "db-extensions"]
        assert len(found) == 1 and "dblink" in found[0] and "only a superuser" in found[0], found
        assert "pgcrypto" not in found[0] and 'CREATE EXTENSION "dblink"' in found[0]
        move = cli("move", "-f", str(cfg), "--yes", env=env)
        assert move.exit_code == 3 and "dblink" in move.stdout + move.stderr
        assert psql(postgres_target, "SELECT count(*) FROM pg_class WHERE relname = 'secrets_kept';", db) == "0"

        # The swap path (a login with CREATEDB, no superuser) restores into a new database: blocked too.
        _as_login(cfg, postgres_target, creator, db + "_swap")
        swap = cli("plan", "-f", str(cfg), "--json", env=env)
        assert swap.exit_code == 3
        msg = next(b["message"] for b in swap.json()["blockers"] if b["code"] == "db-extensions")
        assert "dblink" in msg and "superuser login" in msg and "pgcrypto" not in msg

        # Once a superuser made dblink in the target database, the move goes through; pgcrypto,
        # trusted, is created by the login itself.
        _as_login(cfg, postgres_target, role, db)
        psql(postgres_target, "CREATE EXTENSION dblink;", db)
        ready = cli("plan", "-f", str(cfg), "--json", env=env)
        assert ready.exit_code == 0, ready.stdout + ready.stderr
        moved = cli("move", "-f", str(cfg), "--yes", env=env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        assert psql(postgres_target, "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension;", db) \
            == "dblink,pgcrypto,plpgsql"
        assert psql(postgres_target, "SELECT count(*) FROM secrets_kept;", db) == "50"
    finally:
        reset_db(postgres_target, db)
        for r in (role, creator):
            psql(postgres_target, f"DROP ROLE IF EXISTS {r};", check=False)
        reset_db(postgres_server, src_db)


def test_replace_database_must_name_a_configured_target_database(tmp_path: Path, sshd: Any, postgres_server: Any,
                                                                 postgres_target: Any) -> None:
    tag = secrets.token_hex(4)
    src_db, db = f"rsrc_{tag}", f"rdst_{tag}"
    reset_db(postgres_server, src_db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(postgres_server, src_db),
                                                       "password_from": "env:SRC_DB_PW"}], target_db=db)
    env = env_for(postgres_server, postgres_target)
    try:
        run = cli("move", "-f", str(cfg), "--yes", "--replace-database", "nosuch", env=env)
        assert run.exit_code == 2, run.stdout + run.stderr
        assert "--replace-database nosuch" in run.stderr and db in run.stderr and "Traceback" not in run.stderr
        assert psql(postgres_target, f"SELECT count(*) FROM pg_database WHERE datname LIKE '{db}%';") == "0"
        # the configured name itself is accepted (the database moves)
        ok = cli("move", "-f", str(cfg), "--yes", "--replace-database", db, env=env)
        assert ok.exit_code == 0, ok.stdout + ok.stderr
        # with no databases configured at all, any name is unknown
        bare = make_config(tmp_path / "bare.yaml", endpoint="http://127.0.0.1:1", sshd=sshd,
                           root=str(sshd.root / f"bare-{tag}"))
        none = cli("move", "-f", str(bare), "--yes", "--replace-database", db)
        assert none.exit_code == 2 and f"--replace-database {db}" in none.stderr and "none" in none.stderr
        assert not (sshd.root / f"bare-{tag}").exists()
    finally:
        reset_db(postgres_target, db)
        reset_db(postgres_server, src_db)


def test_a_killed_mariadb_move_leaves_no_option_file(tmp_path: Path, sshd: Any, mariadb_server: Any) -> None:
    """The same for MariaDB's option file (--defaults-extra-file): never a named file on the
    target while it holds the password; a later move clears what older versions left."""
    from test_databases import maria, maria_rows_config

    tag = secrets.token_hex(4)
    src_db, db = f"kmsrc_{tag}", f"kmdst_{tag}"
    cfg = maria_rows_config(tmp_path, sshd, mariadb_server, src_db, db, 400_000,
                            "CREATE TABLE events (id INT PRIMARY KEY, body TEXT) ENGINE=InnoDB",
                            "events SELECT seq, REPEAT(MD5(seq), 4) FROM @SEQ@")
    env = env_for(mariadb_server, mariadb_server)
    home, stale = _home(sshd), None
    try:
        # the restore has created the table and is filling it
        _killed_while(cfg, env, lambda: maria(mariadb_server, "SELECT COUNT(*) FROM information_schema.tables "
                                              f"WHERE table_schema = '{db}';") != "0")
        assert _files_holding(home, mariadb_server.password) == []
        stale = home / f".relocate-db-{secrets.token_hex(8)}.cnf"
        stale.write_text(f'[client]\npassword="{mariadb_server.password}"\n')
        pw = pwd.getpwnam(sshd.user)
        os.chown(stale, pw.pw_uid, pw.pw_gid)
        os.chmod(stale, 0o600)
        # the killed restore left part of the table: replaced by name
        moved = cli("move", "-f", str(cfg), "--yes", "--replace-database", db, env=env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        assert maria(mariadb_server, "SELECT COUNT(*) FROM events;", db) == "400000"
        assert not stale.exists() and _files_holding(home, mariadb_server.password) == []
    finally:
        if stale is not None:
            stale.unlink(missing_ok=True)
        maria(mariadb_server, f"DROP DATABASE IF EXISTS {src_db}; DROP DATABASE IF EXISTS {db};")
