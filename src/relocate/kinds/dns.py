"""DNS: Route53 hosted zones become standard zone files (dnspython writes and re-reads
them), into the snapshot and onto the target under `dns/<zone>.zone`; the plan carries
the cutover checklist (lower TTLs now, records to repoint, NS change at the registrar).

What a zone file cannot say is reported, never silently dropped:
- routing-policy sets (weighted/latency/geo/failover): the file holds every value
  of every set as one round-robin rrset; the policy itself must be rebuilt;
- ALIAS records: flattened to the target's own records when the target is a name in
  an exported zone; an alias to an AWS resource (ELB, CloudFront, S3 website, API
  Gateway) is not flattened (its addresses die with the account) but listed;
- any record whose value points at such an AWS resource is listed as needing a new target.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone

from relocate.kinds import Check, Kind, Context, Outcome, PlanPart
from relocate.config import Config
from relocate.plan.model import Finding, Step
from relocate.sources.route53 import HostedZone, RecordSet, read_zone
from relocate.targets import files, nolinks

LOW_TTL = 300  # what to lower TTLs to before the cutover
PARENT_NS_TTL = 172800  # typical TTL of the NS delegation at the TLD (com., org., ...)

# Hostname suffixes of AWS resources that disappear with the account.
_AWS_TARGETS = (
    (".elb.amazonaws.com.", "Elastic Load Balancer"),
    (".cloudfront.net.", "CloudFront distribution"),
    (".execute-api", "API Gateway"),
    ("s3-website", "S3 website endpoint"),
    (".s3.amazonaws.com.", "S3 bucket endpoint"),
    (".awsglobalaccelerator.com.", "Global Accelerator"),
    (".amazonaws.com.", "AWS endpoint"),
)


def aws_resource(hostname: str) -> str | None:
    """Which AWS resource a hostname names, if any (suffix match, or a marker inside)."""
    h = hostname.lower().rstrip(".") + "."
    for marker, what in _AWS_TARGETS:
        if (h.endswith(marker) if marker.endswith(".") else marker in h and h.endswith(".amazonaws.com.")):
            return what
    return None


@dataclass
class Export:
    zone: str  # without trailing dot, as in relocate.yaml
    text: str  # the zone file
    rrsets: int
    notes: list[str] = field(default_factory=list)  # what the file cannot carry
    repoint: list[str] = field(default_factory=list)  # records that need a new target
    ttls: list[tuple[str, str, int]] = field(default_factory=list)  # (name, type, ttl) above LOW_TTL
    nameservers: list[str] = field(default_factory=list)

    @property
    def dest(self) -> str:
        return zone_dest(self.zone)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def unparsable(self) -> str:
        """Why the zone file would fail the check `verify` makes of it (re-read as a DNS
        server would, the same number of rrsets), or "" when it passes. Pure: the plan asks
        it, so a plan that says Ready never writes a file the check then refuses."""
        try:
            z = parse_zone_text(self.text, self.zone)
        except Exception as exc:  # dnspython raises several kinds for a bad zone
            return f"does not parse as a zone file ({exc})"
        n = sum(len(node.rdatasets) for node in z.nodes.values())
        return "" if n == self.rrsets else f"{n} rrsets re-parsed, not {self.rrsets}"


def zone_dest(zone: str) -> str:
    return posixpath.join("dns", zone.rstrip(".") + ".zone")


def name_key(name: str) -> str:
    """A DNS name as compared: case-insensitive, absolute (one trailing dot). Names are
    compared whole, never by substring (`www.example.` is not in `new-www.example.`)."""
    return name.strip().rstrip(".").lower() + "."


def _points_at(rs: RecordSet) -> list[str]:
    """Hostnames a record's values point at (the last field of CNAME/MX/SRV/NS/PTR)."""
    if rs.type not in ("CNAME", "MX", "SRV", "PTR"):
        return []
    return [v.split()[-1] for v in rs.values]


