"""Issue 14's engine rules, table-driven, on small profiles written here (never the shipped ones).

Each profile is YAML run through the real schema parser, so the tests also pin the v2 format.
"""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from relocate.policy.app import AppProfile, Moderation
from relocate.policy.engine import dependency_risks, evaluate, judge
from relocate.policy.moderation import assess
from relocate.policy.profiles import ProfileSet, shipped_categories
from relocate.policy.record import incidents, weight
from relocate.policy.schema import ProfileError, Provider, lint_warnings, parse_provider, parse_yaml

TODAY = dt.date(2026, 12, 4)
CATS = shipped_categories()
# Every category a UGC app exposes, written as allowed, so only the rule under test can move the verdict.
UGC_CATS = ("unmoderated_ugc", "harassment_threats", "defamation", "hate_speech", "incitement_to_violence",
            "terrorism_violent_extremism", "disinformation", "illegal_content", "csam", "copyright_infringement", "spam",
            "malware_phishing")
GOOD = Moderation(moderators=50, report_response_hours=12, automated_filtering=True, published_rules=True,
                  notice_channel=True, daily_active_users=100_000)
PARLER = Moderation(moderators=3, report_response_hours=72, automated_filtering=False, published_rules=True,
                    daily_active_users=1_500_000)
UGC = ["user_generated_content", "political_speech"]


def doc(did: str, read: str = "full", text_date: str = "2026-01-01", extra: str = "") -> str:
    sections = "" if read == "full" else ", sections_read: ['1']"
    return (f"  - {{id: {did}, role: aup, url: 'https://t.example/{did}', title: T {did}, text_date: '{text_date}', "
            f"reviewed: 2026-12-01, confidence: high, copy: {{archive: provider, captured: '2026-11-30'}}, "
            f"read: {read}{sections}{extra}}}\n")


def profile(pid: str = "t", *, docs: str | None = None, governing: str | None = "[aup]", categories: dict[str, str] | None = None,
            stance_all: str = "customer_responsible", moderation: str = "", record: str = "", kinds: str = "[compute]",
            detect: str = "") -> Provider:
    """A test provider: every UGC category `stance_all` (cited from aup) unless `categories` says otherwise."""
    cats = {c: stance_all for c in UGC_CATS + ("cryptomining",)}
    cats.update(categories or {})
    lines = []
    for cid, stance in cats.items():
        if stance == "absent":
            continue
        cite = "" if stance in ("unknown", "not_stated") else ", document: aup, section: '1'"
        lines.append(f"  {cid}: {{stance: {stance}, summary: s{cite}}}")
    text = (f"id: {pid}\nname: {pid.upper()} Host\nkinds: {kinds}\njurisdiction: {{country: US}}\nconfidence: high\n"
            + (f"governing: {governing}\n" if governing is not None else "")
            + "documents:\n" + (docs if docs is not None else doc("aup"))
            + "categories:\n" + "\n".join(lines) + "\n"
            + "suspension: {without_notice: false, cure_period_hours: 48, summary: two days, document: aup, section: '9'}\n"
            + textwrap.dedent(moderation) + textwrap.dedent(record) + textwrap.dedent(detect))
    return parse_provider(parse_yaml(text, f"{pid}.yaml"), CATS, expected_id=pid)


def verdict(p: Provider, app: AppProfile):
    return judge(p, app, CATS, TODAY)


# ---- 1. not_stated over a partial reading is unknown -------------------------------

@pytest.mark.parametrize("aup_read,tos_read,governing,stance,expected", [
    ("full", "full", "[aup, tos]", "not_stated", "accept"),
    ("full", "partial", "[aup, tos]", "not_stated", "unknown"),  # the ToS was cut short: no clause *found* is not no clause
    ("partial", "full", "[aup, tos]", "not_stated", "unknown"),
    ("full", "partial", "[aup]", "not_stated", "accept"),  # the partial document does not govern
    ("full", "full", None, "not_stated", "unknown"),  # a v1 profile that does not list what governs
    ("full", "partial", "[aup, tos]", "customer_responsible", "unknown"),  # an accept may not rest on a partial reading
    ("full", "full", "[aup, tos]", "customer_responsible", "accept"),
    ("full", "partial", "[aup, tos]", "prohibited", "reject"),
    ("full", "partial", "[aup, tos]", "restricted", "unknown"),  # conditional at best, and the unread text may bar it
])
def test_not_stated_needs_every_governing_document_read_in_full(aup_read, tos_read, governing, stance, expected) -> None:
    p = profile(docs=doc("aup", aup_read) + doc("tos", tos_read), governing=governing, categories={"cryptomining": stance})
    v = verdict(p, AppProfile(["cryptomining"]))
    assert v.verdict == expected, [(f.id, f.effect) for f in v.findings]
    mining = next(f for f in v.findings if f.category == "cryptomining")
    if stance == "not_stated" and expected == "unknown":
        assert mining.stance == "unknown" and "read in full" in mining.summary


