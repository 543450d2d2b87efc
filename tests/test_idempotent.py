"""Run twice, it does nothing (issue 15 item 10): every kind configured at once (objects,
env files from SSM and Secrets Manager, a PostgreSQL database, host files through a
real second sshd, a Route53 zone, a deploy with a health check, prepare), moved, then
moved again. The second run says "nothing to do", exits 0, writes no snapshot and
runs a bounded number of commands on the target."""

from __future__ import annotations

import json
import secrets
import stat
import textwrap
from pathlib import Path
from typing import Any

import yaml

import servers
from helpers import aws_client, cli, make_config, stop_app
from relocate.ssh.connection import Connection
from test_databases import psql, reset_db
from test_dns import _change
from test_hostfiles import _seed_source, _ssh

APP = textwrap.dedent('''
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
''')


def _seed_aws(moto: str, tag: str) -> None:
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket=tag)
    for key in ("a.txt", "dir/b.bin"):
        s3.put_object(Bucket=tag, Key=key, Body=key.encode() * 10)
    aws_client("ssm", moto).put_parameter(Name=f"/{tag}/prod/mode", Value="production", Type="String")
    aws_client("secretsmanager", moto).create_secret(Name=f"{tag}/api", SecretString=json.dumps({"token": "t-1"}))
    r53 = aws_client("route53", moto)
    zone = f"{tag}.example"
    zid = r53.create_hosted_zone(Name=zone, CallerReference=tag)["HostedZone"]["Id"]
    soa = {"Action": "UPSERT", "ResourceRecordSet": {"Name": zone + ".", "Type": "SOA", "TTL": 900, "ResourceRecords": [
        {"Value": "ns-1.awsdns-1.com. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"}]}}
    r53.change_resource_record_sets(HostedZoneId=zid, ChangeBatch={"Changes": [
        _change(f"www.{zone}.", "A", ["198.51.100.30"], ttl=300), soa]})


def _count_commands(monkeypatch: Any) -> list[str]:
    """Every command relocate starts on any SSH connection (target and source hosts)."""
    seen: list[str] = []
    real = Connection.start

    def start(self: Connection, command: str, *a: Any, **kw: Any) -> Any:
        seen.append(command)
        return real(self, command, *a, **kw)

    monkeypatch.setattr(Connection, "start", start)
    return seen


def test_every_kind_twice_second_run_does_nothing(tmp_path: Path, moto: str, sshd, sshd2, postgres_server,
                                                  postgres_target, monkeypatch) -> None:
    tag = "idem" + secrets.token_hex(3)
    _seed_aws(moto, tag)
    reset_db(postgres_server, tag, "CREATE TABLE items (id serial PRIMARY KEY, name text);"
                                   "INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 300) g;")
    reset_db(postgres_target, tag)
    src = _seed_source(sshd2.root / tag, sshd2.root)
    port = servers.free_port()
    release = tmp_path / "build"
    release.mkdir()
    (release / "app.py").write_text(APP)
    root = sshd.root / f"t-{tag}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": tag, "to": "data/media"}],
                      parameters=[{"path": f"/{tag}/prod/", "to": "shared/app.env"}],
                      secrets=[{"name": f"{tag}/api", "to": "shared/app.env"}])
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["hosts"] = [{"ssh": _ssh(sshd2), "paths": [str(src)], "to": "data/host", "exclude": ["*.log"]}]
    doc["source"]["dns"] = [{"zone": f"{tag}.example"}]
    doc["source"]["databases"] = [{"url": f"postgresql://{postgres_server.user}@127.0.0.1:{postgres_server.port}/{tag}",
                                   "password_from": "env:SRC_DB_PW"}]
    doc["target"].update(prepare=True, packages=["tar"],
                         database={"url": f"postgresql://{postgres_target.user}@127.0.0.1:{postgres_target.port}/{tag}",
                                   "password_from": "env:TGT_DB_PW"})
    doc["deploy"] = {"runtime": "command", "release": str(release), "command": f"exec python3 app.py {port}",
                     "health": {"url": f"http://127.0.0.1:{port}/healthz", "timeout_s": 10}}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {"SRC_DB_PW": postgres_server.password, "TGT_DB_PW": postgres_target.password}
    snapshots = tmp_path / "snapshots"
    try:
        first = cli("move", "-f", str(cfg), "--yes", "--json", env=env)
        assert first.exit_code == 0, first.stdout + first.stderr
        kinds = {s["kind"] for s in first.json()["plan"]["steps"]}
        assert kinds == {"s3", "env", "databases", "hostfiles", "dns", "deploy", "prepare", "verify"}, kinds
        assert psql(postgres_target, "SELECT count(*) FROM items;", tag) == "300"
        snaps = sorted(p.name for p in snapshots.iterdir() if p.is_dir())
        assert len(snaps) == 1
        # the env record holds hashes of a secrets file: as private as the file itself
        assert stat.S_IMODE((root / ".relocate" / "env.json").stat().st_mode) == 0o600

        plan = cli("plan", "-f", str(cfg), "--json", env=env)
        assert plan.exit_code == 0, plan.stdout + plan.stderr
        busy = {s["id"]: (s["todo_count"], s["detail"]) for s in plan.json()["steps"] if s["kind"] != "verify" and s["todo_count"]}
        assert busy == {}, busy  # every step of the plan: nothing to do

        commands = _count_commands(monkeypatch)
        again = cli("move", "-f", str(cfg), "--yes", env=env)
        assert again.exit_code == 0, again.stdout + again.stderr
        out = again.stdout
        assert "nothing to do: 2 objects already on the target and verified" in out, out
        assert "env files unchanged: shared/app.env" in out and "no new snapshot" in out, out
        for sid in (f"dns:{tag}.example", f"db:{tag}", "deploy", "prepare", "hosts:0:"):
            assert sid in out, (sid, out)
        assert "moved 0 objects" not in out and "wrote env file" not in out
        assert sorted(p.name for p in snapshots.iterdir() if p.is_dir()) == snaps  # no new snapshot
        # A bounded number of commands: probes, the lock and the audit lines, nothing per item.
        print("remote commands in the second run:", len(commands))
        assert len(commands) <= 30, (len(commands), commands)
        assert not any("tar -x" in c or "tar -c -f" in c and "sha256sum" not in c for c in commands), commands

        # "nothing to do" is not blind: a host file and a parameter changed at the source are to do again
        (src / "app.conf").write_text("listen 9090\n")
        aws_client("ssm", moto).put_parameter(Name=f"/{tag}/prod/mode", Value="maintenance", Type="String", Overwrite=True)
        plan = cli("plan", "-f", str(cfg), "--json", env=env)
        assert plan.exit_code == 0, plan.stdout + plan.stderr
        busy = {s["kind"] for s in plan.json()["steps"] if s["kind"] != "verify" and s["todo_count"]}
        assert busy == {"hostfiles", "env"}, busy
        third = cli("move", "-f", str(cfg), "--yes", env=env)
        assert third.exit_code == 0, third.stdout + third.stderr
        assert "wrote env file shared/app.env" in third.stdout
        assert (root / "data" / "host" / str(src).lstrip("/") / "app.conf").read_text() == "listen 9090\n"
        assert "MODE='maintenance'" in (root / "shared" / "app.env").read_text()
        assert len([p for p in snapshots.iterdir() if p.is_dir()]) == 2
    finally:
        stop_app(root)
