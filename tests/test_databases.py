"""The databases component against real servers: two PostgreSQL 15 clusters (source and
target), MariaDB, an OpenSSH sshd as target and as bastion, moto for RDS and secrets."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import aws_client, cli, make_config
from servers import free_port

SEED = r"""
CREATE ROLE townsquare_app LOGIN PASSWORD 'app-only-secret-77';
CREATE EXTENSION pgcrypto;
CREATE EXTENSION hstore;
CREATE SCHEMA social AUTHORIZATION townsquare_app;
CREATE SCHEMA billing;
CREATE TABLE social.users (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  handle text NOT NULL UNIQUE, bio text, avatar bytea, attrs hstore, joined timestamptz NOT NULL DEFAULT '2021-01-10');
INSERT INTO social.users (handle, bio, avatar, attrs)
  SELECT 'user' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'bio ✓ ünïcødé 日本語 ' || g END,
         CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END, hstore('n', g::text)
  FROM generate_series(1, 2000) g;
CREATE TABLE social.posts (
  id bigserial PRIMARY KEY, user_id integer NOT NULL REFERENCES social.users(id), body text,
  digest bytea, edited boolean NOT NULL DEFAULT false);
INSERT INTO social.posts (user_id, body, digest)
  SELECT 1 + g % 2000, 'post ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE digest(g::text, 'sha1') END
  FROM generate_series(1, 1000000) g;
