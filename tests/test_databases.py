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
