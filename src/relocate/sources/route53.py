"""Read Route53 hosted zones (read-only, through the guarded client in sources/aws.py).

Only reading lives here; turning records into zone files is kinds/dns.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from relocate.sources.aws import Aws, translate


@dataclass(frozen=True)
class RecordSet:
    """One Route53 resource record set, as Route53 holds it (names end with a dot)."""

    name: str
    type: str
    ttl: int | None
    values: tuple[str, ...]
    set_id: str | None = None  # SetIdentifier: weighted/latency/geo/failover/multivalue sets
    policy: str | None = None  # "weighted", "latency", "geo", "failover", "multivalue", ...
    alias: dict[str, Any] | None = None  # AliasTarget: {HostedZoneId, DNSName, EvaluateTargetHealth}


@dataclass
class HostedZone:
    name: str  # with the trailing dot
    id: str
    private: bool
    records: list[RecordSet] = field(default_factory=list)


_POLICY_KEYS = (("Weight", "weighted"), ("Region", "latency"), ("GeoLocation", "geo"),
                ("GeoProximityLocation", "geoproximity"), ("Failover", "failover"),
                ("MultiValueAnswer", "multivalue"), ("CidrRoutingConfig", "cidr"))


def _record(rr: dict[str, Any]) -> RecordSet:
    policy = next((name for key, name in _POLICY_KEYS if key in rr), None)
    return RecordSet(
        name=_unescape(rr["Name"]),
        type=rr["Type"],
        ttl=rr.get("TTL"),
        values=tuple(v["Value"] for v in rr.get("ResourceRecords") or ()),
        set_id=rr.get("SetIdentifier"),
        policy=policy,
        alias=dict(rr["AliasTarget"]) if rr.get("AliasTarget") else None,
    )


def _unescape(name: str) -> str:
    r"""Route53 returns `*` as `\052` (and other odd bytes octal-escaped)."""
    if "\\" not in name:
        return name
    out, i = [], 0
    while i < len(name):
        if name[i] == "\\" and name[i + 1:i + 4].isdigit():
            out.append(chr(int(name[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def _fqdn(zone: str) -> str:
    return zone if zone.endswith(".") else zone + "."


def read_zone(aws: Aws, zone: str) -> HostedZone:
    """The public hosted zone named `zone` with all its record sets."""
    client = aws.client("route53")
    want = _fqdn(zone).lower()
    try:
        found = client.list_hosted_zones_by_name(DNSName=want).get("HostedZones", [])
        matches = [z for z in found if z["Name"].lower() == want]
        if not matches:
            from relocate.errors import SourceError

            raise SourceError(f"route53 zone {zone}: not found on the source", hint="check source.dns[].zone")
        # A public zone wins over a private one of the same name: it is what the world sees.
        matches.sort(key=lambda z: bool(z.get("Config", {}).get("PrivateZone")))
        z = matches[0]
        hz = HostedZone(z["Name"], z["Id"].rsplit("/", 1)[-1], bool(z.get("Config", {}).get("PrivateZone")))
        for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=hz.id):
            hz.records.extend(_record(rr) for rr in page["ResourceRecordSets"])
    except Exception as exc:
        raise translate(exc, f"route53 zone {zone}") from exc
    return hz