def _flatten(rs: RecordSet, records: dict[tuple[str, str], list[RecordSet]], depth: int = 0) -> list[str] | None:
    """The values an alias resolves to inside the exported zones, or None."""
    target = (rs.alias or {}).get("DNSName", "").lower()
    target = target if target.endswith(".") else target + "."
    found = records.get((target, rs.type))
    if not found or depth > 4:
        return None
    out: list[str] = []
    for t in found:
        if t.alias:
            sub = _flatten(t, records, depth + 1)
            if sub is None:
                return None
            out.extend(sub)
        else:
            out.extend(t.values)
    return out


def export_zone(hz: HostedZone, others: list[HostedZone] = ()) -> Export:  # type: ignore[assignment]
    """Pure: a Route53 zone (plus the other exported zones, for alias flattening) -> zone file."""
    origin = dns.name.from_text(hz.name)
    zone = dns.zone.Zone(origin, relativize=False)
    records: dict[tuple[str, str], list[RecordSet]] = {}
    for z in (hz, *others):
        for rs in z.records:
            records.setdefault((rs.name.lower(), rs.type), []).append(rs)
    ex = Export(zone=hz.name.rstrip("."), text="", rrsets=0)
    header = [f"; zone {hz.name} exported by relocate from Route53 (hosted zone {hz.id})"]
    policies: dict[tuple[str, str], list[str]] = {}
    repointed: set[str] = set()  # name_key() of every name already on the repoint list
    for rs in hz.records:
        values = list(rs.values)
        ttl = rs.ttl
        if rs.alias:
            dest = rs.alias.get("DNSName", "")
            what = aws_resource(dest)
            flat = None if what else _flatten(rs, records)
            if flat is None:
                how = (f"it points at a {what} that goes away with the AWS account: create the replacement "
                       f"on the new host and add a {rs.type} record for {rs.name} pointing at it") if what else \
                    f"relocate cannot resolve {dest} from the exported zones: add {rs.type} records for {rs.name} by hand"
                ex.notes.append(f"ALIAS {rs.name} {rs.type} -> {dest}: not in the zone file; {how}")
                ex.repoint.append(f"{rs.name} {rs.type} (ALIAS to {what or 'other name'} {dest})")
                repointed.add(name_key(rs.name))
                header.append(f"; ALIAS {rs.name} {rs.type} -> {dest} omitted: {how}")
                continue
            values, ttl = flat, ttl or LOW_TTL
            header.append(f"; ALIAS {rs.name} {rs.type} -> {dest} flattened to {', '.join(flat)}")
            ex.notes.append(f"ALIAS {rs.name} {rs.type} -> {dest}: flattened to {', '.join(flat)}")
        if rs.set_id:
            policies.setdefault((rs.name, rs.type), []).append(f"{rs.policy or 'routing'} set {rs.set_id!r}")
        for host in _points_at(rs):
            if what_ := aws_resource(host):
                ex.repoint.append(f"{rs.name} {rs.type} -> {host} ({what_})")
                repointed.add(name_key(rs.name))
        if ttl is None:
            ttl = LOW_TTL
        rdtype = dns.rdatatype.from_text(rs.type)
        rdataset = zone.find_rdataset(dns.name.from_text(rs.name), rdtype, create=True)
        for v in values:
            try:
                # Route53 reads names in values as absolute with or without the final dot.
                rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, v, origin=dns.name.root, relativize=False)
            except Exception as exc:  # dnspython raises several kinds for bad text
                msg = f"{rs.name} {rs.type} value {v[:80]!r} is not valid zone-file text ({exc}): add it by hand"
                ex.notes.append(msg)
                header.append(f"; omitted: {msg}")
                continue
            rdataset.add(rd, ttl)
        if not rdataset:
            zone.delete_rdataset(dns.name.from_text(rs.name), rdtype)
            continue
        if ttl > LOW_TTL and rs.type not in ("SOA", "NS") and (rs.name, rs.type, ttl) not in ex.ttls:
            ex.ttls.append((rs.name, rs.type, ttl))
        if rs.type == "NS" and rs.name.lower() == hz.name.lower():
            ex.nameservers = list(values)
        if rs.type in ("A", "AAAA", "CNAME") and not rs.alias and name_key(rs.name) not in repointed:
            ex.repoint.append(f"{rs.name} {rs.type} {' '.join(values)} -> the new host")
    for (name, rtype), sets in policies.items():
        msg = (f"{name} {rtype}: {len(sets)} routing-policy sets ({'; '.join(sets)}); the zone file holds all "
               "their values as one round-robin set; rebuild the policy at the new DNS provider if it matters")
        ex.notes.append(msg)
        header.append(f"; {msg}")
    ex.rrsets = sum(len(node.rdatasets) for node in zone.nodes.values())
    body = zone.to_text(sorted=True, relativize=False, want_origin=True)
    ex.text = "\n".join(header) + "\n" + (body if isinstance(body, str) else body.decode())
    return ex


