"""The vendor chain: which SaaS vendors an app depends on, found from NAMES only, and their verdicts.

"Every vendor, from text message services to email providers to our lawyers,
all ditched us on the same day" (Parler's CEO, January 2021). relocate moves an
app's parameters and secrets, so it knows their names: TWILIO_AUTH_TOKEN says
the app sends SMS through Twilio. Values are never looked at.

Sources, merged per (vendor, kind):
  * names of SSM parameters, secrets and environment variables, matched against
    each profile's `detect.env_prefixes`, then against KNOWN_PREFIXES (vendors
    without a profile are still listed, as unreviewed);
  * services `relocate discover` reports (ses, sns_sms, cognito, ...), matched
    against profiles' `detect.aws_services` and KNOWN_SERVICES;
  * `app.dependencies` (kind -> vendor) and `--uses VENDOR`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from relocate.errors import ConfigError
from relocate.policy.profiles import ProfileSet
from relocate.policy.schema import CHAIN_KINDS, KINDS, Provider
from relocate.policy.verdict import VERDICTS, DependencyRisk, ProviderVerdict

# prefix -> (vendor id, kind): the fallback when no profile's `detect` names the prefix.
KNOWN_PREFIXES: dict[str, tuple[str, str]] = {
    "TWILIO_": ("twilio", "sms"), "VONAGE_": ("vonage", "sms"), "NEXMO_": ("vonage", "sms"),
    "MESSAGEBIRD_": ("messagebird", "sms"), "PLIVO_": ("plivo", "sms"),
    "OKTA_": ("okta", "identity"), "AUTH0_": ("auth0", "identity"),
    "SENDGRID_": ("sendgrid", "email"), "MAILGUN_": ("mailgun", "email"), "POSTMARK_": ("postmark", "email"),
    "MAILCHIMP_": ("mailchimp", "email"), "MANDRILL_": ("mailchimp", "email"), "SPARKPOST_": ("sparkpost", "email"),
    "STRIPE_": ("stripe", "payments"), "PAYPAL_": ("paypal", "payments"), "BRAINTREE_": ("braintree", "payments"),
    "ZENDESK_": ("zendesk", "support"), "INTERCOM_": ("intercom", "support"), "FRESHDESK_": ("freshdesk", "support"),
    "SLACK_": ("slack", "chat"), "DISCORD_": ("discord", "chat"),
    "SENTRY_": ("sentry", "monitoring"), "DATADOG_": ("datadog", "monitoring"), "DD_API_KEY": ("datadog", "monitoring"),
    "NEW_RELIC_": ("newrelic", "monitoring"), "NEWRELIC_": ("newrelic", "monitoring"),
    "APPLE_APP_STORE_": ("apple-app-store", "app_store"), "APP_STORE_CONNECT_": ("apple-app-store", "app_store"),
    "APNS_": ("apple-app-store", "app_store"), "GOOGLE_PLAY_": ("google-play", "app_store"),
    "CLOUDFLARE_": ("cloudflare", "cdn"),
}
# what `discover` reports -> (vendor id, kind)
# (plain SNS topics are not mapped: they fan out notifications, and need not send SMS.)
KNOWN_SERVICES: dict[str, tuple[str, str]] = {
    "ses": ("aws", "email"), "sns_sms": ("aws", "sms"), "cognito": ("aws", "identity"),
    "route53": ("aws", "dns"), "cloudfront": ("aws", "cdn"),
}


def from_discovery(found: Mapping[str, object]) -> tuple[list[str], list[str]]:
    """(names, services) from `relocate discover --json`: parameter and secret NAMES, and the services in use."""
    resources = found.get("resources") if isinstance(found, Mapping) else None
    if not isinstance(resources, Mapping):
        raise ConfigError("not the output of `relocate discover --json` (no 'resources' mapping)")
    names = [str(item["name"]) for kind in ("ssm", "secrets") for item in resources.get(kind) or ()
             if isinstance(item, Mapping) and item.get("name")]
    services = [kind for kind, items in resources.items() if items and isinstance(kind, str)]
    return names, services
_SPLIT = re.compile(r"[/:#.\s]+")


@dataclass(frozen=True)
class Link:
    """One vendor the app depends on, and what shows it."""

    vendor: str  # profile id, or the KNOWN_PREFIXES name when no profile exists
    kind: str
    evidence: tuple[str, ...]
    current: str = ""  # as the user wrote it (app.dependencies: `route53`), else the vendor id


def _segments(name: str) -> list[str]:
    """`/prod/app/twilio-auth-token` -> [PROD, APP, TWILIO_AUTH_TOKEN]: each part a prefix may start."""
    return [s for s in (p.upper().replace("-", "_") for p in _SPLIT.split(name)) if s]


def _matches(segment: str, prefix: str) -> bool:
    return segment.startswith(prefix) or segment == prefix.rstrip("_")


def _kind_of(p: Provider | None, fallback: str | None) -> str:
    if fallback is not None:
        return fallback
    if p is None:
        return "unknown"  # a --uses vendor with neither a profile nor a known prefix
    return next((k for k in p.kinds if k in CHAIN_KINDS), p.kinds[0])


def detect(profileset: ProfileSet, names: Iterable[str] = (), services: Iterable[str] = (),
           uses: Iterable[str] = (), dependencies: Mapping[str, str] | None = None) -> list[Link]:
    """Every vendor the names, services and declarations point to; names only, never values."""
    found: dict[tuple[str, str], list[str]] = {}
    written: dict[tuple[str, str], str] = {}

    def add(vendor: str, kind: str, evidence: str, as_written: str | None = None) -> None:
        found.setdefault((vendor, kind), [])
        written.setdefault((vendor, kind), as_written or vendor)
        if evidence not in found[(vendor, kind)]:
            found[(vendor, kind)].append(evidence)

    profiles = sorted(profileset.providers.values(), key=lambda p: p.id)
    for kind, name in (dependencies or {}).items():
        p = profileset.resolve(name)
        add(p.id if p else name, kind, f"app.dependencies.{kind}", name)
    for name in uses:
        p = profileset.resolve(name)
        fallback = next((v for v in KNOWN_PREFIXES.values() if v[0] == name.strip().lower()), None)
        add(p.id if p else name.strip().lower(), _kind_of(p, fallback[1] if fallback else None), "--uses")
    for name in names:
        segs = _segments(name)
        hit = False
        for p in profiles:
            for prefix in p.detect.env_prefixes:
                if any(_matches(s, prefix) for s in segs):
                    table = KNOWN_PREFIXES.get(prefix)
                    add(p.id, _kind_of(p, table[1] if table else None), f"name {name}")
                    hit = True
        if hit:
            continue
        for prefix, (vendor, kind) in KNOWN_PREFIXES.items():
            if any(_matches(s, prefix) for s in segs):
                p = profileset.resolve(vendor)
                add(p.id if p else vendor, kind, f"name {name}")
    for service in services:
        key = service.strip().lower()
        owners = [p for p in profiles if key in p.detect.aws_services]
        table = KNOWN_SERVICES.get(key)
        if owners:
            for p in owners:
                add(p.id, _kind_of(p, table[1] if table else None), f"discover: {key}")
        elif table is not None:
            p = profileset.resolve(table[0])
            add(p.id if p else table[0], table[1], f"discover: {key}")
    return [Link(v, k, tuple(ev), written[(v, k)]) for (v, k), ev in found.items()]


def _rank(v: ProviderVerdict) -> tuple[int, int, str]:
    return VERDICTS.index(v.verdict), -v.score, v.provider


def risks(links: Iterable[Link], profileset: ProfileSet, verdicts: Iterable[ProviderVerdict]) -> list[DependencyRisk]:
    """Each vendor's verdict for this app, and the alternatives of the same kind that accept it."""
    by_id = {v.provider: v for v in verdicts}
    out = []
    for link in links:
        if link.kind not in KINDS and any(e.startswith("app.dependencies") for e in link.evidence):
            raise ConfigError(f"app.dependencies.{link.kind}: unknown kind (valid: {', '.join(KINDS)})")
        alts = sorted((v for v in by_id.values() if link.kind in v.kinds and v.verdict in ("accept", "conditional")
                       and v.provider != link.vendor), key=_rank)
        alternatives = tuple((v.provider, v.verdict, v.score) for v in alts)
        provider = profileset.resolve(link.vendor)
        if provider is None or provider.id not in by_id:
            out.append(DependencyRisk(link.kind, link.current or link.vendor, None, "unknown", True,
                                      f"no profile for {link.current or link.vendor!r}: its terms are unreviewed", alternatives, link.evidence))
            continue
        v = by_id[provider.id]
        top = v.top_findings(1)
        reason = f"{v.verdict} (score {v.score})" + (f": {top[0].id}, {top[0].why}" if top and v.verdict != "accept" else "")
        if link.kind not in provider.kinds:
            reason += f"; note: the profile does not list {link.kind} among {provider.name}'s services"
        out.append(DependencyRisk(link.kind, link.current or link.vendor, provider.id, v.verdict, v.verdict != "accept", reason,
                                  alternatives, link.evidence))
    return out
