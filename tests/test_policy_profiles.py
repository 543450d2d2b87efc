"""The shipped profiles, the loader's override order, and path-qualified schema errors."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from relocate.errors import ConfigError
from relocate.policy.app import AppProfile, Moderation
from relocate.policy.engine import evaluate
from relocate.policy.profiles import SHIPPED_DIR, lint_dir, load_profiles
from relocate.policy.schema import STANCES, ProfileError

REQUIRED = {"aws", "gcp", "azure", "oracle", "digitalocean", "linode", "vultr", "hetzner", "ovhcloud", "scaleway",
            "ionos", "cloudflare", "fastly", "backblaze", "1984hosting", "flokinet", "buyvm", "njalla",
            "orangewebsite", "epik"}
TODAY = dt.date(2026, 12, 1)


@pytest.fixture(scope="module")
def shipped():
    return load_profiles(None, env={})


def test_shipped_profiles_lint_clean() -> None:
    ps, errors = lint_dir(None)
    assert errors == []
    assert REQUIRED <= set(ps.providers)
    assert 15 <= len([c for c in ps.categories.values() if not c.descriptor]) <= 20


def test_repo_symlink_points_at_the_package_profiles() -> None:
    link = Path(__file__).resolve().parents[1] / "profiles"
    assert link.is_symlink() and link.resolve() == SHIPPED_DIR
    assert not (link / "providers" / "providers").exists()


def test_every_referenced_category_exists(shipped) -> None:
    for p in shipped.providers.values():
        assert set(p.clauses) <= set(shipped.categories), p.id
        for e in p.enforcement:
            assert set(e.categories) <= set(shipped.categories), (p.id, e)
    for c in shipped.categories.values():
        assert set(c.exposes) <= set(shipped.categories), c.id


def test_every_provider_has_documents_and_every_reading_a_source(shipped) -> None:
    for p in shipped.providers.values():
        assert p.documents, p.id
        for clause in p.clauses.values():
            assert clause.stance in STANCES
            if clause.stance not in ("unknown", "not_stated"):  # v2: "no clause found" cites nothing
                doc = p.documents[clause.document]
                assert doc.url.startswith(("https://", "http://")) and clause.section, (p.id, clause.category)
        for e in p.enforcement:
            assert e.source.startswith(("https://", "http://")), (p.id, e)


def test_every_finding_on_a_reviewed_category_has_a_source_url(shipped) -> None:
    every = AppProfile([c for c in shipped.categories if c != "unmoderated_ugc"], None)
    for v in evaluate(every, shipped, today=TODAY):
        for f in v.findings:
            if f.stance not in (None, "unknown", "not_stated"):
                assert f.document is not None and (f.document.url or "").startswith("http"), f.id
            assert f.id.startswith(f"{v.provider}/")
        assert "not legal advice" in v.disclaimer


PARLER = AppProfile(["user_generated_content", "political_speech"],
                    Moderation(moderators=3, report_response_hours=72, automated_filtering=False, published_rules=True,
                               daily_active_users=1_500_000),
                    {"dns": "route53", "registrar": "godaddy"})
AWS_AUP_MODERATION = "the policies and processes you have in place to prevent or identify and remove any prohibited content"


def test_parler_like_app(shipped) -> None:
    """Parler in January 2021: AWS rejects, citing its AUP's moderation sentence and the suspension; no accept on a partial reading."""
    verdicts = {v.provider: v for v in evaluate(PARLER, shipped, today=TODAY)}
    aws = verdicts["aws"]
    assert aws.verdict == "reject"
    (record,) = [f for f in aws.blocking() if "/record/" in f.id]
    assert AWS_AUP_MODERATION in (record.quote or "") and record.document is not None and record.document.role == "aup"
    assert any(e.target == "Parler" and e.date.startswith("2021-01") and e.kind == "drop" for e in record.events)
    assert [v.provider for v in verdicts.values() if v.verdict == "reject" and v.provider != "aws"]
    for v in verdicts.values():
        if v.verdict == "accept":
            assert shipped.providers[v.provider].unread_governing() == [], v.provider


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_a_crypto_miner_is_not_accepted_by_the_big_clouds(shipped, provider: str) -> None:
    v = next(v for v in evaluate(AppProfile(["cryptomining"]), shipped, today=TODAY) if v.provider == provider)
    assert v.verdict != "accept"
    mining = next(f for f in v.findings if f.category == "cryptomining")
    assert mining.effect in ("reject", "conditional", "unknown")


def _write(dirpath: Path, name: str, text: str) -> Path:
    (dirpath / "providers").mkdir(parents=True, exist_ok=True)
    path = dirpath / "providers" / name
    path.write_text(text)
    return path


_OVERRIDE = """id: aws
name: AWS (our 2027 reading)
kinds: [compute]
jurisdiction: {country: US}
confidence: high
governing: [aup]
documents:
  - {id: aup, role: aup, url: "https://aws.amazon.com/aup/", title: AWS AUP, reviewed: 2027-01-02, confidence: high,
     copy: {archive: provider, captured: 2027-01-02}, read: full}
categories:
  unmoderated_ugc: {stance: customer_responsible, summary: Our newer reading., document: aup, section: "3"}
suspension: {without_notice: true, cure_period_hours: null, summary: At once.}
"""