def parse_zone_text(text: str, zone: str) -> dns.zone.Zone:
    """Re-read a zone file the way a DNS server would (dnspython), absolute names."""
    return dns.zone.from_text(text, origin=dns.name.from_text(zone if zone.endswith(".") else zone + "."),
                              relativize=False, check_origin=True)


def _human(seconds: int) -> str:
    return f"{seconds // 3600} h" if seconds >= 3600 else f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


def checklist(exports: list[Export], registrar: str | None, new_host: str) -> list[str]:
    """Cutover steps, in the order they must happen."""
    items: list[str] = []
    for ex in exports:
        if ex.ttls:
            longest = max(t for _, _, t in ex.ttls)
            listed = ", ".join(f"{n} {t} ({ttl} s)" for n, t, ttl in ex.ttls[:12])
            more = f" and {len(ex.ttls) - 12} more" if len(ex.ttls) > 12 else ""
            items.append(f"{ex.zone}: NOW lower TTLs to {LOW_TTL} s: {listed}{more}; then wait {_human(longest)} "
                         f"(the longest current TTL) before changing any record")
        else:
            items.append(f"{ex.zone}: TTLs are already {LOW_TTL} s or less; no wait needed before changing records")
        for r in ex.repoint:
            items.append(f"{ex.zone}: change {r} (new host: {new_host})")
        ns = ", ".join(ex.nameservers) or "the Route53 nameservers"
        items.append(f"{ex.zone}: load {ex.dest} into the new DNS provider, then at the registrar "
                     f"({registrar or 'wherever the domain is registered'}) replace NS {ns} with the new provider's; "
                     f"the parent's NS TTL is usually {_human(PARENT_NS_TTL)}, and Route53 stops answering when the "
                     "account goes: do this first")
    return items


@dataclass
class Zones:
    """What gather read: the zones, and the sha256 of each zone file already on the target."""

    zones: list[HostedZone]
    on_target: dict[str, str] = field(default_factory=dict)  # dest (dns/<zone>.zone) -> sha256