def test_lint_warns_on_not_stated_over_a_partial_reading_and_errors_on_a_primary_document_without_copy() -> None:
    p = profile(docs=doc("aup") + doc("tos", "partial"), governing="[aup, tos]", categories={"cryptomining": "not_stated"})
    warnings = lint_warnings(p)
    assert any("categories.cryptomining: not_stated" in w and "tos (read in part)" in w for w in warnings)
    no_copy = doc("aup").replace("copy: {archive: provider, captured: '2026-11-30'}, ", "")
    with pytest.raises(ProfileError, match="missing required key 'copy'"):
        profile(docs=no_copy)
    with pytest.raises(ProfileError, match="needs 'sections_read'"):
        profile(docs=doc("aup", "partial").replace(", sections_read: ['1']", ""))
    with pytest.raises(ProfileError, match="governing\\[1\\]: no document with id 'tos'"):
        profile(governing="[aup, tos]")


# ---- 2. unknown never accepts: declared, and exposed -------------------------------

@pytest.mark.parametrize("app,categories,expected,finding", [
    (AppProfile(["cryptomining"]), {"cryptomining": "unknown"}, "unknown", "t/cryptomining"),
    (AppProfile(["cryptomining"]), {"cryptomining": "absent"}, "unknown", "t/cryptomining"),
    # exposed by a descriptor: one non-baseline category unknown is enough
    (AppProfile(UGC, GOOD), {"disinformation": "unknown"}, "unknown", "t/disinformation"),
    (AppProfile(UGC, GOOD), {"defamation": "absent"}, "unknown", "t/defamation"),
    # a baseline category (removed on notice everywhere) left unknown is a risk, not a block
    (AppProfile(UGC, GOOD), {"spam": "unknown"}, "accept", "t/spam"),
    (AppProfile(UGC, GOOD), {}, "accept", "t/moderation"),
])
def test_unknown_never_accepts(app, categories, expected, finding) -> None:
    v = verdict(profile(categories=categories), app)
    assert v.verdict == expected
    effects = {f.id: f.effect for f in v.findings}
    assert finding in effects
    if expected == "unknown":
        assert effects[finding] == "unknown"


# ---- 3. the record: a same-kind drop caps the verdict; one incident counts once -----

PARLER_DROP = """\
record:
  - {date: 2021-01-10, kind: drop, incident: parler-2021, target: Parler, app_categories: [user_generated_content, political_speech],
     reason_categories: [incitement_to_violence, unmoderated_ugc], notice_hours: 30, what: Suspended., source: 'https://x.example/1',
     source_kind: primary}
"""
RULING = """\
  - {date: 2021-01-21, kind: drop, incident: parler-2021, target: Parler, app_categories: [user_generated_content],
     reason_categories: [incitement_to_violence], what: Injunction denied., source: 'https://x.example/2', source_kind: primary}
"""
REINSTATED = """\
  - {date: 2021-05-17, kind: accept, incident: parler-2021, target: Parler, app_categories: [user_generated_content],
     reason_categories: [], what: Back after it added moderation., source: 'https://x.example/4', source_kind: secondary}
"""
MODERATION_48 = """\
moderation: {cure_period_hours: 48, business_days: true, expects: [report_response, proactive_detection, published_rules],
             summary: two business days, quote: "we may consider the processes you have", document: aup, section: '7'}
"""


