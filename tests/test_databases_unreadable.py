"""An existing target database the target login may not read (its tables belong to another
role, no SELECT granted): the plan compares it with the source by reading its statistics as
that login, so it cannot. That is a blocker the plan sees (exit 3, `db-unreadable`, naming
the database, what is unreadable and the missing privilege, with a hint), never exit 2 with
a raw SQL error (execute/pg.py TARGET_DB_SQL `unreadable`, kinds/databases.py `_unreadable`)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from helpers import cli
from test_databases import db_config, env_for, psql, reset_db, small_url
from test_databases_lifetimes import _as_login, _login_role
from test_databases_unit import _judged

SEED = "CREATE TABLE items (id int PRIMARY KEY, name text);\n" \
       "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 300) g;\n"


def _flat(run: Any) -> str:
    return " ".join((run.stdout + run.stderr).split())


def test_a_target_database_the_login_may_not_read_blocks_the_plan(
        tmp_path: Path, sshd: Any, postgres_server: Any, postgres_target: Any) -> None:
    tag = secrets.token_hex(4)
    src_db, db, login, other = f"unrsrc_{tag}", f"unrdst_{tag}", f"unrlog_{tag}", f"unrown_{tag}"
    pw = f"pw-unr-{secrets.token_hex(8)}"
    reset_db(postgres_server, src_db, SEED)
    # The same rows on the target, in a database the login owns, but the table is another role's.
    _login_role(postgres_target, login, pw, createdb=True)
    psql(postgres_target, f"DROP ROLE IF EXISTS {other}; CREATE ROLE {other} NOLOGIN;")
    reset_db(postgres_target, db, SEED + f"ALTER TABLE items OWNER TO {other};")
    psql(postgres_target, f'ALTER DATABASE "{db}" OWNER TO {login};')
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(postgres_server, src_db),
                                                       "password_from": "env:SRC_DB_PW"}], target_db=db)
    _as_login(cfg, postgres_target, login, db)
    env = env_for(postgres_server, postgres_target, TGT_DB_PW=pw)
    try:
        # the fixture really denies the login (else this test proves nothing)
        denied = psql(postgres_target, f"SELECT has_table_privilege('{login}', 'public.items', 'SELECT');", db)
        assert denied == "f"
        plan = cli("plan", "-f", str(cfg), "--json", env=env)
        assert plan.exit_code == 3, plan.stdout + plan.stderr
        assert "Traceback" not in plan.stdout + plan.stderr and "internal error" not in _flat(plan).lower()
        assert "permission denied for" not in _flat(plan)  # psql's own fragment is not what the user reads
        blockers = plan.json()["blockers"]
        assert [b["code"] for b in blockers] == ["db-unreadable"], blockers
        msg = blockers[0]["message"]
        assert f"cannot read the existing target database {db}'s statistics" in msg
        assert f"table public.items (owned by {other}): no SELECT" in msg
        assert f'GRANT SELECT ON table public.items TO "{login}"' in msg
        assert f"--replace-database {db}" in msg and "superuser" in msg
        # the human plan says it too, and exits 3
        human = cli("plan", "-f", str(cfg), env=env)
        assert human.exit_code == 3 and "db-unreadable" in _flat(human) and "Traceback" not in _flat(human)
        assert f"{db}'s statistics" in _flat(human)

        # Once granted SELECT, the plan reads it as before: equal to the source, nothing to do.
        psql(postgres_target, f"GRANT SELECT ON items TO {login};", db)
        plan = cli("plan", "-f", str(cfg), "--json", env=env)
        assert plan.exit_code == 0, plan.stdout + plan.stderr
        assert plan.json()["blockers"] == []
        step = next(s for s in plan.json()["steps"] if s["id"] == f"db:{src_db}")
        assert step["detail"].startswith("nothing to do"), step

        # A differing copy, still readable: the usual db-not-empty blocker (compared, not unreadable).
        psql(postgres_target, "DELETE FROM items WHERE id = 7;", db)
        plan = cli("plan", "-f", str(cfg), "--json", env=env)
        assert plan.exit_code == 3 and [b["code"] for b in plan.json()["blockers"]] == ["db-not-empty"], plan.stdout

        # Unreadable again, and named for replacement: the login owns it and has CREATEDB, so
        # the move replaces it unread (a warning, no blocker).
        psql(postgres_target, f"REVOKE SELECT ON items FROM {login};", db)
        moved = cli("move", "-f", str(cfg), "--yes", "--replace-database", db, env=env)
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        assert "without being compared with the source" in _flat(moved)
        assert psql(postgres_target, "SELECT count(*) FROM items;", db) == "300"

        # Readable tables, but a large object of another role's: only the statistics query
        # itself meets it; still the blocker, with PostgreSQL's reason, not the query's text.
        oid = psql(postgres_target, "SELECT lo_from_bytea(0, 'secret');", db)
        psql(postgres_target, f"ALTER LARGE OBJECT {oid} OWNER TO {other};", db)
        plan = cli("plan", "-f", str(cfg), "--json", env=env)
        assert plan.exit_code == 3, plan.stdout + plan.stderr
        blockers = plan.json()["blockers"]
        assert [b["code"] for b in blockers] == ["db-unreadable"], blockers
        assert f"permission denied for large object {oid}" in blockers[0]["message"]
        assert "lo_get" not in blockers[0]["message"]

        # `relocate verify` reads the restored database again as the login: what it may not
        # read is a failed check naming the database and why (exit 4), not exit 5 with the
        # other checks unreported.
        ver = cli("verify", "-f", str(cfg), "--json", env=env)
        assert ver.exit_code == 4, ver.stdout + ver.stderr
        assert "Traceback" not in ver.stdout + ver.stderr
        failed = [c for c in ver.json()["checks"] if not c["ok"]]
        assert [c["label"] for c in failed] == [f"database {db} (db:{src_db})"], failed
        assert "cannot be read to compare" in failed[0]["detail"] and f"large object {oid}" in failed[0]["detail"]
        assert "psql:" not in failed[0]["detail"]  # PostgreSQL's reason, not psql's line
        human = cli("verify", "-f", str(cfg), env=env)
        assert human.exit_code == 4 and f"large object {oid}" in _flat(human)
    finally:
        reset_db(postgres_target, db)
        psql(postgres_target, f"DROP ROLE IF EXISTS {login}; DROP ROLE IF EXISTS {other};", check=False)
        reset_db(postgres_server, src_db)


def test_the_blocker_names_a_schema_without_usage_and_large_objects(tmp_path: Path) -> None:
    stats = {"tables": {"s.t": {"rows": 1, "sample": "a"}}, "sequences": {}, "large_objects": {}}
    src = {"major": 15, "version": "15.4", "extensions": [], "stats": stats, "size": 0, "roles": []}
    base = {"major": 15, "version": "15.5", "available": [], "login": "app", "exists": True, "objects": 2,
            "createdb": True, "superuser": False, "db_owner": "app", "privileges_of": ["app"], "member_of": ["app"]}
    g = _judged(tmp_path, src, {**base, "unreadable": [
        {"object": "table s.t", "owner": "ops", "lacks": "USAGE on schema s"}]})
    assert [b.code for b in g.blockers] == ["db-unreadable"]
    assert 'GRANT USAGE ON SCHEMA s TO "app"' in g.blockers[0].message and "no USAGE on schema s" in g.blockers[0].message
    # what only the statistics query itself hits (a large object): its message, still a blocker
    g = _judged(tmp_path, src, {**base, "unreadable": [
        {"object": "", "owner": "", "lacks": "", "message": "permission denied for large object 16400"}]})
    assert [b.code for b in g.blockers] == ["db-unreadable"] and "large object 16400" in g.blockers[0].message
    # readable: no such blocker
    g = _judged(tmp_path, src, {**base, "stats": stats})
    assert g.state == "matches" and not g.blockers