ALTER TABLE social.users OWNER TO townsquare_app;
ALTER TABLE social.posts OWNER TO townsquare_app;
CREATE TABLE billing.invoices (amount numeric(12, 2), note text);
INSERT INTO billing.invoices VALUES (10.50, 'a'), (10.50, 'a'), (NULL, NULL), (99999.99, 'ß');
CREATE SEQUENCE billing.invoice_no START 1000;
SELECT setval('billing.invoice_no', 4242);
CREATE VIEW social.active AS SELECT u.handle, count(p.id) AS posts FROM social.users u JOIN social.posts p ON p.user_id = u.id GROUP BY 1;
CREATE FUNCTION social.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.edited := true; RETURN NEW; END $$;
CREATE TRIGGER posts_touch BEFORE UPDATE ON social.posts FOR EACH ROW EXECUTE FUNCTION social.touch();
SELECT lo_from_bytea(0, '\x00ff1e6c61726765206f626a656374'::bytea);
"""

SMALL = r"""
CREATE TABLE items (id serial PRIMARY KEY, name text);
INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 500) g;
"""


def psql(server: Any, sql: str, db: str = "postgres", check: bool = True) -> str:
    env = {**server.env(), "PGDATABASE": db}
    r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=sql, env=env,
                       capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def reset_db(server: Any, name: str, seed: str | None = None) -> None:
    psql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
    if seed is not None:
        psql(server, f'CREATE DATABASE "{name}";')
        psql(server, seed, name)


@pytest.fixture(scope="module")
def source_pg(postgres_server: Any) -> Any:
    reset_db(postgres_server, "townsquare", "")
    psql(postgres_server, "DROP ROLE IF EXISTS townsquare_app;", "postgres", check=False)
    psql(postgres_server, SEED, "townsquare")
    reset_db(postgres_server, "small", SMALL)
    return postgres_server


def db_config(tmp_path: Path, sshd: Any, target: Any, databases: list[dict], *, target_db: str = "townsquare",
              endpoint: str = "http://127.0.0.1:1", bastions: dict | None = None, engine: str = "postgres") -> Path:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=endpoint, sshd=sshd, root=str(sshd.root / tmp_path.name))
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["databases"] = databases
    if bastions:
        doc["source"]["bastions"] = bastions
    scheme = "postgresql" if engine == "postgres" else "mysql"
    doc["target"]["database"] = {"url": f"{scheme}://{target.user}@127.0.0.1:{target.port}/{target_db}",
                                 "password_from": "env:TGT_DB_PW"}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


def env_for(source: Any, target: Any, **extra: str) -> dict[str, str]:
    return {"SRC_DB_PW": source.password, "TGT_DB_PW": target.password, **extra}


def no_secret_in(run: Any, *secrets: str) -> None:
    for s in secrets:
        assert s not in run.stdout and s not in run.stderr


def latest_manifest(cfg: Path) -> dict[str, Any]:
    snaps = sorted(p for p in (cfg.parent / "snapshots").iterdir() if (p / "manifest.json").exists())
    return json.loads((snaps[-1] / "manifest.json").read_text())


def test_postgres_move_verify_rerun_and_replace(tmp_path: Path, sshd: Any, source_pg: Any, postgres_target: Any) -> None:
    reset_db(postgres_target, "townsquare")
    src_url = f"postgresql://{source_pg.user}@127.0.0.1:{source_pg.port}/townsquare"
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": src_url, "password_from": "env:SRC_DB_PW", "jobs": 2}])
    env = env_for(source_pg, postgres_target)

    plan = cli("plan", "-f", str(cfg), "--json", env=env)
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    step = next(s for s in plan.json()["steps"] if s["id"] == "db:townsquare")
    assert step["kind"] == "databases" and step["count"] == 3 and step["todo_count"] == 3
    assert "postgres 15." in step["source"] and "postgres 15." in step["dest"] and step["bytes"] > 10_000_000
    no_secret_in(plan, source_pg.password, postgres_target.password)

    moved = cli("move", "-f", str(cfg), "--yes", env=env)
    assert moved.exit_code == 0, moved.stdout + moved.stderr
    no_secret_in(moved, source_pg.password, postgres_target.password)
    assert psql(postgres_target, "SELECT count(*) FROM social.posts;", "townsquare") == "1000000"
    assert psql(postgres_target, "SELECT last_value FROM billing.invoice_no;", "townsquare") == "4242"
    assert psql(postgres_target, "SELECT encode(lo_get(oid), 'escape') FROM pg_largeobject_metadata;", "townsquare").endswith("large object")
    assert psql(postgres_target, "SELECT bio FROM social.users WHERE id = 1;", "townsquare") == "bio ✓ ünïcødé 日本語 1"
    assert psql(postgres_target, "SELECT count(*) FROM social.active;", "townsquare") == "2000"
    # The app's role exists on the target, without the source's password.
    assert psql(postgres_target, "SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'townsquare_app';") == "t"
    assert psql(postgres_target, "SELECT tableowner FROM pg_tables WHERE tablename = 'posts';", "townsquare") == "townsquare_app"
    # The trigger came along and works; identity continues past the copied rows.
    fired = "BEGIN; UPDATE social.posts SET body = 'x' WHERE id = 1; SELECT edited FROM social.posts WHERE id = 1; ROLLBACK;"
    assert psql(postgres_target, fired, "townsquare") == "t"

    manifest = latest_manifest(cfg)
    rec = manifest["components"]["databases"]["db:townsquare"]
    assert rec["stats"]["tables"]["social.posts"]["rows"] == 1_000_000
    assert rec["stats"]["sequences"]["billing.invoice_no"] == 4242
    assert rec["stats"]["large_objects"]["count"] == 1
    dump = cfg.parent / "snapshots" / manifest["id"] / rec["dump"]
    assert (dump / "toc.dat").exists()
    text = json.dumps(manifest)
    assert source_pg.password not in text and postgres_target.password not in text and "app-only-secret" not in text

    again = cli("move", "-f", str(cfg), "--yes", env=env)
    assert again.exit_code == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr

    assert cli("verify", "-f", str(cfg), env=env).exit_code == 0
    # One changed value in a sampled row (id 1 is in the first 100) is caught by the sample checksum.
    psql(postgres_target, "ALTER TABLE social.posts DISABLE TRIGGER posts_touch; UPDATE social.posts SET body = 'tampered' WHERE id = 1;", "townsquare")
    bad = cli("verify", "-f", str(cfg), "--json", env=env)
    assert bad.exit_code == 4
    checks = bad.json()["checks"]
    assert any(not c["ok"] and "social.posts: sample checksum differs" in c["detail"] for c in checks)
    # A differing non-empty target database is refused (blocked, 3) unless named for replacement.
    refused = cli("move", "-f", str(cfg), "--yes", env=env)
    assert refused.exit_code == 3 and "--replace-database townsquare" in refused.stdout + refused.stderr
    assert psql(postgres_target, "SELECT body FROM social.posts WHERE id = 1;", "townsquare") == "tampered"
    replaced = cli("move", "-f", str(cfg), "--yes", "--replace-database", "townsquare", env=env)
    assert replaced.exit_code == 0, replaced.stdout + replaced.stderr
    assert psql(postgres_target, "SELECT body FROM social.posts WHERE id = 1;", "townsquare") == "post 1"
    assert cli("verify", "-f", str(cfg), env=env).exit_code == 0
    # Nothing of relocate's is left on the target: no scratch database, no credential file.
    assert psql(postgres_target, "SELECT count(*) FROM pg_database WHERE datname LIKE '%relocat%';") == "0"
    assert not list(Path(os.path.expanduser(f"~{sshd.user}")).glob(".relocate-db-*"))


def small_url(server: Any, db: str = "small") -> str:
    return f"postgresql://{server.user}@127.0.0.1:{server.port}/{db}"


def test_rds_through_a_bastion_streamed_without_local_copy(tmp_path: Path, sshd: Any, sshd2: Any, moto: str,
                                                           source_pg: Any, postgres_target: Any) -> None:
    """describe_db_instances names the database (moto, port mapped to the real server); the
    password comes from Secrets Manager; the source is reached through sshd2 as a bastion."""
    reset_db(postgres_target, "small_copy")
    aws_client("rds", moto).create_db_instance(
        DBInstanceIdentifier="townsquare-db", Engine="postgres", DBInstanceClass="db.t3.micro", AllocatedStorage=20,
        MasterUsername=source_pg.user, MasterUserPassword="not-the-real-one", DBName="small", Port=source_pg.port)
    aws_client("secretsmanager", moto).create_secret(
        Name="townsquare/prod/db", SecretString=json.dumps({"username": "postgres", "password": source_pg.password}))
    bastion = {"host": sshd2.host, "port": sshd2.port, "user": sshd2.user, "identity_file": str(sshd2.identity_file),
               "host_key": sshd2.host_key_fingerprint}
    cfg = db_config(tmp_path, sshd, postgres_target, [{
        "rds": "townsquare-db", "engine": "postgres", "endpoint": "127.0.0.1",
        "password_from": "secret:townsquare/prod/db#password", "via": "bastion"}],
        target_db="small_copy", endpoint=moto, bastions={"bastion": bastion})
    env = {"TGT_DB_PW": postgres_target.password}
    moved = cli("move", "-f", str(cfg), "--yes", "--no-local-copy", "--json", env=env)
    assert moved.exit_code == 0, moved.stdout + moved.stderr
    out = moved.json()
    step = next(s for s in out["plan"]["steps"] if s["kind"] == "databases")
    assert step["id"] == "db:small" and "small_copy" in step["dest"]
    assert psql(postgres_target, "SELECT count(*), max(id) FROM items;", "small_copy") == "500|500"
    rec = latest_manifest(cfg)["components"]["databases"]["db:small"]
    assert rec["dump"] is None and rec["stats"]["tables"]["public.items"]["rows"] == 500
    # The move's verify reuses the fenced pre-swap check instead of reading every row again.
    check = next(c for c in out["result"]["verify"]["checks"] if c["label"].startswith("database small_copy"))
    assert check["ok"] and "checked before the swap" in check["detail"], check
    assert psql(postgres_target, "SELECT datallowconn FROM pg_database WHERE datname = 'small_copy';") == "t"
    assert not (cfg.parent / "snapshots" / latest_manifest(cfg)["id"] / "databases").exists()
    # The forwarded connections really went through the bastion.
    assert "direct-tcpip" in sshd2.log.read_text() or "Connection from" in sshd2.log.read_text()
    no_secret_in(moved, source_pg.password, postgres_target.password)



def test_the_dump_staging_leaves_no_empty_db_directory(tmp_path: Path, sshd: Any, source_pg: Any,
                                                       postgres_target: Any) -> None:
    """The kept dump goes up to <root>/.relocate/db/<name>; once restored, that staging goes,
    and so does db/ when it is left empty (README's list of what lands on the target has no
    db/). Something else in db/ keeps it: rmdir, never rm -r."""
    reset_db(postgres_target, "small_staged")
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(source_pg), "password_from": "env:SRC_DB_PW"}],
                    target_db="small_staged")
    env = env_for(source_pg, postgres_target)
    state = sshd.root / tmp_path.name / ".relocate"
    moved = cli("move", "-f", str(cfg), "--yes", env=env)
    assert moved.exit_code == 0, moved.stdout + moved.stderr
    assert psql(postgres_target, "SELECT count(*) FROM items;", "small_staged") == "500"
    assert latest_manifest(cfg)["components"]["databases"]["db:small"]["dump"]  # the staged (kept) dump's path
    assert state.is_dir() and not (state / "db").exists(), sorted(p.name for p in state.iterdir())

    reset_db(postgres_target, "small_staged")
    (state / "db").mkdir()
    (state / "db" / "not-relocates").write_text("kept\n")
    if os.geteuid() == 0:  # as the login user would have made it
        for p in (state / "db", state / "db" / "not-relocates"):
            os.chown(p, sshd.root.stat().st_uid, sshd.root.stat().st_gid)
    again = cli("move", "-f", str(cfg), "--yes", env=env)
    assert again.exit_code == 0, again.stdout + again.stderr
    assert sorted(p.name for p in (state / "db").iterdir()) == ["not-relocates"]

def test_wrong_source_password_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, sshd: Any, source_pg: Any,
                                                                     postgres_target: Any) -> None:
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(source_pg), "password_from": "env:SRC_DB_PW"}],
                    target_db="small_wrongpw")
    run = cli("move", "-f", str(cfg), "--yes", env=env_for(source_pg, postgres_target, SRC_DB_PW="wrong-password-123"))
    assert run.exit_code == 2
    assert "login refused" in run.stderr and "password authentication failed" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "wrong-password-123" not in run.stdout + run.stderr
    assert not (sshd.root / tmp_path.name).exists()
    assert psql(postgres_target, "SELECT count(*) FROM pg_database WHERE datname LIKE 'small_wrongpw%';") == "0"


def test_unreachable_bastion_is_transient_exit_5(tmp_path: Path, sshd: Any, source_pg: Any, postgres_target: Any) -> None:
    bastion = {"host": "127.0.0.1", "port": free_port(), "user": sshd.user, "identity_file": str(sshd.identity_file),
               "host_key": sshd.host_key_fingerprint}
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(source_pg), "password_from": "env:SRC_DB_PW",
                                                       "via": "gone"}], target_db="small_nobastion", bastions={"gone": bastion})
    run = cli("plan", "-f", str(cfg), env=env_for(source_pg, postgres_target))
    assert run.exit_code == 5 and "cannot reach" in run.stderr and "Traceback" not in run.stderr
    assert not (sshd.root / tmp_path.name).exists()


def test_target_server_down_blocks_with_exit_3(tmp_path: Path, sshd: Any, source_pg: Any, postgres_target: Any) -> None:
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(source_pg), "password_from": "env:SRC_DB_PW"}],
                    target_db="small_down")
    doc = yaml.safe_load(cfg.read_text())
    doc["target"]["database"]["url"] = f"postgresql://postgres@127.0.0.1:{free_port()}/small_down"
    cfg.write_text(yaml.safe_dump(doc))
    plan = cli("plan", "-f", str(cfg), "--json", env=env_for(source_pg, postgres_target))
    assert plan.exit_code == 3
    blockers = plan.json()["blockers"]
    assert [b["code"] for b in blockers] == ["db-target"] and "unreachable" in blockers[0]["message"]
    move = cli("move", "-f", str(cfg), "--yes", env=env_for(source_pg, postgres_target))
    assert move.exit_code == 3 and "Traceback" not in move.stderr
    # Only the move lock and audit log may appear (execute/lock.py); no database staging.
    assert not (sshd.root / tmp_path.name / ".relocate" / "db").exists()
    assert not list((cfg.parent / "snapshots").glob("*/databases"))


def test_wrong_target_password_blocks(tmp_path: Path, sshd: Any, source_pg: Any, postgres_target: Any) -> None:
    cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(source_pg), "password_from": "env:SRC_DB_PW"}],
                    target_db="small_tpw")
    plan = cli("plan", "-f", str(cfg), "--json", env=env_for(source_pg, postgres_target, TGT_DB_PW="nope-nope"))
    assert plan.exit_code == 3
    assert "refused the login" in plan.json()["blockers"][0]["message"]



RDS_ROLES = """
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g;
GRANT SELECT ON t TO rds_superuser;
GRANT SELECT, INSERT ON t TO rdsish_reader;
CREATE TABLE owned_by_rds (id int PRIMARY KEY);
INSERT INTO owned_by_rds VALUES (1), (2);
ALTER TABLE owned_by_rds OWNER TO rdsadmin;
ALTER DEFAULT PRIVILEGES FOR ROLE rdsadmin GRANT SELECT ON TABLES TO rds_superuser;
"""


def test_rds_internal_roles_stay_behind(tmp_path: Path, sshd: Any, source_pg: Any, postgres_target: Any) -> None:
    """RDS's own roles (rdsadmin, rds_superuser) in owners, grants and default privileges do not
    break the restore on a plain server and do not appear there; the app's grants survive."""
    reset_db(source_pg, "rdsish")
    reset_db(postgres_target, "rdsish")
    for role in ("rds_superuser", "rdsadmin", "rdsish_reader"):
        psql(source_pg, f"DROP ROLE IF EXISTS {role};")
        psql(source_pg, f"CREATE ROLE {role} NOLOGIN;")
    try:
        reset_db(source_pg, "rdsish", RDS_ROLES)
        cfg = db_config(tmp_path, sshd, postgres_target, [{"url": small_url(source_pg, "rdsish"),
                                                           "password_from": "env:SRC_DB_PW"}], target_db="rdsish")
        moved = cli("move", "-f", str(cfg), "--yes", "--no-local-copy", env=env_for(source_pg, postgres_target))
        assert moved.exit_code == 0, moved.stdout + moved.stderr
        assert psql(postgres_target, "SELECT count(*) FROM pg_roles WHERE rolname IN ('rds_superuser', 'rdsadmin');") == "0"
        assert psql(postgres_target, "SELECT has_table_privilege('rdsish_reader', 'public.t', 'INSERT');", "rdsish") == "t"
        assert psql(postgres_target, "SELECT tableowner FROM pg_tables WHERE tablename = 'owned_by_rds';", "rdsish") == "postgres"
        assert psql(postgres_target, "SELECT count(*) FROM pg_default_acl;", "rdsish") == "0"
        assert psql(postgres_target, "SELECT count(*) FROM owned_by_rds;", "rdsish") == "2"
    finally:
        reset_db(source_pg, "rdsish")
        for role in ("rds_superuser", "rdsadmin"):
            psql(source_pg, f"DROP ROLE IF EXISTS {role};")