@pytest.mark.parametrize("record,app,expected,effect,leaning", [
    (PARLER_DROP, AppProfile(UGC, GOOD), "conditional", "conditional", "reject"),  # same kind, same reason: capped
    (PARLER_DROP, AppProfile(UGC, PARLER), "reject", "reject", None),  # ... and moderation short of the terms: reject
    (PARLER_DROP.replace("2021-01-10", "2009-01-10"), AppProfile(UGC, GOOD), "accept", "risk", None),  # old: weighs less
    (PARLER_DROP.replace("reason_categories: [incitement_to_violence, unmoderated_ugc]", "reason_categories: [cryptomining]"),
     AppProfile(UGC, GOOD), "accept", "risk", None),  # same kind, another reason
    (PARLER_DROP.replace("kind: drop", "kind: refuse"), AppProfile(UGC, GOOD), "conditional", "conditional", "reject"),
    (PARLER_DROP, AppProfile(["cryptomining"]), "accept", None, None),  # another kind of app: not concerned
    (PARLER_DROP.replace("kind: drop", "kind: accept"), AppProfile(UGC, GOOD), "accept", "note", None),
    # weaker signals: a warning that did not cut service; a drop whose reasons no source gives (caps, never rejects)
    (PARLER_DROP.replace("kind: drop", "kind: notice"), AppProfile(UGC, PARLER), "conditional", "risk", None),
    (PARLER_DROP.replace("reason_categories: [incitement_to_violence, unmoderated_ugc]", "reason_categories: []"),
     AppProfile(UGC, PARLER), "conditional", "conditional", "reject"),
    # dropped, then taken back in the same incident: no cap once moderation meets the terms; still a reject when it does not
    (PARLER_DROP + REINSTATED, AppProfile(UGC, GOOD), "accept", "risk", None),
    (PARLER_DROP + REINSTATED, AppProfile(UGC, PARLER), "reject", "reject", None),
])
def test_a_same_kind_drop_caps_the_verdict(record, app, expected, effect, leaning) -> None:
    v = verdict(profile(record=record, moderation=MODERATION_48), app)
    assert (v.verdict, v.leaning) == (expected, leaning), [(f.id, f.effect, f.why) for f in v.findings]
    found = [f for f in v.findings if f.id == "t/record/parler-2021"]
    assert [f.effect for f in found] == ([effect] if effect else [])
    if effect == "reject":
        assert found[0].quote == "we may consider the processes you have" and found[0].section == "7"
        assert "Parler" in found[0].why and found[0].events[0].source == "https://x.example/1"


@pytest.mark.parametrize("record,app,mark", [
    (PARLER_DROP, AppProfile(UGC, GOOD), "counts"),
    (PARLER_DROP.replace("2021-01-10", "2009-01-10"), AppProfile(UGC, GOOD), "weighs less"),
    (PARLER_DROP.replace("reason_categories: [incitement_to_violence, unmoderated_ugc]", "reason_categories: [cryptomining]"),
     AppProfile(UGC, GOOD), "other reason"),
    (PARLER_DROP.replace("app_categories: [user_generated_content, political_speech]", "app_categories: [cryptomining]"),
     AppProfile(UGC, GOOD),
     "other kind"),
    (PARLER_DROP.replace("kind: drop", "kind: notice"), AppProfile(UGC, GOOD), "notice"),
    (PARLER_DROP.replace("kind: drop", "kind: accept"), AppProfile(UGC, GOOD), "shown"),
])
def test_each_incident_line_says_why_it_counts_or_not(record, app, mark) -> None:
    """The table's mark names the rule that applied: an incident of the same kind for
    another reason is not marked as if its age were what kept it from counting."""
    from relocate.policy.render import record_lines

    v = verdict(profile(record=record, moderation=MODERATION_48), app)
    (inc,) = v.incidents
    assert inc.mark == mark
    assert record_lines(v) == [f"{inc.describe()} [{mark}]"]


def test_one_incident_counts_once() -> None:
    app = AppProfile(UGC, GOOD)
    one = verdict(profile(record=PARLER_DROP + RULING, moderation=MODERATION_48), app)
    two = verdict(profile(record=PARLER_DROP + RULING.replace("parler-2021", "parler-2021-court"), moderation=MODERATION_48), app)
    assert [f.id for f in one.findings if "/record/" in f.id] == ["t/record/parler-2021"]
    (inc,) = one.incidents
    assert len(inc.events) == 2 and inc.date == "2021-01-10" and "one incident" in inc.describe()
    assert len(two.incidents) == 2
    assert one.score > two.score  # the ruling counted apart costs again; as one incident it does not


def test_an_owner_change_after_an_acceptance_weakens_it() -> None:
    accepted = PARLER_DROP.replace("kind: drop", "kind: accept")
    changed = accepted + "  - {date: 2023-05, kind: owner_change, incident: sale-2023, target: the provider, what: Sold to B., " \
                         "source: 'https://x.example/3'}\n"
    app = AppProfile(UGC, GOOD)
    unknown = {"hate_speech": "unknown"}  # keeps the score off its ceiling, so the acceptance's weight shows
    plain, weakened = verdict(profile(record=accepted, categories=unknown), app), verdict(profile(record=changed, categories=unknown), app)
    note = next(f for f in weakened.findings if f.id == "t/record/parler-2021")
    assert "weakened" in note.why and "owner change: Sold to B" in note.why
    assert plain.score > weakened.score
    assert any(e.kind == "owner_change" for e in weakened.events)


