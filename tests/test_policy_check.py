"""`relocate check` as issue 14 asks: an app-only file, flags and no file, the Parler-like app on the
shipped profiles, the vendor chain from a relocate.yaml's names, --explain's copies, JSON and markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relocate.cli import app

TODAY = "2026-12-04"
PARLER_FLAGS = ("--content", "user_generated_content,political_speech", "--moderators", "3", "--response-hours", "72",
                "--no-automated-filtering", "--daily-active-users", "1500000")
APP_ONLY = """app:
  content: [user_generated_content, political_speech]
  moderation: {moderators: 3, report_response_hours: 72, automated_filtering: false, daily_active_users: 1500000}
"""
# A whole relocate.yaml whose parameters and secrets are named after the vendors they hold keys for.
FULL = """version: 1
app:
  name: townsquare
  content: [user_generated_content, political_speech]
  moderation: {moderators: 3, report_response_hours: 72, automated_filtering: false, daily_active_users: 1500000}
  dependencies: {registrar: godaddy}
source:
  aws: {region: us-east-1}
  parameters: [{path: /townsquare/prod/twilio/, to: shared/app.env}]
  secrets:
    - {name: townsquare/prod/OKTA_CLIENT_SECRET, to: shared/app.env}
    - {name: townsquare/prod/zendesk-api-token, to: shared/app.env}
    - {name: townsquare/prod/SENDGRID_API_KEY, to: shared/app.env}
target:
  provider: aws
  ssh: {host: 203.0.113.10, user: deploy}
  root: /srv/townsquare
