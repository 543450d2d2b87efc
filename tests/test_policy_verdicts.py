"""Verdicts we stand behind: (app, provider) -> verdict, the finding that decides it, and the dated copy it rests on.

Each row names the finding that decides the verdict (the clause, the event, or the incomplete reading) and the dated
copy of the provider's own document it rests on (document id + archive commit; the research readings of those copies
are in the profiles' quotes and notes). Every row's finding was read in `relocate check --explain PROVIDER` when the
table was written (2026-12-04). The test fails when a profile edit changes a verdict, its deciding finding, or the
copy it cites without this table changing too: change the table only after re-reading the clause or event it names.
"""

from __future__ import annotations

import datetime as dt

import pytest

from relocate.policy.app import AppProfile, Moderation
from relocate.policy.engine import evaluate
from relocate.policy.profiles import load_profiles

TODAY = dt.date(2026, 12, 4)
APPS = {
    # Parler in January 2021 (issue 14): user-generated political speech, 3 moderators, 72 h, no filtering, 1.5M DAU
    "parler": AppProfile(["user_generated_content", "political_speech"],
                         Moderation(moderators=3, report_response_hours=72, automated_filtering=False,
                                    daily_active_users=1_500_000)),
    # a well-moderated forum of 100k daily users
    "forum": AppProfile(["user_generated_content"],
                        Moderation(moderators=60, report_response_hours=12, automated_filtering=True, published_rules=True,
                                   notice_channel=True, daily_active_users=100_000)),
    "miner": AppProfile(["cryptomining"]),
    "adult": AppProfile(["adult_content"]),
    "vpn": AppProfile(["open_proxies_vpn"]),
    "tor": AppProfile(["tor_exit_relays"]),
    "gambling": AppProfile(["gambling"]),
}
# The effect of the finding that decides each verdict (an accept is decided by a finding that allows).
DECIDING_EFFECT = {"reject": ("reject",), "unknown": ("unknown",), "conditional": ("conditional",), "accept": ("note",)}

