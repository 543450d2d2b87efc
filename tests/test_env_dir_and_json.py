"""Env files against real servers (SSM and Secrets Manager from moto, the target a real
OpenSSH sshd logged in as an ordinary user):

- `target.env_dir_mode` (README): a wrong mode on an env directory the login owns is a
  change the plan shows, the move sets it back, `verify` reports it meanwhile;
- a JSON secret gives one variable per top-level key, nested values included (as compact
  JSON), and a file written under the older rule is written again. No value is printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

from helpers import aws_client, cli, make_config

PARAM_VALUE = "p4ram-" + secrets.token_hex(6)


def _root(sshd: Any, name: str) -> Path:
    """A fresh target root the login user owns (the tests run as root in CI)."""
    root = sshd.root / f"{name}-{secrets.token_hex(4)}"
    root.mkdir()
    st = sshd.root.stat()
    os.chown(root, st.st_uid, st.st_gid)
    return root


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_a_wrong_env_dir_mode_is_planned_set_back_and_verified(moto: str, sshd: Any, tmp_path: Path) -> None:
    aws_client("ssm", moto).put_parameter(Name="/envdir/prod/token", Value=PARAM_VALUE, Type="SecureString")
    root = _root(sshd, "envdir")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      parameters=[{"path": "/envdir/prod/", "to": "shared/app.env"}])
    shared, env = root / "shared", root / "shared" / "app.env"
    first = cli("move", "-f", str(cfg), "--yes")
    assert first.exit_code == 0, first.stdout + first.stderr
    assert _mode(shared) == 0o700 and _mode(env) == 0o600
    content = env.read_bytes()

    # The acceptance tester's step: the directory opened up after the move.
    shared.chmod(0o755)
    assert shared.stat().st_uid == root.stat().st_uid  # still the login user's

    plan = cli("plan", "-f", str(cfg), "--json")
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    step = {s["id"]: s for s in plan.json()["steps"]}["env:shared/app.env"]
    assert step["todo_count"] > 0, step  # not "nothing to do"
    assert "set directory shared to mode 0700 (it is 0755" in step["detail"], step["detail"]
    assert "the file is unchanged" in step["detail"], step["detail"]

    # verify says so before any move (exit 4), naming the directory and both modes
    bad = cli("verify", "-f", str(cfg))
    assert bad.exit_code == 4, bad.stdout + bad.stderr
    assert "BAD env directory shared: mode 0755, not 0700" in bad.stdout, bad.stdout
    bad_json = cli("verify", "-f", str(cfg), "--json")
    assert bad_json.exit_code == 4
    check = [c for c in bad_json.json()["checks"] if c["label"] == "env directory shared"]
    assert check and check[0]["ok"] is False, bad_json.stdout

    fixed = cli("move", "-f", str(cfg), "--yes")
    assert fixed.exit_code == 0, fixed.stdout + fixed.stderr
    assert "nothing to do" not in fixed.stdout and "shared: mode 0755 set back to 0700" in fixed.stdout, fixed.stdout
    assert _mode(shared) == 0o700
    assert env.read_bytes() == content and _mode(env) == 0o600  # the file itself was not touched
    assert cli("verify", "-f", str(cfg)).exit_code == 0

    again = cli("move", "-f", str(cfg), "--yes")
    assert again.exit_code == 0 and "nothing to do" in again.stdout and "no new snapshot" in again.stdout, again.stdout

    # A directory another user owns is not the login's to change: no change planned, no
    # failed check (only when the test can give it away, i.e. runs as root, as CI does).
    if os.geteuid() == 0 and root.stat().st_uid != 0:
        os.chown(shared, 0, 0)
        shared.chmod(0o755)
        plan = cli("plan", "-f", str(cfg), "--json")
        step = {s["id"]: s for s in plan.json()["steps"]}["env:shared/app.env"]
        assert step["todo_count"] == 0 and step["detail"].startswith("nothing to do"), step
        assert cli("verify", "-f", str(cfg)).exit_code == 0

    for run in (first, plan, bad, fixed, again):
        assert PARAM_VALUE not in run.stdout + run.stderr


def _env_lines(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def _sh_value(env: Path, name: str) -> str:
    """What POSIX sh reads from the file (dash, Debian's /bin/sh), as the app's start does."""
    return subprocess.run(["sh", "-c", f'. "$1"; printf %s "${name}"', "sh", str(env)],
                          capture_output=True, text=True, check=True).stdout


def test_a_json_secret_with_nested_values_gives_one_variable_per_top_level_key(moto: str, sshd: Any,
                                                                               tmp_path: Path) -> None:
    stripe, token = "sk_live_" + secrets.token_hex(6), "t0k-" + secrets.token_hex(6)
    value = {"stripe_key": stripe, "api-token": token, "nested": {"a": 1, "b": [True, None]}, "n": 5,
             "flag": False, "none": None, "list": [1, "x'y"]}
    sm = aws_client("secretsmanager", moto)
    name = f"envjson/{tmp_path.name}/api"
    sm.create_secret(Name=name, SecretString=json.dumps(value))
    root = _root(sshd, "envjson")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      secrets=[{"name": name, "to": "shared/app.env"}])
    plan = cli("plan", "-f", str(cfg))
    moved = cli("move", "-f", str(cfg), "--yes", "--json")
    assert moved.exit_code == 0, moved.stdout + moved.stderr
    env = root / "shared" / "app.env"
    lines = _env_lines(env)
    assert sorted(lines) == ["API_TOKEN", "FLAG", "LIST", "N", "NESTED", "NONE", "STRIPE_KEY"], lines
    assert lines["STRIPE_KEY"] == f"'{stripe}'" and lines["API_TOKEN"] == f"'{token}'"
    assert lines["NESTED"] == """'{"a":1,"b":[true,null]}'""" and lines["N"] == "'5'"
    assert lines["FLAG"] == "'false'" and lines["NONE"] == "'null'"
    # a quote inside a nested value survives the shell quoting
    assert _sh_value(env, "LIST") == """[1,"x'y"]""" and json.loads(_sh_value(env, "NESTED")) == value["nested"]
    # the variable names are in the snapshot manifest, never a value in any output
    result = moved.json()["result"]
    manifest = json.loads((Path(result["snapshot"]) / "manifest.json").read_text())
    assert sorted(manifest["env_files"][0]["vars"]) == sorted(lines)
    for run in (plan, moved):
        out = run.stdout + run.stderr
        assert stripe not in out and token not in out and "x'y" not in out
    assert cli("verify", "-f", str(cfg)).exit_code == 0

    # A file written by an earlier relocate (one variable holding the whole object, its
    # record made without the splitting rule) is not "unchanged": the plan writes it again.
    sid = next(v for v, stages in sm.describe_secret(SecretId=name)["VersionIdsToStages"].items() if "AWSCURRENT" in stages)
    old = "# written by relocate; values come from the source's parameters and secrets\nAPI='" \
          + json.dumps(value).replace("'", "'\\''") + "'\n"
    env.write_text(old)
    env.chmod(0o600)
    os.chown(env, root.stat().st_uid, root.stat().st_gid)  # as the login user wrote it (0600: not a reason to rewrite)
    record_path = root / ".relocate" / "env.json"
    record = json.loads(record_path.read_text())
    record["shared/app.env"] = {"sources": hashlib.sha256(json.dumps([["secret", name, sid]]).encode()).hexdigest(),
                                "sha256": hashlib.sha256(old.encode()).hexdigest()}
    record_path.write_text(json.dumps(record))
    step = {s["id"]: s for s in cli("plan", "-f", str(cfg), "--json").json()["steps"]}["env:shared/app.env"]
    assert step["todo_count"] == 1, step
    rerun = cli("move", "-f", str(cfg), "--yes")
    assert rerun.exit_code == 0, rerun.stdout + rerun.stderr
    assert sorted(_env_lines(env)) == sorted(lines)


def test_the_readme_states_the_json_rule_the_code_follows() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "one variable per top-level key" in readme and """`NESTED='{"a":1}'`""" in readme