def test_user_directory_overrides_shipped_by_id(tmp_path: Path) -> None:
    _write(tmp_path, "aws.yaml", _OVERRIDE)
    via_flag = load_profiles(tmp_path, env={})
    assert via_flag.providers["aws"].name == "AWS (our 2027 reading)"
    assert "gcp" in via_flag.providers  # the rest of the shipped set stays
    via_env = load_profiles(None, env={"RELOCATE_PROFILES": str(tmp_path)})
    assert via_env.providers["aws"].clause("unmoderated_ugc").stance == "customer_responsible"
    # The same directory named twice (flag and env) loads once: errors are not doubled.
    _write(tmp_path, "zz.yaml", "id: zz\n")
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path, env={"RELOCATE_PROFILES": str(tmp_path)})
    assert len([e for e in info.value.errors if "zz.yaml" in e]) == len(set(info.value.errors))


def test_missing_profiles_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profiles directory not found"):
        load_profiles(tmp_path / "nope", env={})


def test_errors_are_path_qualified_with_line_numbers(tmp_path: Path) -> None:
    bad = _OVERRIDE.replace("id: aws", "id: hetzner").replace("stance: customer_responsible", "stance: banned")
    bad = bad.replace("confidence: high\ngoverning", "confidence: high\ncategoris: {}\ngoverning")
    _write(tmp_path, "hetzner.yaml", bad)
    _, errors = lint_dir(tmp_path)
    prefix = f"{tmp_path / 'providers' / 'hetzner.yaml'}"
    assert f"{prefix}:12: categories.unmoderated_ugc.stance: must be one of prohibited, restricted, customer_responsible, " \
           "not_stated, unknown (got 'banned')" in errors
    assert f"{prefix}:6: categoris: unknown key (did you mean 'categories'?)" in errors
    assert len(errors) == 2


@pytest.mark.parametrize("mutation,expected", [
    (("section: \"3\"}", "section: \"3\", x-reviewer: me}"), None),  # x- keys are free
    (("document: aup, section: \"3\"", "document: tos, section: \"3\""), "no document with id 'tos'"),
    (("document: aup, section: \"3\"", "document: aup"), "give both 'document' (a document id) and 'section'"),
    (("unmoderated_ugc:", "user_generated_content:"), "is a descriptor"),
    (("country: US", "country: USA"), "jurisdiction.country: must be an ISO 3166 two-letter code"),
    (("kinds: [compute]", "kinds: [compute, hosting]"), "kinds[1]: must be one of compute"),
    (("reviewed: 2027-01-02,", "reviewed: last week,"), "documents[0].reviewed: must be a date"),
    ((", read: full}", "}"), "read: partial needs 'sections_read'"),
    ((", read: full}", ", read: partial, sections_read: ['3']}"), None),
    (("copy: {archive: provider, captured: 2027-01-02}, ", ""), "missing required key 'copy'"),
    (("copy: {archive: provider,", "copy: {archive: provider, commit: xyz,"), "copy.commit: must be a commit sha: 7 to 40 lower-case hex digits (got 'xyz')"),
    (("governing: [aup]", "governing: [aup, tos]"), "governing[1]: no document with id 'tos'"),
    (("role: aup", "role: law"), "documents[0].role: must be one of aup"),
    (("without_notice: true", "without_notice: sometimes"), "suspension.without_notice: must be true or false or null"),
    (("id: aws", "id: amazon"), "id: must match the file name 'aws'"),
])
def test_schema_rules(tmp_path: Path, mutation: tuple[str, str], expected: str | None) -> None:
    old, new = mutation
    assert old in _OVERRIDE
    _write(tmp_path, "aws.yaml", _OVERRIDE.replace(old, new))
    _, errors = lint_dir(tmp_path)
    if expected is None:
        assert errors == []
    else:
        assert any(expected in e for e in errors), errors


def test_a_categories_file_in_a_user_directory_extends_the_vocabulary(tmp_path: Path) -> None:
    (tmp_path / "categories.yaml").write_text(
        "version: 1\ncategories:\n  sanctions_evasion:\n    title: Sanctions evasion\n    definition: Helping evade sanctions.\n")
    _write(tmp_path, "aws.yaml", _OVERRIDE.replace("unmoderated_ugc:", "sanctions_evasion:"))
    ps = load_profiles(tmp_path, env={})
    assert ps.providers["aws"].clause("sanctions_evasion").stance == "customer_responsible"
    assert "incitement_to_violence" in ps.categories


def test_unreadable_profile_is_a_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "aws.yaml", _OVERRIDE)
    os.chmod(path, 0)
    try:
        if os.access(path, os.R_OK):  # root reads anything: make it a directory-shaped failure instead
            path.unlink()
            path.mkdir()
        with pytest.raises(ConfigError, match="aws.yaml"):
            load_profiles(tmp_path, env={})
    finally:
        if path.is_file():
            os.chmod(path, 0o644)