# (app, provider, verdict, deciding finding, document id, copy commit (or capture date))
ROWS = [
    ('parler', '1984hosting', 'conditional', '1984hosting/hate_speech', 'tos', '1e35f7a2dd676199b1057ca5f46a8511ced185a8'),  # tosdr/tosdr-versions
    ('parler', 'apple-app-store', 'reject', 'apple-app-store/unmoderated_ugc', 'review_guidelines', 'c120a4902521f0663f4161282ff1bc13384ee83b'),  # OpenTermsArchive/vlopses-us-versions
    ('parler', 'aws', 'reject', 'aws/record/parler-2021-aws', 'aup', '703e6bcabe94a20303e39de18625624746b2a3b4'),  # OpenTermsArchive/contrib-versions
    ('parler', 'backblaze', 'conditional', 'backblaze/harassment_threats', 'tos', '512ea0343f9e99f020226861eb3df4f4d819ea3d'),  # tosdr/tosback-versions
    ('parler', 'cloudflare', 'reject', 'cloudflare/record/kiwifarms-2022-cloudflare', 'ssa', '079b99ddb0809f768ad3d0a8d28da010f92e137d'),  # OpenTermsArchive/contrib-versions
    ('parler', 'digitalocean', 'reject', 'digitalocean/record/dailystormer-2017-digitalocean', 'tos', '3503f80ec0426f09111d9d6dbc26960d3ad5cb56'),  # tosdr/tosback-versions
    ('parler', 'discord', 'reject', 'discord/record/charlottesville-2017-discord', 'guidelines', 'fa0df52e498c2ef083e98232f60ea635c7261793'),  # OpenTermsArchive/contrib-versions
    ('parler', 'google-play', 'reject', 'google-play/unmoderated_ugc', 'dpp', '503d38f5ddbe97f1cb297b437e7d8de70154c234'),  # OpenTermsArchive/vlopses-us-versions
    ('parler', 'hetzner', 'unknown', 'hetzner/reading', 'system_policies', '0d7af2ed2e274b3d9f09a86d9ffa44e74a5c81a1'),  # tosdr/tosdr-versions
    ('parler', 'linode', 'conditional', 'linode/unmoderated_ugc', 'msa', '329f39882831fd841ff33831a3675697d640f91e'),  # linode/agreements
    ('parler', 'ovhcloud', 'unknown', 'ovhcloud/reading', 'gtc', '3cf1f3fe3b5e2fabc09f15891c0a3bd0d6aed7f7'),  # OpenTermsArchive/contrib-versions
    ('forum', '1984hosting', 'accept', '1984hosting/moderation', 'tos', '1e35f7a2dd676199b1057ca5f46a8511ced185a8'),  # tosdr/tosdr-versions
    ('forum', 'aws', 'unknown', 'aws/reading', 'service_terms', '48abc9a7a78b6e94c40f6c63d0c18f3f4f338e83'),  # OpenTermsArchive/contrib-versions
    ('forum', 'backblaze', 'accept', 'backblaze/moderation', 'tos', '512ea0343f9e99f020226861eb3df4f4d819ea3d'),  # tosdr/tosback-versions
    ('forum', 'discord', 'accept', 'discord/moderation', 'guidelines', 'fa0df52e498c2ef083e98232f60ea635c7261793'),  # OpenTermsArchive/contrib-versions
    ('forum', 'hetzner', 'unknown', 'hetzner/reading', 'system_policies', '0d7af2ed2e274b3d9f09a86d9ffa44e74a5c81a1'),  # tosdr/tosdr-versions
    ('forum', 'linode', 'accept', 'linode/moderation', 'aup', '329f39882831fd841ff33831a3675697d640f91e'),  # linode/agreements
    ('forum', 'ovhcloud', 'unknown', 'ovhcloud/reading', 'gtc', '3cf1f3fe3b5e2fabc09f15891c0a3bd0d6aed7f7'),  # OpenTermsArchive/contrib-versions
    ('miner', '1984hosting', 'reject', '1984hosting/cryptomining', 'tos', '1e35f7a2dd676199b1057ca5f46a8511ced185a8'),  # tosdr/tosdr-versions
    ('miner', 'aws', 'reject', 'aws/cryptomining', 'service_terms', '48abc9a7a78b6e94c40f6c63d0c18f3f4f338e83'),  # OpenTermsArchive/contrib-versions
    ('miner', 'hetzner', 'reject', 'hetzner/cryptomining', 'terms_and_conditions', 'fc3791753d159a84e1e4d106476231ab69bab1da'),  # tosdr/tosdr-versions
    ('miner', 'ovhcloud', 'unknown', 'ovhcloud/reading', 'gtc', '3cf1f3fe3b5e2fabc09f15891c0a3bd0d6aed7f7'),  # OpenTermsArchive/contrib-versions
    ('miner', 'slack', 'reject', 'slack/cryptomining', 'salesforce_aup', '7b8c4cfb67b1a8d70016bb16a1b6479fc138bf76'),  # aboutcode-org/scancode-toolkit
    ('adult', '1984hosting', 'reject', '1984hosting/adult_content', 'tos', '1e35f7a2dd676199b1057ca5f46a8511ced185a8'),  # tosdr/tosdr-versions
    ('adult', 'apple-app-store', 'reject', 'apple-app-store/adult_content', 'review_guidelines', 'c120a4902521f0663f4161282ff1bc13384ee83b'),  # OpenTermsArchive/vlopses-us-versions
    ('adult', 'aws', 'unknown', 'aws/reading', 'service_terms', '48abc9a7a78b6e94c40f6c63d0c18f3f4f338e83'),  # OpenTermsArchive/contrib-versions
    ('adult', 'discord', 'conditional', 'discord/adult_content', 'guidelines', 'fa0df52e498c2ef083e98232f60ea635c7261793'),  # OpenTermsArchive/contrib-versions
    ('adult', 'google-play', 'reject', 'google-play/adult_content', 'dpp', '503d38f5ddbe97f1cb297b437e7d8de70154c234'),  # OpenTermsArchive/vlopses-us-versions
    ('adult', 'hetzner', 'reject', 'hetzner/adult_content', 'terms_and_conditions', 'fc3791753d159a84e1e4d106476231ab69bab1da'),  # tosdr/tosdr-versions
    ('adult', 'ovhcloud', 'reject', 'ovhcloud/adult_content', 'gtc', '3cf1f3fe3b5e2fabc09f15891c0a3bd0d6aed7f7'),  # OpenTermsArchive/contrib-versions
    ('adult', 'slack', 'reject', 'slack/adult_content', 'salesforce_aup', '7b8c4cfb67b1a8d70016bb16a1b6479fc138bf76'),  # aboutcode-org/scancode-toolkit
    ('vpn', 'aws', 'unknown', 'aws/reading', 'service_terms', '48abc9a7a78b6e94c40f6c63d0c18f3f4f338e83'),  # OpenTermsArchive/contrib-versions
    ('vpn', 'hetzner', 'unknown', 'hetzner/reading', 'system_policies', '0d7af2ed2e274b3d9f09a86d9ffa44e74a5c81a1'),  # tosdr/tosdr-versions
    ('vpn', 'ovhcloud', 'unknown', 'ovhcloud/reading', 'gtc', '3cf1f3fe3b5e2fabc09f15891c0a3bd0d6aed7f7'),  # OpenTermsArchive/contrib-versions
    ('tor', 'aws', 'unknown', 'aws/reading', 'service_terms', '48abc9a7a78b6e94c40f6c63d0c18f3f4f338e83'),  # OpenTermsArchive/contrib-versions
    ('tor', 'hetzner', 'unknown', 'hetzner/reading', 'system_policies', '0d7af2ed2e274b3d9f09a86d9ffa44e74a5c81a1'),  # tosdr/tosdr-versions
    ('tor', 'ovhcloud', 'unknown', 'ovhcloud/reading', 'gtc', '3cf1f3fe3b5e2fabc09f15891c0a3bd0d6aed7f7'),  # OpenTermsArchive/contrib-versions
    ('gambling', 'discord', 'conditional', 'discord/gambling', 'guidelines', 'fa0df52e498c2ef083e98232f60ea635c7261793'),  # OpenTermsArchive/contrib-versions
    ('gambling', 'hetzner', 'reject', 'hetzner/gambling', 'terms_and_conditions', 'fc3791753d159a84e1e4d106476231ab69bab1da'),  # tosdr/tosdr-versions
    ('gambling', 'linode', 'conditional', 'linode/gambling', 'aup', '329f39882831fd841ff33831a3675697d640f91e'),  # linode/agreements
    ('gambling', 'ovhcloud', 'unknown', 'ovhcloud/reading', 'gtc', '3cf1f3fe3b5e2fabc09f15891c0a3bd0d6aed7f7'),  # OpenTermsArchive/contrib-versions
]


