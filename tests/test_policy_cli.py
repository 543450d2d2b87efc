"""`relocate check` and `relocate profiles ...` through Typer: exit codes 0/2 and JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relocate.cli import app

TEST_PROFILES = Path(__file__).parent / "data" / "profiles"
PROFILES_DIR = Path(__file__).parent.parent / "profiles"  # the shipped ones
PARLER = """version: 1
app:
  name: townsquare
  content: {content}
  moderation: {{moderators: 5, report_response_hours: 120, automated_filtering: false}}
  dependencies: {{dns: route53, registrar: godaddy}}
target:
  provider: aws
  ssh: {{host: 203.0.113.10, user: deploy}}
  root: /srv/townsquare
"""


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("RELOCATE_PROFILES", raising=False)
    return CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "relocate.yaml"
    path.write_text(PARLER.format(content="[user_generated_content, political_speech]"))
    return path


def _run(runner: CliRunner, *args: str):
    return runner.invoke(app, list(args))


def test_check_json(runner: CliRunner, config: Path) -> None:
    r = _run(runner, "check", "-f", str(config), "--json", "--today", "2026-12-01")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    verdicts = {p["provider"]: p["verdict"] for p in data["providers"]}
    assert len(verdicts) >= 20
    assert verdicts["aws"] == "reject"
    assert data["format_version"] == 2 and "not legal advice" in data["disclaimer"]
    deps = {d["kind"]: d for d in data["dependencies"]}
    assert deps["dns"]["provider"] == "aws" and deps["dns"]["at_risk"] is True
    assert deps["registrar"]["current"] == "godaddy"


def test_check_filters(runner: CliRunner, config: Path) -> None:
    r = _run(runner, "check", "-f", str(config), "--format", "json", "--provider", "aws", "--provider", "b2")
    assert r.exit_code == 0, r.output
    assert {p["provider"] for p in json.loads(r.stdout)["providers"]} == {"aws", "backblaze"}
    r = _run(runner, "check", "-f", str(config), "--json", "--kind", "registrar")
    assert r.exit_code == 0
    providers = json.loads(r.stdout)["providers"]
    assert providers and all("registrar" in p["kinds"] for p in providers)
    # comma-separated, as --content and --uses are: the same as repeating the flag
    r = _run(runner, "check", "-f", str(config), "--json", "--provider", "aws,b2")
    assert r.exit_code == 0, r.output
    assert {p["provider"] for p in json.loads(r.stdout)["providers"]} == {"aws", "backblaze"}
    r = _run(runner, "check", "-f", str(config), "--json", "--kind", "sms,identity")
    assert r.exit_code == 0, r.output
    kinds = [set(p["kinds"]) for p in json.loads(r.stdout)["providers"]]
    assert kinds and all(k & {"sms", "identity"} for k in kinds)
    assert any("sms" in k for k in kinds) and any("identity" in k for k in kinds)


def test_check_table_and_markdown(runner: CliRunner, config: Path) -> None:
    r = _run(runner, "check", "-f", str(config))
    assert r.exit_code == 0, r.output
    assert "buyvm" in r.stdout and "target.provider aws" in r.stdout and "not legal advice" in r.stdout
    r = _run(runner, "check", "-f", str(config), "--format", "markdown")
    assert r.exit_code == 0
    assert "| # | provider | verdict |" in r.stdout and "## Amazon Web Services: reject" in r.stdout
    assert "## Vendor chain" in r.stdout and "app.dependencies.dns" in r.stdout


@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
def test_an_unknown_target_provider_is_exit_2_before_anything_is_printed(config: Path, fmt: str) -> None:
    """Not a table followed by an error, nor a JSON document and exit 0: one line, exit 2, in every format."""
    from helpers import cli, one_line_error

    config.write_text(config.read_text().replace("provider: aws", "provider: hetznr"))
    run = cli("check", "-f", str(config), "--format", fmt)
    line = one_line_error(run)
    assert "target.provider: no provider profile 'hetznr'" in line and "did you mean 'hetzner'?" in line
    if fmt == "json":  # no verdicts: only the error document, the same line (docs/json.md)
        assert json.loads(run.stdout)["error"] == {"exit_code": 2, "kind": "usage",
                                                  "message": line.removeprefix("relocate: error: ")}
    else:
        assert run.stdout == ""


def test_markdown_has_what_the_table_has(runner: CliRunner, config: Path) -> None:
    """docs/policy.md Output: markdown includes the record (of every provider, whatever its verdict) and
    the target.provider line, as the table does."""
    table = _run(runner, "check", "-f", str(config), "--today", "2026-12-04")
    md = _run(runner, "check", "-f", str(config), "--today", "2026-12-04", "--format", "markdown")
    assert table.exit_code == md.exit_code == 0, md.output
    assert "target.provider aws: reject" in table.stdout and "target.provider aws: reject" in md.stdout
    recorded = {line.split()[1].rstrip(":") for line in table.stdout.splitlines() if line.startswith("record ")}
    data = json.loads(_run(runner, "check", "-f", str(config), "--today", "2026-12-04", "--json").stdout)
    names = {p["provider"]: (p["name"], p["verdict"]) for p in data["providers"]}
    assert any(names[pid][1] in ("unknown", "accept") for pid in recorded)  # the case markdown used to leave out
    for pid in recorded:
        assert f"## {names[pid][0]}: " in md.stdout, pid


def test_check_refuses_an_unset_variable_like_plan(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README relocate.yaml: a missing ${VAR} is an error naming it, whichever command loads the file."""
    monkeypatch.delenv("RELOCATE_T_UNSET_VAR", raising=False)
    full = tmp_path / "relocate.yaml"
    full.write_text(PARLER.format(content="[spam]").replace("203.0.113.10", "\"${RELOCATE_T_UNSET_VAR}\""))
    app_only = tmp_path / "app.yaml"
    app_only.write_text("app:\n  name: ${RELOCATE_T_UNSET_VAR}\n  content: [spam]\n")
    for path in (full, app_only):
        r = _run(runner, "check", "-f", str(path))
        assert r.exit_code == 2 and "environment variable RELOCATE_T_UNSET_VAR is not set" in r.stderr, r.output