MARIA_SEED = r"""
CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) CHARACTER SET utf8mb4, note TEXT NULL,
  photo BLOB NULL, updated INT NOT NULL DEFAULT 0) ENGINE=InnoDB;
CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(10,2),
  FOREIGN KEY (customer_id) REFERENCES customers(id)) ENGINE=InnoDB;
INSERT INTO customers (name, note, photo) VALUES ('Zoë 日本', NULL, UNHEX('00FF10')), ('Ann', 'x', NULL), ('Bob', '', UNHEX('DEADBEEF'));
INSERT INTO orders (customer_id, total) SELECT 1 + seq % 3, seq / 7 FROM seq_1_to_5000;
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
CREATE TRIGGER customers_touch BEFORE UPDATE ON customers FOR EACH ROW SET NEW.updated = NEW.updated + 1;
CREATE PROCEDURE order_count(OUT n INT) SELECT COUNT(*) INTO n FROM orders;
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DO DELETE FROM orders WHERE 1 = 0;
CREATE DEFINER=`ghost`@`%` SQL SECURITY INVOKER VIEW ghost_view AS SELECT id FROM customers;
CREATE DEFINER=`ghost`@`%` PROCEDURE ghost_proc() SQL SECURITY INVOKER SELECT 1;
"""


def maria(server: Any, sql: str, db: str = "") -> str:
    r = subprocess.run(["mariadb", f"--defaults-extra-file={server.defaults_file}", "-N", "-B", *([db] if db else [])],
                       input=sql, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def maria_rows_config(tmp_path: Path, sshd: Any, server: Any, src: str, dst: str, rows: int, table_sql: str,
                      row_sql: str) -> Path:
    """A new MariaDB source database `src` with one table of `rows` rows (MariaDB's Sequence
    engine: `row_sql` selects from seq_1_to_<rows>), and a relocate.yaml moving it to `dst`
    on the same server."""
    maria(server, f"DROP DATABASE IF EXISTS {src}; DROP DATABASE IF EXISTS {dst}; CREATE DATABASE {src};")
    maria(server, f"{table_sql}; INSERT INTO {row_sql.replace('@SEQ@', f'seq_1_to_{rows}')};", src)
    return db_config(tmp_path, sshd, server, [{
        "url": f"mysql://{server.user}@127.0.0.1:{server.port}/{src}", "engine": "mariadb",
        "password_from": "env:SRC_DB_PW"}], target_db=dst, engine="mysql")


def test_mariadb_move_verify_and_rerun(tmp_path: Path, sshd: Any, mariadb_server: Any) -> None:
    maria(mariadb_server, "DROP DATABASE IF EXISTS shop; DROP DATABASE IF EXISTS shop_copy; CREATE DATABASE shop;")
    maria(mariadb_server, MARIA_SEED, "shop")
    cfg = db_config(tmp_path, sshd, mariadb_server, [{
        "url": f"mysql://{mariadb_server.user}@127.0.0.1:{mariadb_server.port}/shop", "engine": "mariadb",
        "password_from": "env:SRC_DB_PW"}], target_db="shop_copy", engine="mysql")
    env = env_for(mariadb_server, mariadb_server)
    moved = cli("move", "-f", str(cfg), "--yes", env=env)
    assert moved.exit_code == 0, moved.stdout + moved.stderr
    no_secret_in(moved, mariadb_server.password)
    assert maria(mariadb_server, "SELECT COUNT(*) FROM orders;", "shop_copy") == "5000"
    assert maria(mariadb_server, "SELECT HEX(photo) FROM customers WHERE id = 1;", "shop_copy") == "00FF10"
    assert maria(mariadb_server, "SELECT name FROM customers WHERE id = 1;", "shop_copy") == "Zoë 日本"
    assert maria(mariadb_server, "SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = 'shop_copy';") == "2"
    # DEFINER clauses naming accounts the target lacks (here `ghost`) became the restoring login.
    me = maria(mariadb_server, "SELECT CURRENT_USER();")
    assert maria(mariadb_server, "SELECT DEFINER FROM information_schema.views WHERE table_schema = 'shop_copy' AND table_name = 'ghost_view';") == me
    assert maria(mariadb_server, "SELECT DISTINCT DEFINER FROM information_schema.routines WHERE routine_schema = 'shop_copy';") == me
    assert maria(mariadb_server, "SELECT DEFINER FROM information_schema.views WHERE table_schema = 'shop' AND table_name = 'ghost_view';") == "ghost@%"
    assert maria(mariadb_server, "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = 'shop_copy';") == "1"
    assert maria(mariadb_server, "SELECT COUNT(*) FROM information_schema.events WHERE event_schema = 'shop_copy';") == "1"
    rec = latest_manifest(cfg)["components"]["databases"]["db:shop"]
    assert rec["stats"]["tables"]["orders"]["rows"] == 5000
    assert all(len(t["sample"]) == 32 for t in rec["stats"]["tables"].values())
    assert mariadb_server.password not in json.dumps(rec)
    assert cli("verify", "-f", str(cfg), env=env).exit_code == 0
    again = cli("move", "-f", str(cfg), "--yes", env=env)
    assert again.exit_code == 0 and "nothing to do" in again.stdout
    # Same row count, one changed value in a sampled row (id 2 is in the first 100): the sample checksum catches it.
    maria(mariadb_server, "UPDATE orders SET total = total + 1 WHERE id = 2;", "shop_copy")
    bad = cli("verify", "-f", str(cfg), "--json", env=env)
    assert bad.exit_code == 4
    assert any(not c["ok"] and "orders: sample checksum differs" in c["detail"] for c in bad.json()["checks"])
    maria(mariadb_server, "UPDATE orders SET total = total - 1 WHERE id = 2;", "shop_copy")
    assert cli("verify", "-f", str(cfg), env=env).exit_code == 0
    maria(mariadb_server, "DELETE FROM orders WHERE id = 5000;", "shop_copy")
    assert cli("verify", "-f", str(cfg), env=env).exit_code == 4


TWO_TABLES = r"""
CREATE TABLE a_first (id serial PRIMARY KEY, note text);
INSERT INTO a_first (note) SELECT 'note ' || g FROM generate_series(1, 300) g;
CREATE TABLE items (id serial PRIMARY KEY, name text);
INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 500) g;
SELECT setval('items_id_seq', 777);
"""


def test_managed_target_without_createdb_restores_in_place_in_one_transaction(
        tmp_path: Path, sshd: Any, source_pg: Any, postgres_target: Any) -> None:
    # How managed databases come: the app's role owns an empty database but may not create
    # databases (or roles). The scratch-database swap is impossible; the plan must say so
    # and take the in-place path, and a failed restore must leave the database as it was.
    role, db, pw = "managed_app", "managed", "managed-pw-31"
    reset_db(source_pg, "twotables", TWO_TABLES)
    reset_db(postgres_target, db)
    psql(postgres_target, f"DROP ROLE IF EXISTS {role};", check=False)
    psql(postgres_target, f"CREATE ROLE {role} LOGIN NOCREATEDB NOCREATEROLE PASSWORD '{pw}'; "
                          f"CREATE DATABASE {db} OWNER {role};")
    src = {"url": small_url(source_pg, "twotables"), "password_from": "env:SRC_DB_PW"}
    cfg = db_config(tmp_path, sshd, postgres_target, [src], target_db=db)
    doc = yaml.safe_load(cfg.read_text())
    doc["target"]["database"]["url"] = f"postgresql://{role}@127.0.0.1:{postgres_target.port}/{db}"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = env_for(source_pg, postgres_target, TGT_DB_PW=pw)

    plan = cli("plan", "-f", str(cfg), "--json", env=env)
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    step = next(s for s in plan.json()["steps"] if s["id"] == "db:twotables")
    assert "in ONE transaction" in step["detail"] and "may not create databases" in step["detail"]
    # the source's tables belong to a role managed_app cannot act as: said before the move
    assert any(w["code"] == "db-owners" for w in plan.json()["warnings"])

    # A failing restore (an object in the way of the second table) is rolled back whole:
    # a_first, restored before the failure, is not left behind.
    psql(postgres_target, f"SET ROLE {role}; CREATE TYPE items AS (x int);", db)
    failed = cli("move", "-f", str(cfg), "--yes", env=env)
    assert failed.exit_code != 0 and "rolled back" in failed.stderr, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    assert psql(postgres_target, "SELECT count(*) FROM pg_class WHERE relname = 'a_first';", db) == "0"
    psql(postgres_target, "DROP TYPE items;", db)

    moved = cli("move", "-f", str(cfg), "--yes", env=env)
    assert moved.exit_code == 0, moved.stdout + moved.stderr
    assert psql(postgres_target, "SELECT count(*) FROM items;", db) == "500"
    assert psql(postgres_target, "SELECT count(*) FROM a_first;", db) == "300"
    assert psql(postgres_target, "SELECT last_value FROM items_id_seq;", db) == "777"
    assert psql(postgres_target, "SELECT tableowner FROM pg_tables WHERE tablename = 'items';", db) == role
    assert psql(postgres_target, f"SELECT count(*) FROM pg_database WHERE datname LIKE '{db}__relocat%';") == "0"
    assert cli("verify", "-f", str(cfg), env=env).exit_code == 0
    again = cli("move", "-f", str(cfg), "--yes", env=env)
    assert again.exit_code == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr

    # Without the database there, the login cannot create it: blocked at plan time, naming the fix.
    psql(postgres_target, f'DROP DATABASE "{db}" WITH (FORCE);')
    blocked = cli("plan", "-f", str(cfg), "--json", env=env)
    assert blocked.exit_code == 3
    msg = next(b["message"] for b in blocked.json()["blockers"] if b["code"] == "db-privileges")
    assert "CREATEDB" in msg and f"OWNER {role}" in msg.replace('"', "")
    psql(postgres_target, f"DROP ROLE {role};")


def test_the_statistics_are_those_of_the_whole_row_form(source_pg: Any) -> None:
    """STATS_SQL numbers a heap table's rows carrying only their addresses and fetches the
    ~1,200 sampled rows by tableoid and ctid (faster: docs/transfer.md), with a frame of
    the current row alone. Its counts and sample checksums must be the ones the first form
    gave (every row carried whole, the default frame), which other access methods still
    use: snapshots recorded before still verify. Shown on integer keys, a text key
    (compared in the "C" collation), a two-column key, a table with no key, rows updated
    in place (their ctids out of key order) and an inheritance parent whose child's rows
    have the same ctids as its own."""
    from relocate.execute.pg import STATS_SQL

    heap, framed = "CASE WHEN t.heap THEN", " ROWS BETWEEN CURRENT ROW AND CURRENT ROW"
    assert heap in STATS_SQL and framed in STATS_SQL
    first = STATS_SQL.replace(heap, "CASE WHEN false THEN").replace(framed, "")
    reset_db(source_pg, "frames", r"""
CREATE TABLE tags (name text PRIMARY KEY, n int);
INSERT INTO tags SELECT 'tag-' || md5(g::text) || CASE WHEN g % 2 = 0 THEN 'Ä' ELSE 'a' END, g FROM generate_series(1, 3000) g;
CREATE TABLE loose (a int, b text);
INSERT INTO loose SELECT g % 97, 'x' || (g % 13) FROM generate_series(1, 5000) g;
CREATE TABLE pairs (a int, b int, v text, PRIMARY KEY (b, a));
INSERT INTO pairs SELECT g % 50, g / 50, md5(g::text) FROM generate_series(1, 4000) g;
UPDATE pairs SET v = v || '!' WHERE a % 3 = 0;
CREATE TABLE parent (id int PRIMARY KEY, v text);
CREATE TABLE child (extra int) INHERITS (parent);
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 2500) g;
INSERT INTO child SELECT g, 'c' || g, g FROM generate_series(2501, 5000) g;
""")
    for db in ("townsquare", "frames"):
        got = json.loads(psql(source_pg, STATS_SQL, db).splitlines()[-1])
        assert got == json.loads(psql(source_pg, first, db).splitlines()[-1]), db
        assert got["tables"] and all(len(t["sample"]) == 32 and t["rows"] > 0 for t in got["tables"].values())
    assert got["tables"]["public.parent"]["rows"] == 5000  # a parent is read with its children, as a SELECT reads it
    reset_db(source_pg, "frames")