@pytest.fixture(scope="module")
def verdicts():
    ps = load_profiles(None, env={})
    return {name: {v.provider: v for v in evaluate(app, ps, today=TODAY)} for name, app in APPS.items()}


def test_the_table_is_wide_enough() -> None:
    assert len(ROWS) >= 25
    assert len({r[1] for r in ROWS}) >= 12
    assert len({(r[0], r[1]) for r in ROWS}) == len(ROWS)
    assert {r[2] for r in ROWS} >= {"accept", "conditional", "unknown", "reject"}


@pytest.mark.parametrize("app,provider,verdict,deciding,document,copy", ROWS, ids=[f"{r[0]}-{r[1]}" for r in ROWS])
def test_verdicts_we_stand_behind(verdicts, app: str, provider: str, verdict: str, deciding: str, document: str,
                                  copy: str) -> None:
    v = verdicts[app][provider]
    assert v.verdict == verdict, f"{app} at {provider}: {v.verdict}, table says {verdict}; re-read and update the table"
    found = {f.id: f for f in v.findings}
    assert deciding in found, f"{deciding} no longer among {sorted(found)}"
    f = found[deciding]
    assert f.effect in DECIDING_EFFECT[verdict] and not f.waived
    assert f.document is not None and f.document.id == document and f.document.kind == "primary"
    assert f.document.copy is not None and copy in (f.document.copy.commit, f.document.copy.captured)
    if verdict == "accept":  # an accept never rests on a partial reading
        assert not [x for x in v.findings if x.id.endswith("/reading")]