class DnsKind(Kind):
    name = "dns"

    def enabled(self, config: Config) -> bool:
        return bool((config.data.get("source") or {}).get("dns"))

    def gather(self, ctx: Context) -> Zones:
        zones = [read_zone(ctx.aws, z["zone"]) for z in ctx.config.data["source"]["dns"]]
        # One command hashes every zone file there: a rerun with the same zones is "nothing to do".
        held = files.hash_tree(ctx.conn, posixpath.join(ctx.config.root, "dns"), timeout=600)
        return Zones(zones, {posixpath.join("dns", rel): digest for rel, digest in held.items()})

    def exports(self, zones: list[HostedZone]) -> list[Export]:
        return [export_zone(z, [o for o in zones if o is not z]) for z in zones]

    def plan(self, ctx: Context, gathered: Zones) -> PlanPart:
        part = PlanPart()
        exports = self.exports(gathered.zones)
        for hz, ex in zip(gathered.zones, exports):
            # A file that would fail its check blocks the move: writing it would end in
            # exit 4, and a later move finding the same bytes on the target would call the
            # zone unchanged while `verify` keeps failing. Typically the SOA (or the origin's
            # NS) was left out as not valid zone-file text: no DNS server loads such a file.
            bad = ex.unparsable()
            if bad:
                left_out = [n for n in ex.notes if "is not valid zone-file text" in n]
                part.blockers.append(Finding("dns-zone", f"{ex.zone}: the zone file relocate would write {bad}"
                                             + (f"; left out: {'; '.join(left_out[:3])}" if left_out else "")
                                             + f"; fix the record(s) in Route53, or remove {ex.zone} from source.dns"))
            same = gathered.on_target.get(ex.dest) == ex.sha256 and not bad
            part.steps.append(Step(id=f"dns:{ex.zone}", kind=self.name, source=f"route53:{hz.name}", dest=ex.dest,
                                   count=ex.rrsets, todo_count=0 if same else ex.rrsets, est_seconds=0.0 if same else 0.5,
                                   detail=(f"nothing to do: the target's zone file is the same ({ex.rrsets} rrsets)" if same
                                           else f"zone file, {ex.rrsets} rrsets"),
                                   change="" if same else f"write zone file {ex.dest} ({ex.rrsets} rrsets)"))
            if hz.private:
                part.warnings.append(Finding("dns-private", f"{ex.zone} is a private hosted zone (VPC-only names)"))
            for note in ex.notes:
                part.warnings.append(Finding("dns", note))
        registrar = (ctx.config.app.dependencies or {}).get("registrar")
        for item in checklist(exports, registrar, ctx.config.ssh.host):
            part.warnings.append(Finding("cutover", item))
        return part

    def apply(self, ctx: Context, gathered: Zones, step: Step) -> Outcome:
        ex = next(e for e in self.exports(gathered.zones) if f"dns:{e.zone}" == step.id)
        data = ex.text.encode()
        if ctx.snapshot_dir is not None:
            local = ctx.snapshot_dir / ex.dest
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
        remote = posixpath.join(ctx.config.root, ex.dest)
        if gathered.on_target.get(ex.dest) == ex.sha256:  # as the plan found it: not read again
            changed = False
        else:
            current = files.read_file(ctx.conn, remote)
            changed = current is None or current[0] != data
        if changed:
            allow = ctx.config.allowed_links
            nolinks.check_sftp(ctx.conn.sftp(), ctx.config.root, posixpath.dirname(remote), allow)  # before mkdir -p follows one
            files.mkdirs(ctx.conn, posixpath.dirname(remote))
            files.write_file_atomic(ctx.conn, remote, data, mode=0o644, root=ctx.config.root, allow=allow)
        return Outcome(changed=changed, manifest={"zone": ex.zone, "path": ex.dest, "sha256": ex.sha256, "rrsets": ex.rrsets})

    def verify(self, ctx: Context, manifest: dict[str, Any]) -> list[Check]:
        checks: list[Check] = []
        for entry in manifest.values():
            got = files.read_file(ctx.conn, posixpath.join(ctx.config.root, entry["path"]))
            label = f"dns zone file {entry['path']}"
            if got is None:
                checks.append(Check(label, False, "missing on the target"))
                continue
            if hashlib.sha256(got[0]).hexdigest() != entry["sha256"]:
                checks.append(Check(label, False, "differs from the snapshot"))
                continue
            try:
                z = parse_zone_text(got[0].decode(), entry["zone"])
            except Exception as exc:
                checks.append(Check(label, False, f"does not parse as a zone file ({exc})"))
                continue
            n = sum(len(node.rdatasets) for node in z.nodes.values())
            checks.append(Check(label, n == entry["rrsets"], f"{n} rrsets re-parsed"))
        return checks


KIND_CLASS = DnsKind