def test_weight_decays_with_age() -> None:
    assert weight("2026-12-04", TODAY) == 1.0
    assert 0.49 < weight("2016-12-04", TODAY) < 0.51
    assert weight("2021-01", TODAY) > weight("2017-08", TODAY)
    p = profile(record=PARLER_DROP)
    assert incidents(p, {"user_generated_content"}, {"unmoderated_ugc"}, TODAY)[0].counts
    assert not incidents(p, {"user_generated_content"}, {"unmoderated_ugc"}, dt.date(2032, 1, 1))[0].counts


# ---- 4. moderation adequacy against stated cure periods and app size --------------

MODERATION_24 = MODERATION_48.replace("cure_period_hours: 48, business_days: true", "cure_period_hours: 24, business_days: false")


@pytest.mark.parametrize("terms,m,adequate,fragment", [
    (MODERATION_48, PARLER, False, "reports answered in 72 h, beyond 48 h"),
    (MODERATION_48, PARLER, False, "about 750 needed"),
    (MODERATION_48, Moderation(40, 24, True, True, None, 1_500_000), True, ""),  # 5% of 1.5M / 2000 = 38 needed
    (MODERATION_48, Moderation(30, 24, True, True, None, 1_500_000), False, "about 38 needed"),
    (MODERATION_48, Moderation(5, 24, True, True), False, "app size not declared"),
    (MODERATION_48, Moderation(5, 24, False, True, None, None, 8_000), True, ""),  # 8000 posts / 2000 = 4 needed
    (MODERATION_48, Moderation(5, 36, True, True, None, 1_000), True, ""),
    (MODERATION_24, Moderation(5, 36, True, True, None, 1_000), False, "beyond 24 h"),  # a 24 h cure, a 36 h answer
    (MODERATION_48, Moderation(5, 24, True, None, None, 1_000), False, "published rules not declared"),
    (MODERATION_48.replace("published_rules]", "published_rules, notice_channel]"), Moderation(5, 24, True, True, False, 1_000),
     False, "no notice channel"),
    ("", Moderation(5, 24, None, True), True, ""),  # no moderation section: 24 h default, no capacity asked
    ("", Moderation(5, 50, None, True), False, "beyond 48 h (T Host's stated cure period)"),  # the suspension terms' cure
    ("", Moderation(0, 1, True, True), False, "zero moderators"),
    (MODERATION_48, None, False, "no moderation declared"),
])
def test_moderation_adequacy_against_stated_cure_periods_and_app_size(terms, m, adequate, fragment) -> None:
    p = profile(moderation=terms)
    a = assess(m, p)
    assert a.adequate == adequate, a.shortfalls
    assert fragment in a.summary()
    v = verdict(p, AppProfile(UGC, m))
    mod = next(f for f in v.findings if f.id == "t/moderation")
    assert mod.effect == ("note" if adequate else "conditional")
    assert v.verdict == ("accept" if adequate else "conditional")
    if terms:
        assert mod.quote == "we may consider the processes you have"


# ---- 5. stale texts warn ------------------------------------------------------------

@pytest.mark.parametrize("text_date,extra,captured,fragment", [
    ("2013-06-01", "", "2026-11-30", "is dated 2013-06-01 (13 years old)"),
    ("2024-10", "", "2026-11-30", "(2 years old)"),
    ("2026-01-01", ", newer_version: 2026-11 text on the provider's site", "2026-11-30", "a newer version is known"),
    ("2026-01-01", "", "2025-01-01", "captured 2025-01-01"),
    ("2026-01-01", "", "2026-11-30", None),
])
def test_stale_texts_warn(text_date, extra, captured, fragment) -> None:
    d = doc("aup", text_date=text_date, extra=extra).replace("captured: '2026-11-30'", f"captured: '{captured}'")
    v = verdict(profile(docs=d), AppProfile(["cryptomining"]))
    if fragment is None:
        assert v.warnings == ()
    else:
        assert any(fragment in w for w in v.warnings), v.warnings


# ---- the vendor chain ----------------------------------------------------------------

