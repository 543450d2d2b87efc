"""Pure pieces of the databases component: via parsing, credential files, comparison,
the version/extension/not-empty blockers, and password_from against moto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import aws_client
from relocate.kinds import Context
from relocate.settings import Switches
from relocate.kinds.databases import _TOOLS, DbGathered, Databases, compare, tools_found
from relocate.config import AwsSpec, parse_config
from relocate.errors import ConfigError, SourceError
from relocate.execute.dbfiles import classify, mysql_defaults, pgpass_line
from relocate.execute.mysql import rewrite_definer, stats_sql, table_layout, version_key
from relocate.execute.pg import (STATS_SQL, create_roles_sql, major, newest_program, part_stats_sql, program,
                                 rds_placeholders, strip_roles_sql)
from relocate.secret import Secret
from relocate.sources.aws import Aws
from relocate.sources.rds import DbAddress, parse_url, resolve_password
from relocate.ssh.via import resolve_via


def test_via_accepts_user_host_port_and_named_bastions() -> None:
    spec = resolve_via("ec2-user@bastion.internal:2222", None)
    assert (spec.user, spec.host, spec.port) == ("ec2-user", "bastion.internal", 2222)
    assert resolve_via("bastion.example", None).port is None
    named = resolve_via("jump", {"jump": {"host": "10.0.0.5", "port": 22, "user": "ops", "identity_file": None,
                                        "host_key": "SHA256:x", "known_hosts": None, "jump": None}})
    assert (named.host, named.host_key) == ("10.0.0.5", "SHA256:x")
    with pytest.raises(ConfigError, match="not a name under source.bastions"):
        resolve_via("nosuch", {"jump": {"host": "h"}})
    with pytest.raises(ConfigError, match=r"must be user@host\[:port\]"):
        resolve_via("u@h:xx", None)


def test_credential_files_escape_what_their_formats_need() -> None:
    assert pgpass_line("a:b\\c") == b"*:*:*:*:a\\:b\\\\c\n"
    with pytest.raises(ValueError):
        pgpass_line("two\nlines")
    cnf = mysql_defaults("app", 'p"w\\', "127.0.0.1", 3306).decode()
    assert 'password="p\\"w\\\\"' in cnf and "port=3306" in cnf


def test_urls_and_password_from_schema() -> None:
    a = parse_url("postgresql://app@db.internal:6543/townsquare", "x")
    assert (a.engine, a.host, a.port, a.user, a.dbname, a.password) == ("postgres", "db.internal", 6543, "app", "townsquare", None)
    assert parse_url("mysql://root:pw@h/shop", "x").password == Secret("pw")
    with pytest.raises(ConfigError, match="scheme"):
        parse_url("oracle://h/x", "x")
    text = ("version: 1\ntarget: {ssh: {host: h}, root: /srv}\nsource:\n  databases:\n"
            "    - {url: 'postgresql://a@h/d', password_from: 'hunter2'}\n")
    with pytest.raises(ConfigError, match=r"relocate.yaml:5: source.databases\[0\].password_from: must be secret:"):
        parse_config(text, Path("relocate.yaml"))


def test_compare_names_each_kind_of_difference() -> None:
    base = {"tables": {"a.t": {"rows": 3, "sample": "x"}, "a.u": {"rows": 1, "sample": "y"}},
            "sequences": {"a.s": 7}, "large_objects": {"count": 1, "md5": "m"}}
    assert compare(base, json.loads(json.dumps(base))) == []
    other = {"tables": {"a.t": {"rows": 4, "sample": "x"}, "a.v": {"rows": 0, "sample": ""}},
             "sequences": {"a.s": 8}, "large_objects": {"count": 0, "md5": "n"}}
    diffs = compare(base, other)
    assert "table a.t: 4 rows, expected 3" in diffs and "table a.u is missing" in diffs
    assert "table a.v is not in the source" in diffs and any(d.startswith("sequence a.s") for d in diffs)
    assert any(d.startswith("large objects") for d in diffs)
    assert compare(base, None) == ["the database is missing"]


def test_version_helpers_and_role_sql() -> None:
    assert major(150018) == 15 and major(90624) == 906
    assert version_key("10.11.6-MariaDB-0+deb12u1") == 1011 and version_key("8.0.36") == 800
    sql = create_roles_sql([{"name": 'we"ird', "login": True}, {"name": "ro", "login": False}, {"name": "old", "login": True}], {"old"})
    assert sql == 'CREATE ROLE "we""ird" LOGIN;\nCREATE ROLE "ro";' and "PASSWORD" not in sql
    layout = table_layout("a`b\tid\t1\na`b\tv\t0\nit's\tx\t0\n")
    assert layout == {"a`b": {"columns": ["id", "v"], "key": ["id"]}, "it's": {"columns": ["x"], "key": []}}
    sql = stats_sql(layout)
    assert "FROM `a``b`" in sql and "'it''s'" in sql and "ORDER BY x.`id`" in sql and "START TRANSACTION WITH CONSISTENT SNAPSHOT" in sql
    assert "START TRANSACTION" not in stats_sql(layout, snapshot=False)
    assert rewrite_definer(b"/*!50013 DEFINER=`rdsadmin`@`localhost` SQL SECURITY DEFINER */\n") == \
        b"/*!50013 DEFINER=CURRENT_USER SQL SECURITY DEFINER */\n"
    assert rewrite_definer(b"CREATE DEFINER='a b'@'%' PROCEDURE p()\n") == b"CREATE DEFINER=CURRENT_USER PROCEDURE p()\n"
    assert rewrite_definer(b"INSERT INTO t VALUES ('DEFINER=`x`@`y`');\n").endswith(b"`x`@`y`');\n")
    assert classify("FATAL:  password authentication failed for user x") == "auth"
    assert classify("psql: error: connection to server at 127.0.0.1 failed: Connection refused") == "unreachable"


def _judged(tmp_path: Path, src: dict[str, Any], dst: dict[str, Any], switches: dict[str, Any] | None = None) -> DbGathered:
    text = ("version: 1\ntarget: {ssh: {host: h}, root: /srv}\n"
            f"snapshot: {{dir: {tmp_path}/snap, key_file: {tmp_path}/k}}\n")
    config = parse_config(text, tmp_path / "relocate.yaml")
    ctx = Context(config=config, aws=None, conn=None, target_id="t", switches=Switches(**(switches or {})))
    addr = DbAddress("postgres", "h", 5432, "u", "app", Secret("p"))
    g = DbGathered({}, "app", addr, addr, facts=src, tfacts=dst)
    Databases()._judge(ctx, g)
    return g


def test_blockers_for_older_target_missing_extensions_and_a_differing_database(tmp_path: Path) -> None:
    stats = {"tables": {"s.t": {"rows": 1, "sample": "a"}}, "sequences": {}, "large_objects": {}}
    src = {"major": 15, "version": "15.4", "extensions": ["hstore", "postgis"], "stats": stats, "size": 0}
    older = {"major": 13, "version": "13.1", "available": ["hstore"], "exists": False, "createdb": True}
    g = _judged(tmp_path, src, older)
    assert [b.code for b in g.blockers] == ["db-version", "db-extensions"] and "postgis" in g.blockers[1].message
    differs = {"major": 15, "version": "15.5", "available": ["hstore", "postgis"], "exists": True, "objects": 3,
               "stats": {**stats, "tables": {"s.t": {"rows": 2, "sample": "b"}}}, "createdb": True}
    g = _judged(tmp_path, src, differs)
    assert g.state == "differs" and [b.code for b in g.blockers] == ["db-not-empty"]
    assert "--replace-database app" in g.blockers[0].message
    g = _judged(tmp_path, src, differs, {"replace_database": ("app",)})
    assert not g.blockers and [w.code for w in g.warnings] == ["db-replace"]
    same = {**differs, "stats": stats}
    assert _judged(tmp_path, src, same).state == "matches"


def test_restore_path_follows_the_logins_privileges(tmp_path: Path) -> None:
    stats = {"tables": {"s.t": {"rows": 1, "sample": "a"}}, "sequences": {}, "large_objects": {}}
    src = {"major": 15, "version": "15.4", "extensions": [], "stats": stats, "size": 0,
           "roles": [{"name": "app", "login": True}, {"name": "ops", "login": False}]}
    base = {"major": 15, "version": "15.5", "available": [], "login": "app", "member_of": ["app"]}
    swap = _judged(tmp_path, src, {**base, "exists": False, "createdb": True})
    assert swap.path == "swap" and not swap.blockers
    # no CREATEDB, database missing: blocked, naming how to fix it
    g = _judged(tmp_path, src, {**base, "exists": False, "createdb": False})
    assert [b.code for b in g.blockers] == ["db-privileges"] and "CREATEDB" in g.blockers[0].message
    # no CREATEDB, empty database it may create in: in place, warned that ops' objects become app's
    g = _judged(tmp_path, src, {**base, "exists": True, "objects": 0, "createdb": False, "create_in_db": True})
    assert g.path == "in-place" and not g.blockers and [w.code for w in g.warnings] == ["db-owners"]
    assert "ops" in g.warnings[0].message
    g = _judged(tmp_path, src, {**base, "exists": True, "objects": 0, "createdb": False, "create_in_db": False})
    assert [b.code for b in g.blockers] == ["db-privileges"] and "GRANT CREATE ON DATABASE" in g.blockers[0].message
    # replacing a differing database needs the swap
    differs = {**base, "exists": True, "objects": 3, "createdb": False, "create_in_db": True,
               "stats": {**stats, "tables": {"s.t": {"rows": 2, "sample": "b"}}}}
    g = _judged(tmp_path, src, differs, {"replace_database": ("app",)})
    assert "db-privileges" in [b.code for b in g.blockers]


def test_password_from_secrets_manager_ssm_and_env(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    aws = Aws(AwsSpec(region="us-east-1", endpoint_url=moto))
    aws_client("secretsmanager", moto).create_secret(Name="app/db", SecretString=json.dumps({"password": "s3cret"}))
    aws_client("secretsmanager", moto).create_secret(Name="app/plain", SecretString="plain-pw")
    aws_client("ssm", moto).put_parameter(Name="/app/db/password", Value="ssm-pw", Type="SecureString")
    assert resolve_password(aws, "secret:app/db#password", "x").reveal() == "s3cret"
    assert resolve_password(aws, "secret:app/plain", "x").reveal() == "plain-pw"
    assert resolve_password(aws, "ssm:/app/db/password", "x").reveal() == "ssm-pw"
    monkeypatch.setenv("DB_PW_FOR_TEST", "env-pw")
    assert resolve_password(aws, "env:DB_PW_FOR_TEST", "x").reveal() == "env-pw"
    with pytest.raises(SourceError, match="has no key 'pass'"):
        resolve_password(aws, "secret:app/db#pass", "x")
    with pytest.raises(SourceError, match="not found"):
        resolve_password(aws, "secret:app/none#password", "x")
    with pytest.raises(ConfigError, match="not set"):
        resolve_password(aws, "env:NOPE_NOT_SET_123", "x")


def test_rds_internal_roles_are_placeholders_and_stats_split_into_parts() -> None:
    roles = [{"name": "app", "login": True, "internal": False}, {"name": "rds_superuser", "login": False, "internal": True},
             {"name": "rdsadmin", "login": True, "internal": True}]
    assert create_roles_sql(roles, set()) == 'CREATE ROLE "app" LOGIN;\nCREATE ROLE "rds_superuser";\nCREATE ROLE "rdsadmin";'
    assert rds_placeholders(roles, {"rdsadmin"}) == ["rds_superuser"]  # an RDS target has its own: left alone
    sql = strip_roles_sql(["rds_superuser"], "app")
    assert sql == 'REASSIGN OWNED BY "rds_superuser" TO "app";\nDROP OWNED BY "rds_superuser";\n'
    assert part_stats_sql(0, 1) == STATS_SQL
    assert "% 3 = 2" in part_stats_sql(2, 3) and "pg_largeobject_metadata WHERE false" in part_stats_sql(2, 3)
    assert "WHERE false" not in part_stats_sql(0, 3)


def test_extensions_the_login_may_not_create_block_where_the_restore_runs(tmp_path: Path) -> None:
    src = {"major": 15, "version": "15.4", "extensions": ["dblink", "pgcrypto", "ext_plain"], "size": 0, "roles": []}
    rules = {"dblink": {"superuser": True, "trusted": False}, "pgcrypto": {"superuser": True, "trusted": True},
             "ext_plain": {"superuser": False, "trusted": False}}
    base = {"major": 15, "version": "15.5", "available": ["dblink", "pgcrypto", "ext_plain"], "login": "app",
            "member_of": ["app"], "extension_rules": rules, "superuser": False}
    empty = {**base, "exists": True, "objects": 0, "createdb": False, "create_in_db": True, "extensions": ["plpgsql"]}
    g = _judged(tmp_path, src, empty)
    assert g.path == "in-place" and [b.code for b in g.blockers] == ["db-extensions"]
    assert "dblink" in g.blockers[0].message and "pgcrypto" not in g.blockers[0].message
    assert 'CREATE EXTENSION "dblink"' in g.blockers[0].message
    # already in the database it fills: nothing to create
    assert not _judged(tmp_path, src, {**empty, "extensions": ["dblink", "plpgsql"]}).blockers
    # a superuser login may create any; an extension the target lacks is the other blocker's
    assert not _judged(tmp_path, src, {**empty, "superuser": True}).blockers
    lacks = _judged(tmp_path, src, {**empty, "available": ["pgcrypto", "ext_plain"],
                                    "extension_rules": {k: v for k, v in rules.items() if k != "dblink"}})
    assert [b.code for b in lacks.blockers] == ["db-extensions"] and "lacks" in lacks.blockers[0].message
    # the swap fills a new database: what the target database has does not count
    swap = _judged(tmp_path, src, {**base, "exists": False, "createdb": True, "extensions": ["dblink"]})
    assert swap.path == "swap" and [b.code for b in swap.blockers] == ["db-extensions"]
    assert "dblink" in swap.blockers[0].message and "superuser login" in swap.blockers[0].message
    # trusted ones need CREATE on the database (in place, its lack also blocks as db-privileges)
    g = _judged(tmp_path, {**src, "extensions": ["pgcrypto"]}, {**empty, "create_in_db": False})
    assert sorted(b.code for b in g.blockers) == ["db-extensions", "db-privileges"]
    assert "GRANT CREATE ON DATABASE" in next(b.message for b in g.blockers if b.code == "db-extensions")


def test_replace_database_names_are_checked_against_the_config() -> None:
    from relocate.errors import UsageError
    from relocate.kinds.databases import check_replace_names

    check_replace_names(("shop", "shop"), ["shop", "users"])
    check_replace_names((), [])
    with pytest.raises(UsageError, match=r"--replace-database nosuch: .*target databases: shop, users") as err:
        check_replace_names(("shop", "nosuch"), ["shop", "users"])
    assert err.value.exit_code == 2
    with pytest.raises(UsageError, match="none"):
        check_replace_names(("shop",), [])


def test_the_target_credential_file_has_no_name_while_it_holds_the_password(tmp_path: Path) -> None:
    """dbfiles.RemoteSecret's wrapper, run by this machine's sh (dash on Debian, as on the
    target): the client finds the password at /dev/fd/3 (0600), then its own stdin, whole;
    no file in the directory holds the password; old leftovers of relocate's name shape
    go, anything else stays."""
    import subprocess

    from relocate.execute.dbfiles import RemoteSecret

    stale = tmp_path / f".relocate-db-{'ab' * 8}.pgpass"
    stale.write_text("*:*:*:*:old\n")
    other = tmp_path / ".relocate-db-notes.pgpass"
    other.write_text("keep")
    link = tmp_path / f".relocate-db-{'cd' * 8}.cnf"
    link.symlink_to(other)
    secret = RemoteSecret(b"*:*:*:*:pw-\xc3\xa9-42\n", ".pgpass")
    client = ["sh", "-c", 'ls -A; stat -L -c %a /dev/fd/3; cat /dev/fd/3; cat /dev/fd/3; echo ---; cat']
    r = subprocess.run(secret.argv(client), cwd=tmp_path, input=secret.stdin(b"the client's own input\n"),
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    listing, rest = r.stdout.decode().split("600\n", 1)
    assert sorted(listing.split()) == sorted([other.name, link.name])  # no new name, the stale one gone
    assert rest == "*:*:*:*:pw-é-42\n" * 2 + "---\nthe client's own input\n"
    assert "pw-" not in " ".join(secret.argv(client))  # never on the command line
    assert not any(b"pw-" in p.read_bytes() for p in tmp_path.iterdir() if p.is_file())


def test_the_newest_version_with_the_program_is_what_pg_wrapper_would_run(tmp_path: Path) -> None:
    """Debian's pg_wrapper, with the host named, runs the newest installed version that has
    the program; relocate runs that binary itself (no Perl start per command)."""
    for version, tools in {"9.6": ("psql", "pg_dump"), "13": ("psql", "pg_dump"), "16": ("psql",), "17beta": ("pg_dump",)}.items():
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        for tool in tools:
            (bin_dir / tool).write_text("#!/bin/sh\n")
            (bin_dir / tool).chmod(0o755)
    (tmp_path / "README").write_text("not a version")
    assert newest_program(str(tmp_path), "psql") == str(tmp_path / "16" / "bin" / "psql")
    assert newest_program(str(tmp_path), "pg_dump") == str(tmp_path / "13" / "bin" / "pg_dump")  # 16 lacks it
    assert newest_program(str(tmp_path), "pg_restore") is None
    assert newest_program(str(tmp_path / "nowhere"), "psql") is None


def test_a_program_that_is_not_the_wrapper_is_run_by_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "pg_dump"
    tool.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 99.1'\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    program.cache_clear()
    try:
        assert program("pg_dump") == "pg_dump"
        wrapper = tmp_path / "w" / "pg_wrapper"
        wrapper.parent.mkdir()
        wrapper.write_text("#!/bin/sh\n")
        wrapper.chmod(0o755)
        tool.unlink()
        tool.symlink_to(wrapper)
        program.cache_clear()
        assert program("pg_dump") == (newest_program("/usr/lib/postgresql", "pg_dump") or "pg_dump")
    finally:
        program.cache_clear()


def test_the_mysql_cleanup_ends_the_restore_session_first_and_never_waits_long() -> None:
    """A failed or interrupted MySQL restore: the login's sessions still in the database
    (the restore, holding LOCK TABLES ... WRITE) are KILLed before the DROP, which waits
    for a lock at most CLEANUP_LOCK_WAIT_S; when it still cannot run, one line says what
    is left on the target and how to clear it."""
    from relocate.errors import TargetError
    from relocate.execute.mysql import CLEANUP_LOCK_WAIT_S, drop_unfinished

    class Remote:
        def __init__(self, drop_fails: bool) -> None:
            self.sent: list[str] = []
            self.drop_fails = drop_fails

        def query(self, sql: str, db: str = "") -> str:
            self.sent.append(sql)
            if "processlist" in sql:
                return "41\n42\n"
            if "DROP DATABASE" in sql and self.drop_fails:
                raise TargetError("target database x: ERROR 1205 (HY000): Lock wait timeout exceeded")
            return ""

    ok = Remote(False)
    assert drop_unfinished(ok, "shop_copy") == ""  # type: ignore[arg-type]
    assert "db = 'shop_copy'" in ok.sent[0] and "id <> CONNECTION_ID()" in ok.sent[0]
    assert ok.sent[1:3] == ["KILL CONNECTION 41;", "KILL CONNECTION 42;"]
    assert ok.sent[3] == f"SET SESSION lock_wait_timeout = {CLEANUP_LOCK_WAIT_S};\nDROP DATABASE IF EXISTS `shop_copy`;\n"
    left = drop_unfinished(Remote(True), "shop_copy")  # type: ignore[arg-type]
    assert "shop_copy is left partly restored on the target" in left and "Lock wait timeout" in left
    assert "--replace-database shop_copy" in left


def test_the_target_tool_probe_names_what_is_missing_and_what_pg_wrapper_would_run() -> None:
    """The plan's tool probe, run here by `sh` as it runs on a target: a missing tool is
    named; for a tool that is Debian's pg_wrapper, the binary the wrapper would run (what
    RemotePg then runs, without the Perl); GNU tar is noticed."""
    import subprocess

    said = subprocess.run(["sh", "-s", "--", "psql", "pg_restore", "no-such-tool-here"], input=_TOOLS,
                          capture_output=True, text=True, check=True).stdout
    got = tools_found(said)
    assert got.missing == ["no-such-tool-here"]
    assert got.gnu_tar == ("GNU tar" in subprocess.run(["tar", "--version"], capture_output=True, text=True).stdout)
    for tool in ("psql", "pg_restore"):
        assert got.programs.get(tool) == (program(tool) if program(tool) != tool else None)