def test_explain_shows_every_finding_with_sources(runner: CliRunner, config: Path) -> None:
    r = _run(runner, "check", "-f", str(config), "--explain", "aws")
    assert r.exit_code == 0, r.output
    assert "[reject] aws/record/" in r.stdout and "aws/unmoderated_ugc" in r.stdout and "https://aws.amazon.com/aup/" in r.stdout
    assert "2021-01-10 drop Parler" in r.stdout
    # each finding says which dated copy it was read from, and whether in full
    copies = [line for line in r.stdout.splitlines() if line.startswith("    copy:")]
    assert copies and any("@" in c and "captured" in c and "read in full" in c for c in copies)
    r = _run(runner, "check", "-f", str(config), "--explain", "aws", "--json")
    data = json.loads(r.stdout)
    assert data["provider"] == "aws" and data["format_version"] == 2
    # A clause the profile found absent from the AUP read in full cites that AUP and its copy, with no section.
    hate = next(f for f in data["findings"] if f["id"] == "aws/hate_speech")
    assert hate["stance"] == "unknown" and "read in full" in hate["summary"]
    assert hate["source"] is not None and hate["source"]["document"] == "aup" and hate["source"]["section"] is None
    assert hate["source"]["copy"]["commit"] and hate["source"]["read"] == "full"
    text = _run(runner, "check", "-f", str(config), "--explain", "aws").stdout
    assert "source: no source: terms not reviewed" not in text.split("aws/hate_speech", 1)[1].split("\n[", 1)[0]


@pytest.mark.parametrize("args,message", [
    (("--explain", "amazonn"), "no provider profile 'amazonn'"),
    (("--provider", "nope"), "no provider profile 'nope'"),
    (("--kind", "mainframe"), "--kind mainframe: unknown kind"),
    (("--format", "yaml"), "--format: must be table, markdown or json"),
    (("--today", "tomorrow"), "--today: not a date"),
    (("--profiles", "/nonexistent/profiles"), "profiles directory not found"),
])
def test_check_usage_errors_exit_2(runner: CliRunner, config: Path, args: tuple[str, ...], message: str) -> None:
    r = _run(runner, "check", "-f", str(config), *args)
    assert r.exit_code == 2
    assert message in r.stderr and "Traceback" not in r.output


