"""The swap path with a target login that has CREATEDB but is not a superuser, the source
database's owner (the cluster's superuser, `postgres`) existing on the target: the plan that
says Ready must not be followed by `CREATE DATABASE ... OWNER postgres: must be member of
role "postgres"`. relocate creates the database owned by the login, keeps the objects' owners
when PostgreSQL lets the login give them away, and warns what differs from the source
(execute/pg.py `owner_kept`, `swap_keeps_owners`)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from helpers import cli
from test_databases import db_config, env_for, psql, reset_db, small_url
from test_databases_lifetimes import _as_login, _login_role

SEED = """
CREATE ROLE {app} NOLOGIN;
CREATE TABLE items (id serial PRIMARY KEY, name text);
INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 400) g;
SELECT setval('items_id_seq', 555);
ALTER TABLE items OWNER TO {app};
"""


def _codes(run: Any, kind: str) -> list[str]:
    return [f["code"] for f in run.json()[kind]]


def _message(run: Any, code: str) -> str:
    return next(w["message"] for w in run.json()["warnings"] if w["code"] == code)


def _db_owner(server: Any, db: str) -> str:
    return psql(server, f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}';")


def _table_owner(server: Any, db: str) -> str:
    return psql(server, "SELECT tableowner FROM pg_tables WHERE tablename = 'items';", db)


def test_a_createdb_login_not_member_of_the_source_owner_moves_through_the_swap(
        tmp_path: Path, sshd: Any, postgres_server: Any, postgres_target: Any) -> None:
    tag = secrets.token_hex(4)
    src_db, app, login, pw = f"ownsrc_{tag}", f"ownapp_{tag}", f"owncdb_{tag}", f"pw-own-{secrets.token_hex(8)}"
    app_db = f"ownappdb_{tag}"  # a second source: the app's role owns the database and everything in it
    dbs = [f"owndst_{tag}_{n}" for n in ("a", "b", "c")]
    owner = postgres_server.user  # the first source database's owner: the cluster's superuser
    reset_db(postgres_server, src_db, SEED.format(app=app))
    psql(postgres_server, f'CREATE DATABASE "{app_db}" OWNER {app};')
    psql(postgres_server, SEED.replace("CREATE ROLE {app} NOLOGIN;", "").format(app=app), app_db)
    _login_role(postgres_target, login, pw, createdb=True)  # CREATEDB NOCREATEROLE, no superuser
    psql(postgres_target, f"CREATE ROLE {app} NOLOGIN; GRANT {app} TO {login};")
    assert _db_owner(postgres_server, src_db) == owner and _db_owner(postgres_server, app_db) == app
    assert psql(postgres_target, f"SELECT count(*) FROM pg_roles WHERE rolname = '{owner}';") == "1"
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(postgres_server, src_db),
                                                       "password_from": "env:SRC_DB_PW"}], target_db=dbs[0])
    env = env_for(postgres_server, postgres_target, TGT_DB_PW=pw)
    try:
        # 1. Not a member of the source database's owner: the new database is the login's,
        #    and so are the objects (owned by app: restored as app they would need CREATE on
        #    the login's public schema); the plan says both, and the move goes through.
        _as_login(cfg, postgres_target, login, dbs[0])
        plan = cli("plan", "-f", str(cfg), "--json", env=env)
        assert plan.exit_code == 0, plan.stdout + plan.stderr
        step = next(s for s in plan.json()["steps"] if s["id"] == f"db:{src_db}")
        assert "a scratch database" in step["detail"]
        assert sorted(_codes(plan, "warnings")) == ["db-owner", "db-owners"], plan.json()["warnings"]
        msg = _message(plan, "db-owner")
        assert f'GRANT "{owner}" TO "{login}"' in msg and f"owned by the target login {login}" in msg
        assert app in _message(plan, "db-owners")
        moved = cli("move", "-f", str(cfg), "--yes", env=env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        assert _db_owner(postgres_target, dbs[0]) == login
        assert _table_owner(postgres_target, dbs[0]) == login
        assert psql(postgres_target, "SELECT count(*), max(id) FROM items;", dbs[0]) == "400|400"
        assert psql(postgres_target, "SELECT last_value FROM items_id_seq;", dbs[0]) == "555"
        assert psql(postgres_target, f"SELECT count(*) FROM pg_database WHERE datname LIKE '{dbs[0]}__relocat%';") == "0"
        assert cli("verify", "-f", str(cfg), env=env).exit_code == 0

        # 2. The app's role owns the source database and all in it, and the login may act as
        #    it: database and objects keep that owner, and nothing is warned.
        second = tmp_path.parent / f"{tmp_path.name}-appdb"  # its own config, and root on the target
        second.mkdir()
        cfg2 = db_config(second, sshd, postgres_target, [{"url": small_url(postgres_server, app_db),
                                                                   "password_from": "env:SRC_DB_PW"}], target_db=dbs[1])
        _as_login(cfg2, postgres_target, login, dbs[1])
        plan = cli("plan", "-f", str(cfg2), "--json", env=env)
        assert plan.exit_code == 0 and _codes(plan, "warnings") == [], plan.stdout + plan.stderr
        moved = cli("move", "-f", str(cfg2), "--yes", env=env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        assert _db_owner(postgres_target, dbs[1]) == app
        assert _table_owner(postgres_target, dbs[1]) == app
        assert psql(postgres_target, "SELECT count(*) FROM items;", dbs[1]) == "400"
        assert cli("verify", "-f", str(cfg2), env=env).exit_code == 0

        # 3. Once a member of the first source's owner, its new database keeps that owner too.
        psql(postgres_target, f"GRANT {owner} TO {login};")
        _as_login(cfg, postgres_target, login, dbs[2])
        plan = cli("plan", "-f", str(cfg), "--json", env=env)
        assert plan.exit_code == 0 and _codes(plan, "warnings") == ["db-owners"], plan.stdout + plan.stderr
        moved = cli("move", "-f", str(cfg), "--yes", env=env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        assert _db_owner(postgres_target, dbs[2]) == owner
        assert _table_owner(postgres_target, dbs[2]) == login
    finally:
        for db in dbs:
            reset_db(postgres_target, db)
        psql(postgres_target, f"DROP ROLE IF EXISTS {login}; DROP ROLE IF EXISTS {app};", check=False)
        reset_db(postgres_server, src_db)
        reset_db(postgres_server, app_db)
        psql(postgres_server, f"DROP ROLE IF EXISTS {app};", check=False)


def test_a_createdb_login_may_not_replace_a_database_it_does_not_own(
        tmp_path: Path, sshd: Any, postgres_server: Any, postgres_target: Any) -> None:
    """The swap renames and drops the database it replaces: only its owner may, so a login
    that is not is blocked at plan time instead of failing after the restore."""
    tag = secrets.token_hex(4)
    src_db, db, login, pw = f"repsrc_{tag}", f"repdst_{tag}", f"repcdb_{tag}", f"pw-rep-{secrets.token_hex(8)}"
    reset_db(postgres_server, src_db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
    reset_db(postgres_target, db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (7);")
    _login_role(postgres_target, login, pw, createdb=True)
    psql(postgres_target, f"GRANT SELECT ON t TO {login};", db)  # the plan compares it with the source
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(postgres_server, src_db),
                                                       "password_from": "env:SRC_DB_PW"}], target_db=db)
    _as_login(cfg, postgres_target, login, db)
    env = env_for(postgres_server, postgres_target, TGT_DB_PW=pw)
    try:
        plan = cli("plan", "-f", str(cfg), "--json", env=env)
        assert plan.exit_code == 3, plan.stdout + plan.stderr
        msg = next(b["message"] for b in plan.json()["blockers"] if b["code"] == "db-privileges")
        assert f"may not rename or drop the existing database {db}" in msg and f'OWNER TO "{login}"' in msg
        moved = cli("move", "-f", str(cfg), "--yes", "--replace-database", db, env=env)
        assert moved.exit_code == 3, moved.stdout + moved.stderr
        assert "may not rename or drop" in " ".join((moved.stdout + moved.stderr).split())
        assert psql(postgres_target, "SELECT string_agg(id::text, ',') FROM t;", db) == "7"
        # Once the login owns it, the swap replaces it.
        psql(postgres_target, f'ALTER DATABASE "{db}" OWNER TO {login};')
        moved = cli("move", "-f", str(cfg), "--yes", "--replace-database", db, env=env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        assert psql(postgres_target, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t;", db) == "1,2"
    finally:
        reset_db(postgres_target, db)
        psql(postgres_target, f"DROP ROLE IF EXISTS {login};", check=False)
        reset_db(postgres_server, src_db)


def test_owner_rules_follow_postgresqls_membership_rules() -> None:
    from relocate.execute.pg import owner_kept, swap_keeps_owners
    app = [{"name": "app", "login": True, "objects": True}, {"name": "postgres", "login": True, "objects": False}]
    t = {"superuser": False, "member_of": ["app", "login"], "privileges_of": ["app", "login"]}
    assert not owner_kept("postgres", t) and owner_kept("app", t)
    assert owner_kept("postgres", {"superuser": True})
    assert not owner_kept("app", {**t, "privileges_of": ["login"]})  # SET ROLE without its privileges (NOINHERIT)
    # everything the app's, and the database the app's: kept; owned by postgres: the login's
    assert swap_keeps_owners(app[:1], "app", t) and not swap_keeps_owners(app, "postgres", t)
    assert not swap_keeps_owners([*app[:1], {"name": "reader", "login": False}], "app", t)  # a grantee besides
    assert swap_keeps_owners(app, "postgres", {"superuser": True})