def test_vendor_chain_from_names_and_alternatives_of_the_same_kind() -> None:
    detect = "detect: {env_prefixes: [TWILIO_]}\n"
    twilio = profile("twilio", kinds="[sms]", record=PARLER_DROP, detect=detect)  # dropped an app like this one
    other = profile("smsco", kinds="[sms]")
    host = profile("host")
    ps = ProfileSet(CATS, {p.id: p for p in (twilio, other, host)})
    app = AppProfile(UGC, GOOD, {"dns": "host"})
    names = ["/prod/app/TWILIO_AUTH_TOKEN", "prod/okta-api-token", "SENTRY_DSN", "DATABASE_URL", "prod/twilio"]
    risks = {d.current: d for d in dependency_risks(app, ps, evaluate(app, ps, today=TODAY), names=names)}
    assert set(risks) == {"host", "twilio", "okta", "sentry"}
    tw = risks["twilio"]
    assert (tw.kind, tw.provider, tw.verdict, tw.at_risk) == ("sms", "twilio", "conditional", True)
    assert "twilio/record/parler-2021" in tw.reason
    assert tw.evidence == ("name /prod/app/TWILIO_AUTH_TOKEN", "name prod/twilio")
    assert [a[:2] for a in tw.alternatives] == [("smsco", "accept")]  # same kind only: not the host
    assert (risks["okta"].kind, risks["okta"].provider, risks["okta"].verdict) == ("identity", None, "unknown")
    assert risks["sentry"].kind == "monitoring"
    assert risks["host"].evidence == ("app.dependencies.dns",)
    # values never enter: only names are inputs, and none of them appears anywhere but as evidence
    assert all("DATABASE_URL" not in " ".join(d.evidence) for d in risks.values())


# ---- waivers (--accept-risk): never an accept without a reading ----------------------

def test_a_waiver_never_turns_unknown_into_accept() -> None:
    """docs/policy.md 6: `unknown` never becomes `accept`; a waived unknown is marked and still counts."""
    p = profile(docs=doc("aup") + doc("tos", "partial"), governing="[aup, tos]", categories={"disinformation": "unknown"})
    app = AppProfile(UGC, GOOD)
    plain = verdict(p, app)
    unknowns = [f.id for f in plain.findings if f.effect == "unknown"]
    assert plain.verdict == "unknown" and {"t/disinformation", "t/reading"} <= set(unknowns)
    waived = judge(p, app, CATS, TODAY, accepted_risks=unknowns)
    assert waived.verdict == "unknown", [(f.id, f.effect, f.waived) for f in waived.findings]
    assert sorted(f.id for f in waived.findings if f.waived) == sorted(unknowns)


def test_a_waived_reject_no_longer_hides_the_partial_reading() -> None:
    """A reject made `<id>/reading` redundant; waived, the accept it would leave rests on a partial reading."""
    p = profile(docs=doc("aup") + doc("tos", "partial"), governing="[aup, tos]", categories={"cryptomining": "prohibited"})
    app = AppProfile(["cryptomining"])
    assert "t/reading" not in {f.id for f in verdict(p, app).findings}
    waived = judge(p, app, CATS, TODAY, accepted_risks={"t/cryptomining"})
    effects = {f.id: (f.effect, f.waived) for f in waived.findings}
    assert effects["t/cryptomining"] == ("reject", True) and effects["t/reading"] == ("unknown", False)
    assert waived.verdict == "unknown"


# ---- where "no clause found" was looked for ------------------------------------------

def test_no_clause_found_cites_the_governing_document_read_in_full() -> None:
    """A finding's `source` names the document and copy a "no clause" rests on (no section); a
    category the profile never looked at keeps none."""
    p = profile(docs=doc("aup") + doc("tos", "partial"), governing="[aup, tos]",
                categories={"disinformation": "not_stated", "defamation": "absent"})
    v = verdict(p, AppProfile(UGC, GOOD))
    by_id = {f.id: f for f in v.findings}
    dis = by_id["t/disinformation"].to_dict()["source"]
    assert dis is not None and dis["document"] == "aup" and dis["section"] is None and dis["read"] == "full"
    assert dis["copy"] is not None
    from relocate.policy.render import cite

    assert "no clause found (read in full)" in cite(by_id["t/disinformation"])
    assert by_id["t/defamation"].document is None  # left out of the profile: never looked for
    unread = profile(docs=doc("aup", "partial"), categories={"disinformation": "unknown"})
    assert {f.id: f for f in verdict(unread, AppProfile(UGC, GOOD)).findings}["t/disinformation"].document is None