def test_check_bad_inputs_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    assert _run(runner, "check", "-f", str(tmp_path / "missing.yaml")).exit_code == 2
    bad = tmp_path / "relocate.yaml"
    bad.write_text(PARLER.format(content="[politcal_speech]"))
    r = _run(runner, "check", "-f", str(bad))
    assert r.exit_code == 2 and "unknown category 'politcal_speech'" in r.stderr and "political_speech" in r.stderr


def test_profiles_override_via_flag_and_env(runner: CliRunner, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = _run(runner, "check", "-f", str(config), "--json", "--profiles", str(TEST_PROFILES), "--provider", "lenient")
    assert r.exit_code == 0, r.output
    # lenient's terms allow it all; a 120 h answer is beyond its 72 h cure period
    (lenient,) = json.loads(r.stdout)["providers"]
    assert lenient["verdict"] == "conditional" and "beyond 72 h" in " ".join(lenient["moderation"]["shortfalls"])
    monkeypatch.setenv("RELOCATE_PROFILES", str(TEST_PROFILES))
    r = _run(runner, "profiles", "list", "--json")
    assert {"strict", "lenient", "aws"} <= {p["id"] for p in json.loads(r.stdout)["providers"]}


def test_profiles_list_show(runner: CliRunner) -> None:
    r = _run(runner, "profiles", "list", "--json")
    assert r.exit_code == 0 and len(json.loads(r.stdout)["providers"]) >= 20
    r = _run(runner, "profiles", "list", "--categories")
    assert r.exit_code == 0 and "objectionable_catch_all" in r.stdout
    r = _run(runner, "profiles", "show", "hetzner")
    shown = json.loads(r.stdout)
    assert r.exit_code == 0 and shown["jurisdiction"]["country"] == "DE"
    assert shown["governing"] and all(d["copy"] for d in shown["documents"] if d["role"] != "secondary")
    assert _run(runner, "profiles", "show", "hetznr").exit_code == 2


def test_profiles_lint(runner: CliRunner, tmp_path: Path) -> None:
    r = _run(runner, "profiles", "lint")
    assert r.exit_code == 0 and r.stdout.splitlines()[-1].startswith("ok: ")
    assert _run(runner, "profiles", "lint", str(TEST_PROFILES)).exit_code == 0
    (tmp_path / "providers").mkdir()
    (tmp_path / "providers" / "x.yaml").write_text("id: x\nname: X\nkinds: [cloud]\n")
    (tmp_path / "providers" / "y.yaml").write_text("id: [unclosed\n")
    r = _run(runner, "profiles", "lint", str(tmp_path))
    assert r.exit_code == 2
    lines = r.stdout.splitlines()
    assert any(line.startswith(f"{tmp_path}/providers/x.yaml:3: kinds[0]: must be one of") for line in lines)
    assert any(line.startswith(f"{tmp_path}/providers/x.yaml:1: (top level): missing required key 'documents'") for line in lines)
    assert any(line.startswith(f"{tmp_path}/providers/y.yaml:2: invalid YAML") for line in lines)


def test_profiles_lint_lists_a_files_errors_in_line_order_once_each(runner: CliRunner, tmp_path: Path) -> None:
    """A shipped profile with four mistakes: the errors come in the file's line order
    (the walk finds a cross-reference only after it), and a refused `read:` value is not
    also reported as a partial reading without sections."""
    src = (PROFILES_DIR / "providers" / "1984hosting.yaml").read_text()
    bad = (src.replace("kinds: [compute, dns, email, registrar]", "kinds: [compute, bogus]", 1)
           .replace("    role: tos\n", "    role: toss\n", 1).replace("    read: full\n", "    read: fully\n", 1))
    head, sep, tail = bad.rpartition("document: tos")
    (tmp_path / "providers").mkdir()
    (tmp_path / "providers" / "1984hosting.yaml").write_text(head + "document: nosuchdoc" + tail)
    r = _run(runner, "profiles", "lint", str(tmp_path))
    assert r.exit_code == 2
    lines = [line for line in r.stdout.splitlines() if line.startswith(str(tmp_path))]
    numbers = [int(line.split(":")[1]) for line in lines]
    assert len(lines) == 4 and numbers == sorted(numbers), lines
    assert ["kinds[1]", "documents[0].role", "documents[0].read", "nosuchdoc"] == [
        next(w for w in ("kinds[1]", "documents[0].role", "documents[0].read", "nosuchdoc") if w in line) for line in lines]
    assert not any("needs 'sections_read'" in line for line in lines)


def test_relocate_profiles_is_a_colon_separated_list(runner: CliRunner, config: Path, tmp_path: Path) -> None:
    # docs/policy.md "Profiles": each directory in $RELOCATE_PROFILES (`:`-separated), then
    # `--profiles DIR` (one directory), for every command that reads profiles.
    from helpers import cli

    first = tmp_path / "first"
    (first / "providers").mkdir(parents=True)
    (first / "providers" / "strict.yaml").write_text(
        (TEST_PROFILES / "providers" / "strict.yaml").read_text().replace("name: ", "name: Overridden ", 1))
    listed = f"{first}:{TEST_PROFILES}"
    r = cli("profiles", "list", "--json", env={"RELOCATE_PROFILES": listed})
    assert r.exit_code == 0, r.stderr
    assert {"strict", "lenient", "aws"} <= {p["id"] for p in r.json()["providers"]}
    r = cli("profiles", "show", "lenient", env={"RELOCATE_PROFILES": listed})
    assert r.exit_code == 0, r.stderr
    # later wins: TEST_PROFILES (second in the list) overrides `first`'s strict
    r = cli("profiles", "show", "strict", env={"RELOCATE_PROFILES": listed})
    assert r.exit_code == 0 and "Overridden" not in r.stdout, r.stdout + r.stderr
    r = cli("check", "-f", str(config), "--json", "--provider", "lenient", env={"RELOCATE_PROFILES": listed})
    assert r.exit_code == 0, r.stderr
    assert [p["provider"] for p in json.loads(r.stdout)["providers"]] == ["lenient"]
    # --profiles DIR is read after the list: it wins
    r = cli("profiles", "show", "strict", "--profiles", str(first), env={"RELOCATE_PROFILES": str(TEST_PROFILES)})
    assert r.exit_code == 0 and "Overridden" in r.stdout, r.stdout + r.stderr
    # a missing directory in the list is named alone, not the whole list
    r = cli("profiles", "list", env={"RELOCATE_PROFILES": f"{TEST_PROFILES}:{tmp_path / 'nope'}"})
    assert r.exit_code == 2 and r.stderr.strip() == f"relocate: error: profiles directory not found: {tmp_path / 'nope'}"
    # the flag stays one directory
    r = cli("profiles", "list", "--profiles", listed)
    assert r.exit_code == 2 and f"not found: {listed}" in r.stderr


@pytest.mark.parametrize("command", ["plan", "move", "check"])
def test_plan_move_and_check_take_the_list_from_the_variable_not_as_one_flag(command: str, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI binds RELOCATE_PROFILES to --profiles too: a value taken from there would be
    # one directory named "a:b". The option keeps only a value given as a flag; the list is
    # split where the settings are built (plan, move) or profiles loaded (check).
    import os

    from relocate.cli import build_command
    from relocate.settings import Settings

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    monkeypatch.setenv("RELOCATE_PROFILES", f"{a}:{b}")
    cmd = build_command().commands[command]
    assert cmd.make_context(command, []).params["profiles"] is None
    assert cmd.make_context(command, ["--profiles", str(tmp_path)]).params["profiles"] == tmp_path
    assert Settings.from_env(os.environ, profiles=None).profile_dirs == (a, b)
    assert Settings.from_env(os.environ, profiles=tmp_path).profile_dirs == (a, b, tmp_path)