"""


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("RELOCATE_PROFILES", raising=False)
    monkeypatch.delenv("RELOCATE_FILE", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./relocate.yaml unless a test writes one
    return CliRunner()


def _json(runner: CliRunner, *args: str) -> dict:
    r = runner.invoke(app, ["check", *args, "--json", "--today", TODAY])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_parler_like_app_from_flags_alone(runner: CliRunner) -> None:
    data = _json(runner, *PARLER_FLAGS)
    assert data["format_version"] == 2
    by = {p["provider"]: p for p in data["providers"]}
    aws = by["aws"]
    assert aws["verdict"] == "reject"
    (blocker,) = [f for f in aws["findings"] if f["effect"] == "reject" and "/record/" in f["id"]]
    assert "policies and processes you have in place to prevent or identify and remove any prohibited content" in blocker["quote"]
    assert blocker["source"]["document"] == "aup" and blocker["source"]["copy"]["commit"]
    assert any(e["target"] == "Parler" and e["date"].startswith("2021-01") for e in blocker["events"])
    assert len([p for p in by.values() if p["verdict"] == "reject"]) >= 2
    # no accept rests on a partial reading: a provider that accepts has no `reading` finding
    for p in by.values():
        if p["verdict"] == "accept":
            assert not [f for f in p["findings"] if f["id"].endswith("/reading")]


def test_an_app_only_file_is_enough_and_flags_override_it(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(APP_ONLY)
    from_file = {p["provider"]: p["verdict"] for p in _json(runner, "-f", str(path))["providers"]}
    from_flags = {p["provider"]: p["verdict"] for p in _json(runner, *PARLER_FLAGS)["providers"]}
    assert from_file == from_flags
    # the default ./relocate.yaml may hold only app: too
    (tmp_path / "relocate.yaml").write_text(APP_ONLY)
    assert {p["provider"]: p["verdict"] for p in _json(runner)["providers"]} == from_file
    # a flag overrides the file: a well-moderated forum of the same size is no longer rejected for moderation
    better = _json(runner, "--moderators", "800", "--response-hours", "12", "--automated-filtering", "--published-rules",
                   "--notice-channel", "--provider", "aws")
    (aws,) = better["providers"]
    assert aws["moderation"]["adequate"] is True
    assert aws["verdict"] != "accept" and aws["leaning"] in ("reject", None)  # the 2021 drop still weighs


@pytest.mark.parametrize("args,message", [
    ((), "relocate.yaml: no such file"),
    (("--moderators", "-1"), "--moderators: must be zero or more"),
    (("--content", "politcal_speech"), "unknown category 'politcal_speech'"),
])
def test_no_file_and_bad_flags_exit_2(runner: CliRunner, args: tuple[str, ...], message: str) -> None:
    r = runner.invoke(app, ["check", *args])
    assert r.exit_code == 2 and message in r.stderr and "Traceback" not in r.output


def test_vendor_chain_from_a_relocate_yaml_that_names_twilio_okta_zendesk_and_sendgrid(runner: CliRunner,
                                                                                      tmp_path: Path) -> None:
    (tmp_path / "relocate.yaml").write_text(FULL)
    data = _json(runner)
    chain = {d["current"]: d for d in data["dependencies"]}
    assert {"twilio", "okta", "zendesk", "sendgrid", "godaddy"} <= set(chain)
    assert chain["twilio"]["kind"] == "sms" and chain["twilio"]["evidence"] == ["name /townsquare/prod/twilio/"]
    assert chain["okta"]["kind"] == "identity" and chain["zendesk"]["kind"] == "support"
    assert chain["sendgrid"]["kind"] == "email" and chain["godaddy"]["provider"] == "godaddy"  # README's example resolves
    for d in chain.values():
        assert d["verdict"] in ("accept", "conditional", "unknown", "reject")
        assert all(a["provider"] != d["provider"] for a in d["alternatives"])
        assert d["at_risk"] == (d["verdict"] != "accept")
    # alternatives are of the same kind and accept (or at worst are conditional)
    kinds = {p["provider"]: p["kinds"] for p in _json(runner, "--kind", "sms", "--kind", "email")["providers"]}
    for a in chain["twilio"]["alternatives"]:
        assert "sms" in kinds[a["provider"]] and a["verdict"] in ("accept", "conditional")
    # the same chain in the markdown and the table
    md = runner.invoke(app, ["check", "--format", "markdown", "--today", TODAY])
    assert md.exit_code == 0 and "## Vendor chain" in md.stdout and "name townsquare/prod/OKTA_CLIENT_SECRET" in md.stdout
    table = runner.invoke(app, ["check", "--today", TODAY])
    assert table.exit_code == 0 and "vendor sms: twilio ->" in table.stdout and "target.provider aws: reject" in table.stdout


def test_uses_flag_adds_vendors_without_a_file(runner: CliRunner) -> None:
    data = _json(runner, *PARLER_FLAGS, "--uses", "twilio,okta,acme-sms")
    chain = {d["current"]: d for d in data["dependencies"]}
    assert chain["twilio"]["evidence"] == ["--uses"] and chain["okta"]["provider"] == "okta"
    assert chain["acme-sms"]["provider"] is None and chain["acme-sms"]["verdict"] == "unknown"


def test_explain_names_the_copy_each_finding_was_read_from(runner: CliRunner) -> None:
    r = runner.invoke(app, ["check", *PARLER_FLAGS, "--explain", "aws", "--today", TODAY])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    findings = [i for i, line in enumerate(lines) if line.startswith("[")]
    assert findings
    for i in findings:  # every finding has a copy line saying where it was read and how completely
        block = lines[i:i + 7]
        assert any(line.startswith("    copy:") for line in block), block
    assert "OpenTermsArchive" in r.stdout and "read in full" in r.stdout and "moderation: short for" in r.stdout
    j = runner.invoke(app, ["check", *PARLER_FLAGS, "--explain", "aws", "--json", "--today", TODAY])
    data = json.loads(j.stdout)
    assert data["format_version"] == 2 and data["verdict"] == "reject"
    assert all(f["source"]["read"] in ("full", "partial") for f in data["findings"] if f["source"])


def test_help_documents_the_quick_flags(runner: CliRunner) -> None:
    r = runner.invoke(app, ["check", "--help"], env={"COLUMNS": "200"})
    for flag in ("--content", "--moderators", "--response-hours", "--daily-active-users", "--posts-per-day",
                 "--automated-filtering", "--no-automated-filtering", "--uses", "--read-names", "--explain"):
        assert flag in r.stdout, flag


def test_plan_verdict_carries_the_chain_from_gathered_names(tmp_path: Path) -> None:
    """`plan` passes the names its gather step listed (never values); the verdict it records lists the chain."""
    import datetime as dt

    from relocate.config import parse_config
    from relocate.settings import Settings
    from relocate.workflow import provider_verdict

    config = parse_config(FULL, tmp_path / "relocate.yaml", env={})
    names = ["/townsquare/prod/twilio/TWILIO_AUTH_TOKEN", "/townsquare/prod/STRIPE_SECRET_KEY"]
    v = provider_verdict(config, Settings(), dt.date(2026, 12, 4), names=names)
    assert v is not None and v.provider == "aws" and v.verdict == "reject"
    assert any(f.id.startswith("aws/record/") for f in v.blocking_findings)
    chain = {d["current"]: d for d in v.chain}
    assert chain["twilio"]["evidence"] == ["name /townsquare/prod/twilio/TWILIO_AUTH_TOKEN"]
    assert chain["stripe"]["kind"] == "payments"
    assert any(w.startswith("vendor sms=twilio") for w in v.warnings) or chain["twilio"]["verdict"] == "accept"
    # plan.json keeps the verdict's JSON shape, and reads it back to the same value
    d = v.to_dict()
    assert list(d) == ["provider", "name", "verdict", "leaning", "score", "blocking_findings", "top_findings",
                       "warnings", "accepting", "chain", "disclaimer"]
    assert set(d["blocking_findings"][0]) == {"id", "message"}
    assert type(v).from_dict(json.loads(json.dumps(d))) == v


def test_policy_imports_without_io_libraries() -> None:
    """relocate.policy is pure: importable with boto3, botocore and paramiko absent."""
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('boto3', 'botocore', 'paramiko'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import relocate.policy.engine, relocate.policy.chain, relocate.policy.render, relocate.policy.record\n"
            "import relocate.policy.moderation, relocate.policy.profiles\n"
            "print('pure')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "pure", r.stderr


def test_read_names_lists_parameter_names_from_aws_only_when_asked(runner: CliRunner, tmp_path: Path, moto: str) -> None:
    """Without --read-names `check` reads no AWS; with it, only the NAMES under source.parameters (values stay unread)."""
    from helpers import aws_client

    ssm = aws_client("ssm", moto)
    ssm.put_parameter(Name="/townsquare/prod/MAILGUN_API_KEY", Value="key-not-shown", Type="SecureString")
    ssm.put_parameter(Name="/townsquare/prod/SLACK_WEBHOOK_URL", Value="https://hooks.example/x", Type="String")
    text = FULL.replace("aws: {region: us-east-1}", f"aws: {{region: us-east-1, endpoint_url: '{moto}'}}")
    text = text.replace("/townsquare/prod/twilio/", "/townsquare/prod/")
    (tmp_path / "relocate.yaml").write_text(text)
    without = {d["current"] for d in _json(runner)["dependencies"]}
    assert not {"mailgun", "slack"} & without
    r = runner.invoke(app, ["check", "--read-names", "--json", "--today", TODAY])
    assert r.exit_code == 0, r.output
    chain = {d["current"]: d for d in json.loads(r.stdout)["dependencies"]}
    assert chain["mailgun"]["kind"] == "email" and chain["slack"]["kind"] == "chat"
    assert chain["mailgun"]["evidence"] == ["name /townsquare/prod/MAILGUN_API_KEY"]
    assert "key-not-shown" not in r.stdout and "hooks.example" not in r.stdout


def test_plan_shows_the_vendor_chain_from_the_source_names(moto: str, sshd, tmp_path: Path) -> None:
    """`relocate plan` against moto + sshd: the parameter NAMES it listed find Twilio and Zendesk; the Parler-like
    app is blocked at AWS by the record finding; the markdown lists the chain."""
    from helpers import aws_client, cli, make_config

    ssm = aws_client("ssm", moto)
    ssm.put_parameter(Name="/app/prod/TWILIO_AUTH_TOKEN", Value="tw-secret-value", Type="SecureString")
    ssm.put_parameter(Name="/app/prod/zendesk_api_token", Value="zd-secret-value", Type="SecureString")
    moderation = {"moderators": 3, "report_response_hours": 72, "automated_filtering": False, "daily_active_users": 1500000}
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / f"chain-{tmp_path.name}"),
                      parameters=[{"path": "/app/prod/", "to": "shared/app.env"}], provider="aws",
                      extra_app={"content": ["user_generated_content", "political_speech"], "moderation": moderation})
    run = cli("plan", "-f", str(cfg), "--json")
    assert "tw-secret-value" not in run.stdout + run.stderr and "zd-secret-value" not in run.stdout + run.stderr
    plan = run.json()
    assert plan["verdict"]["verdict"] == "reject"
    assert any(b["code"] == "aup-reject" and "aws/record/" in b["message"] for b in plan["blockers"])
    chain = {d["current"]: d for d in plan["verdict"]["chain"]}
    assert chain["twilio"]["evidence"] == ["name /app/prod/TWILIO_AUTH_TOKEN"] and chain["twilio"]["kind"] == "sms"
    assert chain["zendesk"]["kind"] == "support"
    md = cli("plan", "-f", str(cfg), "--format", "markdown")
    assert "vendor sms: twilio" in md.stdout and "vendor support: zendesk" in md.stdout


def test_discovered_file_feeds_the_chain_without_reading_aws(runner: CliRunner, tmp_path: Path) -> None:
    """`relocate discover --json` output: its parameter/secret NAMES and services (SES) name vendors."""
    found = {"regions": ["us-east-1"], "failures": [], "ties": {},
             "resources": {"ssm": [{"name": "/townsquare/prod/STRIPE_SECRET_KEY", "type": "SecureString"}],
                           "secrets": [{"name": "townsquare/prod/mailgun"}], "ses": [{"identity": "townsquare.example"}],
                           "sns": [{"arn": "arn:aws:sns:us-east-1:1:alerts", "name": "alerts"}]}}
    path = tmp_path / "found.json"
    path.write_text(json.dumps(found))
    data = _json(runner, *PARLER_FLAGS, "--discovered", str(path))
    chain = {(d["current"], d["kind"]): d for d in data["dependencies"]}
    assert chain[("stripe", "payments")]["evidence"] == ["name /townsquare/prod/STRIPE_SECRET_KEY"]
    assert chain[("mailgun", "email")]["evidence"] == ["name townsquare/prod/mailgun"]
    assert chain[("aws", "email")]["evidence"] == ["discover: ses"]
    assert not [k for k in chain if k[1] == "sms"]  # an SNS topic is not SMS
    path.write_text("[1, 2]")
    r = runner.invoke(app, ["check", *PARLER_FLAGS, "--discovered", str(path)])
    assert r.exit_code == 2 and "not the output of `relocate discover --json`" in r.stderr


def test_plan_accept_risk_shows_every_waiver_and_never_accepts_an_unknown(moto: str, sshd, tmp_path: Path) -> None:
    """docs/policy.md 5 and 6: waiving `unknown` findings (a partial reading, a category not read) leaves the
    verdict `unknown`; each waiver is on the record in text and JSON; an id that is no finding of
    target.provider's verdict (a typo, another provider's), by flag or variable, is exit 2 before anything is read."""
    from helpers import cli, make_config, one_line_error

    moderation = {"moderators": 12, "report_response_hours": 12, "automated_filtering": True, "published_rules": True,
                  "notice_channel": True, "daily_active_users": 20000}
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / f"waive-{tmp_path.name}"),
                      provider="hetzner", extra_app={"content": ["user_generated_content", "political_speech"],
                                                     "moderation": moderation})
    waive = ("--accept-risk", "hetzner/reading", "--accept-risk", "hetzner/disinformation")
    plan = cli("plan", "-f", str(cfg), "--json", *waive).json()
    assert plan["verdict"]["verdict"] == "unknown"
    top = {f["id"]: f for f in plan["verdict"]["top_findings"]}
    assert top["hetzner/reading"]["waived"] and top["hetzner/disinformation"]["waived"]
    accepted = [w["message"] for w in plan["warnings"] if w["code"] == "aup-accepted"]
    assert len(accepted) == 2 and all("stays unknown" in m for m in accepted), accepted
    text = cli("plan", "-f", str(cfg), *waive)
    assert text.exit_code == 0, text.stderr
    assert "unknown" in text.stdout and "waived (--accept-risk): hetzner/disinformation, hetzner/reading" in text.stdout
    assert "accepted risk hetzner/reading" in text.stdout
    line = one_line_error(cli("plan", "-f", str(cfg), "--accept-risk", "aws/nonexistent"))
    assert "aws/nonexistent" in line and "relocate check --explain hetzner" in line
    line = one_line_error(cli("plan", "-f", str(cfg), env={"RELOCATE_ACCEPT_RISK": "hetzner/reading hetzner/readnig"}))
    assert "hetzner/readnig" in line
