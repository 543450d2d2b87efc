"""Every JSON document relocate prints carries `format_version`, and docs/json.md names
every command that prints one. Commands that need servers are checked where their tests
run them (tests/helpers.Run.json() asserts format_version on every document it reads);
here: the command tree against the docs, and the commands that need no server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers import cli

from relocate.cli import build_command

DOC = Path(__file__).resolve().parents[1] / "docs" / "json.md"


def _commands(cmd: Any, path: str = "relocate") -> Iterator[tuple[str, Any]]:
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _commands(sub, f"{path} {name}")


def _prints_json(cmd: Any) -> bool:
    opts = {o for p in cmd.params for o in getattr(p, "opts", ())}
    return "--json" in opts


def test_every_command_with_json_output_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = [path for path, cmd in _commands(build_command()) if _prints_json(cmd)]
    assert {"relocate discover", "relocate plan", "relocate move", "relocate verify", "relocate rollback",
            "relocate check"} <= set(named)
    for path in named:
        assert f"`{path} --json" in text, f"docs/json.md does not document `{path} --json`"
    for event in ("phase", "progress", "item", "warning"):
        assert f"| `{event}` |" in text


def test_policy_commands_print_versioned_json(tmp_path: Path) -> None:
    cfg = tmp_path / "relocate.yaml"
    cfg.write_text("version: 1\napp: {name: x, content: [user_generated_content]}\n"
                   "target: {ssh: {host: 203.0.113.10, user: deploy}, root: /srv/x}\n")
    docs = {
        "check": cli("check", "-f", str(cfg), "--json"),
        "check --format json": cli("check", "-f", str(cfg), "--format", "json"),
        "check --explain": cli("check", "-f", str(cfg), "--explain", "hetzner", "--json"),
        "profiles list": cli("profiles", "list", "--json"),
        "profiles list --categories": cli("profiles", "list", "--categories", "--json"),
        "profiles show": cli("profiles", "show", "hetzner"),
    }
    for name, run in docs.items():
        assert run.exit_code == 0, f"{name}: {run.stderr}"
        doc = json.loads(run.stdout)
        want = 2 if name.startswith("check") else 1  # check's verdicts changed shape in issue 14 (docs/json.md)
        assert isinstance(doc, dict) and doc["format_version"] == want, name
    assert docs["profiles list"].json()["providers"] and docs["profiles list --categories"].json()["categories"]


def test_discover_json_is_versioned(moto: str) -> None:
    run = cli("discover", "--endpoint-url", moto, "--region", "us-east-1", "--json")
    assert run.exit_code == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["format_version"] == 1 and list(doc)[0] == "format_version" and "resources" in doc


def test_move_json_verify_is_the_verify_document(moto: str, sshd, tmp_path: Path) -> None:
    # docs/json.md: `relocate move --json`'s `result.verify` is "as in `relocate verify`":
    # the same keys, `snapshot` (the id) included.
    from helpers import aws_client, make_config

    import secrets

    bucket = f"jsondoc-{secrets.token_hex(3)}"
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"a")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / bucket),
                      buckets=[{"bucket": bucket, "to": "data"}])
    moved = cli("move", "-f", str(cfg), "--yes", "--json")
    assert moved.exit_code == 0, moved.stderr
    result = moved.json()["result"]
    verified = cli("verify", "-f", str(cfg), "--json")
    assert verified.exit_code == 0, verified.stderr
    doc = verified.json()
    assert set(result["verify"]) == set(doc) - {"format_version"}
    assert result["verify"]["snapshot"] == doc["snapshot"] and doc["snapshot"]
    assert Path(result["snapshot"]).name == doc["snapshot"]  # result.snapshot: that snapshot's directory
    assert list(doc)[:2] == ["format_version", "snapshot"]


def _error_document(run: Any, code: int, kind: str) -> dict[str, Any]:
    """A failure under JSON: its one line on stderr, and the same line as the one document
    on stdout (docs/json.md, "When a command fails")."""
    assert run.exit_code == code, (run.stdout, run.stderr)
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("relocate: error: "), run.stderr
    doc = json.loads(run.stdout)
    assert doc == {"format_version": 1, "error": {"exit_code": code, "kind": kind,
                                                  "message": line.removeprefix("relocate: error: ")}}, doc
    return doc


@pytest.mark.parametrize("args, env", [
    (["plan", "--json"], {}),
    (["plan"], {"RELOCATE_JSON": "1"}),
    (["plan", "--format", "json"], {}),
    (["plan"], {"RELOCATE_PLAN_FORMAT": "json"}),
    (["move", "--json", "--yes"], {}),
    (["verify", "--json"], {}),
    (["discover", "--json", "--region", "us-east-1", "--endpoint-url", "ftp://x"], {}),
    (["check", "--json", "--content", "no-such-category"], {}),
])
def test_a_failure_under_json_prints_the_error_document(tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
    """`relocate move --json > move.json; jq < move.json` must never meet an empty file."""
    run = cli(*args, *(["-f", str(tmp_path / "missing.yaml")] if args[0] in ("plan", "move", "verify") else []), env=env)
    _error_document(run, 2, "usage")


@pytest.mark.parametrize("args, env", [
    (["plan"], {}),
    (["plan", "--format", "markdown"], {"RELOCATE_JSON": "1"}),  # the flag on the command line wins: not JSON
    (["plan", "--json", "--format", "markdown"], {}),  # one or the other: neither document
])
def test_without_json_a_failure_prints_nothing_on_stdout(tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
    run = cli(*args, "-f", str(tmp_path / "missing.yaml"), env=env)
    assert run.exit_code == 2 and run.stdout == "", (run.stdout, run.stderr)


def test_refusals_and_transient_failures_print_the_error_document(tmp_path: Path, moto: str, sshd, monkeypatch) -> None:
    import servers
    import yaml

    from helpers import aws_client, make_config

    root = sshd.root / f"errdoc-{tmp_path.name}"
    # exit 6: an unknown host key (nothing pinned, an empty known_hosts)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root), pin=False)
    doc = _error_document(cli("move", "-f", str(cfg), "--yes", "--json"), 6, "refused")
    assert "host key" in doc["error"]["message"]
    # exit 5: nobody listens on the target's port
    spec = yaml.safe_load(cfg.read_text())
    spec["target"]["ssh"]["port"] = servers.free_port()
    cfg.write_text(yaml.safe_dump(spec))
    doc = _error_document(cli("plan", "-f", str(cfg), "--json"), 5, "transient")
    assert "cannot reach" in doc["error"]["message"]
    # exit 2: a "no" at the confirmation (a terminal, as the gate's tests fake one)
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="errdoc")
    s3.put_object(Bucket="errdoc", Key="a.txt", Body=b"a")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "errdoc", "to": "data"}])
    monkeypatch.setattr("relocate.cli.move_cmd.can_prompt", lambda: True)
    monkeypatch.setattr("typer.confirm", lambda q, default=False: False)
    doc = _error_document(cli("move", "-f", str(cfg), "--json"), 2, "usage")
    assert doc["error"]["message"].startswith("not confirmed: nothing was changed on "), doc
    assert not (root / "data").exists()


def test_the_error_document_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert '"error": {"exit_code"' in text and "`kind`" in text
    readme = (DOC.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "error document" in readme.split("## Running in CI", 1)[1].split("\n## ", 1)[0]
