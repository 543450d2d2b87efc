"""Verdict logic, table-driven, on small test profiles with known answers (tests/data/profiles).

Issue 14's rules (partial readings, record, moderation per provider, staleness, chain) are in test_policy_rules.py.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from relocate.errors import ConfigError
from relocate.policy.app import AppProfile, Moderation
from relocate.policy.engine import check, dependency_risks, evaluate, verdict_for
from relocate.policy.profiles import ProfileSet, load_profiles

TEST_PROFILES = Path(__file__).parent / "data" / "profiles"
TODAY = dt.date(2026, 7, 1)  # test documents were reviewed 2026-06-01: fresh
GOOD = Moderation(moderators=10, report_response_hours=12, automated_filtering=True, published_rules=True)

APPS = {
    "moderated_forum": AppProfile(["user_generated_content"], GOOD),
    "unmoderated_image_board": AppProfile(["user_generated_content"], None),
    "adult_site": AppProfile(["adult_content"], GOOD),
    "crypto_miner": AppProfile(["cryptomining"]),
    "vpn_service": AppProfile(["open_proxies_vpn"]),
}


@pytest.fixture(scope="module")
def testset() -> ProfileSet:
    """Only the four test providers (shipped categories), so answers do not move when shipped profiles do."""
    full = load_profiles(TEST_PROFILES, env={})
    return ProfileSet(full.categories, {k: v for k, v in full.providers.items() if k in {"strict", "lenient", "partial", "blank"}})


CASES = [
    # app,                      strict,   lenient,       partial,       blank
    # partial leaves harassment and defamation out: exposed unknowns never accept
    ("moderated_forum",         "accept", "accept",      "unknown",     "unknown"),
    # no moderation declared: short of what every provider weighs (lenient's terms allow the rest)
    ("unmoderated_image_board", "reject", "conditional", "unknown",     "unknown"),
    ("adult_site",              "reject", "accept",      "conditional", "unknown"),
    ("crypto_miner",            "reject", "accept",      "conditional", "unknown"),
    ("vpn_service",             "reject", "accept",      "conditional", "unknown"),
]


@pytest.mark.parametrize("app_name,strict,lenient,partial,blank", CASES)
def test_verdict_table(testset: ProfileSet, app_name: str, strict: str, lenient: str, partial: str, blank: str) -> None:
    got = {v.provider: v.verdict for v in evaluate(APPS[app_name], testset, today=TODAY)}
    assert got == {"strict": strict, "lenient": lenient, "partial": partial, "blank": blank}


def test_reject_cites_clause_and_says_why(testset: ProfileSet) -> None:
    v = verdict_for("strict", APPS["adult_site"], testset, TODAY)
    (blocker,) = v.blocking()
    assert blocker.id == "strict/adult_content"
    assert blocker.document is not None and blocker.document.url == "https://strict.example/aup"
    assert blocker.section == "2.1"
    assert "declares" in blocker.why


def test_thin_moderation_makes_exposed_prohibitions_conditional(testset: ProfileSet) -> None:
    thin = AppProfile(["user_generated_content"], Moderation(moderators=1, report_response_hours=96, published_rules=True))
    v = verdict_for("strict", thin, testset, TODAY)
    effects = {f.id: f.effect for f in v.findings}
    assert effects["strict/unmoderated_ugc"] == "reject"
    assert effects["strict/harassment_threats"] == "conditional"
    assert effects["strict/moderation"] == "conditional"
    assert "96 h" in next(f.why for f in v.findings if f.category == "harassment_threats")
    # Baseline categories remind, never move the verdict, when only exposed.
    assert effects["strict/illegal_content"] == "note"


def test_accept_risk_waives_only_the_named_finding(testset: ProfileSet) -> None:
    app = APPS["adult_site"]
    assert verdict_for("strict", app, testset, TODAY).verdict == "reject"
    waived = verdict_for("strict", app, testset, TODAY, accepted_risks={"strict/adult_content"})
    assert waived.verdict == "accept"
    assert [f.id for f in waived.findings if f.waived] == ["strict/adult_content"]
    assert waived.blocking() == []
    assert verdict_for("strict", app, testset, TODAY, accepted_risks={"strict/cryptomining"}).verdict == "reject"


def test_unknown_never_reads_as_allowed(testset: ProfileSet) -> None:
    for app in APPS.values():
        v = verdict_for("blank", app, testset, TODAY)
        assert v.verdict == "unknown"
        assert any(f.effect == "unknown" and f.document is None for f in v.findings)


def test_ranking_and_score(testset: ProfileSet) -> None:
    ranked = evaluate(APPS["vpn_service"], testset, today=TODAY)
    assert [v.provider for v in ranked] == ["lenient", "partial", "blank", "strict"]
    score = {v.provider: v.score for v in ranked}
    # A reject weighs far more than a conditional; no-notice suspension and catch-all cost more still.
    assert score["lenient"] == 100  # nothing against it, a 72 h cure period written down, capped at 100
    assert score["partial"] == 100 - 15 - 4  # one conditional, notice terms unknown
    assert score["strict"] == 100 - 50 - 8 - 8  # reject, catch-all prohibited, suspension without notice
    assert score["strict"] < score["partial"] < score["lenient"]


def test_the_record_against_similar_apps_is_shown(testset: ProfileSet) -> None:
    adult = verdict_for("strict", APPS["adult_site"], testset, TODAY)  # the board was an adult board dropped for moderation
    assert [e.target for e in adult.events] == ["Example board"]
    miner = verdict_for("strict", APPS["crypto_miner"], testset, TODAY)
    assert miner.events == ()


def test_staleness_warning_names_the_document(testset: ProfileSet) -> None:
    captured = dt.date(2026, 6, 1)  # the copy's capture date, not the day we read it
    fresh = verdict_for("strict", APPS["adult_site"], testset, captured + dt.timedelta(days=180))
    assert not [w for w in fresh.warnings if "re-read" in w]
    stale = verdict_for("strict", APPS["adult_site"], testset, captured + dt.timedelta(days=181))
    (warning,) = [w for w in stale.warnings if "re-read" in w]
    assert "'Strict AUP'" in warning and "captured 2026-06-01 (181 days ago)" in warning


def test_dependency_risks_and_alternatives(testset: ProfileSet) -> None:
    app = AppProfile(["adult_content"], GOOD, {"dns": "strictdns", "compute": "nobody-we-know"})
    verdicts = evaluate(app, testset, today=TODAY)
    risks = {d.kind: d for d in dependency_risks(app, testset, verdicts)}
    assert risks["dns"].provider == "strict" and risks["dns"].at_risk and risks["dns"].verdict == "reject"
    assert [a[0] for a in risks["dns"].alternatives] == ["lenient"]  # partial has no dns
    assert risks["compute"].provider is None and risks["compute"].at_risk
    assert risks["compute"].alternatives[0][:2] == ("lenient", "accept")


def test_bad_app_inputs_are_config_errors(testset: ProfileSet) -> None:
    with pytest.raises(ConfigError, match="unknown category 'adult'.*adult_content"):
        evaluate(AppProfile(["adult"]), testset, today=TODAY)
    with pytest.raises(ConfigError, match="app.dependencies.dnss"):
        check(AppProfile([], None, {"dnss": "strict"}), testset, today=TODAY)
    with pytest.raises(ConfigError, match="--kind"):
        check(AppProfile([]), testset, today=TODAY, kinds=["mainframe"])


def test_report_is_json_with_disclaimer_and_sources(testset: ProfileSet) -> None:
    report = check(APPS["adult_site"], testset, today=TODAY, kinds=["cdn"])
    data = json.loads(json.dumps(report.to_dict()))
    assert [p["provider"] for p in data["providers"]] == ["partial"]
    assert "not legal advice" in data["disclaimer"]
    (p,) = data["providers"]
    assert p["verdict"] == "conditional" and "https://partial.example/aup" in p["sources"]
    assert p["findings"][0]["source"]["section"] == "A"
