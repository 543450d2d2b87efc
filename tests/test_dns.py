"""DNS export against Route53 in moto: every record type, re-parsed by dnspython and
compared record by record with what moto holds; the cutover checklist in the plan."""

from __future__ import annotations

import os
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import yaml

from helpers import aws_client, cli, make_config
from relocate.kinds.dns import aws_resource, parse_zone_text

ZONE = "townsquare.example"
LONG = "k=" + "A" * 250  # one TXT string near the 255-byte limit


def _change(name: str, rtype: str, values: list[str], ttl: int = 3600, **extra) -> dict:
    rrs: dict = {"Name": name, "Type": rtype, **extra}
    if values:
        rrs["TTL"] = ttl
        rrs["ResourceRecords"] = [{"Value": v} for v in values]
    return {"Action": "CREATE", "ResourceRecordSet": rrs}


def seed_zone(endpoint: str) -> str:
    r53 = aws_client("route53", endpoint)
    zid = r53.create_hosted_zone(Name=ZONE, CallerReference="t1")["HostedZone"]["Id"]
    z = ZONE + "."
    changes = [
        _change(f"www.{z}", "A", ["198.51.100.10", "198.51.100.11"]),
        _change(f"www.{z}", "AAAA", ["2001:db8::10"], ttl=86400),
        _change(f"cdn.{z}", "CNAME", ["d111111abcdef8.cloudfront.net."], ttl=600),
        _change(z, "MX", ["10 mx1.mail.example.net.", "20 mx2.mail.example.net."]),
        _change(z, "TXT", ['"v=spf1 include:amazonses.com ~all"', '"part one" "part two"', f'"{LONG}" "tail"'], ttl=300),
        _change(f"_sip._tcp.{z}", "SRV", ["10 60 5060 sip.townsquare.example."]),
        _change(z, "CAA", ['0 issue "letsencrypt.org"', '0 iodef "mailto:ops@townsquare.example"']),
        _change(f"10.100.51.198.in-addr.{z}", "PTR", ["www.townsquare.example."]),
        _change(f"sub.{z}", "NS", ["ns1.other.example.", "ns2.other.example."], ttl=172800),
        _change(f"blue.{z}", "A", ["192.0.2.1"], ttl=60, SetIdentifier="blue", Weight=70),
        _change(f"blue.{z}", "A", ["192.0.2.2"], ttl=60, SetIdentifier="green", Weight=30),
        _change(f"near.{z}", "A", ["192.0.2.3"], ttl=60, SetIdentifier="use1", Region="us-east-1"),
        _change(f"geo.{z}", "A", ["192.0.2.4"], ttl=60, SetIdentifier="eu", GeoLocation={"ContinentCode": "EU"}),
        _change(z, "A", [], AliasTarget={"HostedZoneId": "Z35SXDOTRQ7X7K", "EvaluateTargetHealth": False,
                                         "DNSName": "dualstack.townsquare-lb-123.us-east-1.elb.amazonaws.com."}),
        _change(f"api.{z}", "A", [], AliasTarget={"HostedZoneId": zid.rsplit("/", 1)[-1], "EvaluateTargetHealth": False,
                                                  "DNSName": f"www.{z}"}),
    ]
    # moto stores the SOA it creates as the text of a Python dict; real Route53 holds
    # plain SOA text, so the test restores that shape before exporting.
    soa = {"Action": "UPSERT", "ResourceRecordSet": {"Name": z, "Type": "SOA", "TTL": 900, "ResourceRecords": [
        {"Value": "ns-2048.awsdns-64.com. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"}]}}
    r53.change_resource_record_sets(HostedZoneId=zid, ChangeBatch={"Changes": [*changes, soa]})
    return zid


def _config(tmp_path: Path, moto: str, sshd, root: str) -> Path:
    path = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=root,
                       extra_app={"dependencies": {"registrar": "godaddy"}})
    doc = yaml.safe_load(path.read_text())
    doc["source"]["dns"] = [{"zone": ZONE}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _rdatas(rtype: str, values: list[str]) -> set:
    t = dns.rdatatype.from_text(rtype)
    return {dns.rdata.from_text(dns.rdataclass.IN, t, v, origin=dns.name.root, relativize=False)
            for v in values}


def test_route53_zone_exports_record_by_record(tmp_path: Path, moto: str, sshd) -> None:
    zid = seed_zone(moto)
    root = str(sshd.root / "dns1")
    cfg = _config(tmp_path, moto, sshd, root)

    plan = cli("plan", "-f", str(cfg), "--json")
    assert plan.exit_code == 0, plan.stderr
    p = plan.json()
    cutover = [w["message"] for w in p["warnings"] if w["code"] == "cutover"]
    notes = [w["message"] for w in p["warnings"] if w["code"] == "dns"]
    # TTL advice names current TTLs and the wait (the longest, 86400 s = 24 h).
    assert any("lower TTLs to 300" in c and "www.townsquare.example. AAAA (86400 s)" in c and "wait 24 h" in c for c in cutover), cutover
    assert any("cdn.townsquare.example. CNAME -> d111111abcdef8.cloudfront.net. (CloudFront distribution)" in c for c in cutover), cutover
    assert any("registrar (godaddy)" in c and "awsdns" in c for c in cutover), cutover
    assert any("ALIAS townsquare.example. A" in n and "Elastic Load Balancer" in n for n in notes), notes
    assert any("ALIAS api.townsquare.example. A" in n and "flattened to 198.51.100.10, 198.51.100.11" in n for n in notes), notes
    assert any("blue.townsquare.example. A: 2 routing-policy sets" in n and "weighted" in n for n in notes), notes
    assert any("geo.townsquare.example. A: 1 routing-policy sets" in n and "geo" in n for n in notes), notes

    move = cli("move", "-f", str(cfg), "--yes", "--json")
    assert move.exit_code == 0, move.stdout + move.stderr
    checks = move.json()["result"]["verify"]["checks"]
    assert any(c["label"].startswith("dns zone file") and c["ok"] for c in checks), checks

    text = (Path(root) / "dns" / f"{ZONE}.zone").read_text()
    snap_copy = next((tmp_path / "snapshots").glob(f"*/dns/{ZONE}.zone")).read_text()
    assert snap_copy == text
    zone = parse_zone_text(text, ZONE)

    held = aws_client("route53", moto).list_resource_record_sets(HostedZoneId=zid)["ResourceRecordSets"]
    expected: dict[tuple[str, str], set] = {}
    for rr in held:
        if rr.get("AliasTarget"):
            continue
        key = (rr["Name"].replace("\\052", "*"), rr["Type"])
        expected.setdefault(key, set()).update(_rdatas(rr["Type"], [v["Value"] for v in rr["ResourceRecords"]]))
    # the in-zone alias is flattened to www's addresses; the ELB alias is absent (reported instead)
    expected[(f"api.{ZONE}.", "A")] = _rdatas("A", ["198.51.100.10", "198.51.100.11"])
    got = {(name.to_text(), dns.rdatatype.to_text(rds.rdtype)): set(rds) for name, node in zone.nodes.items() for rds in node.rdatasets}
    assert set(got) == set(expected)
    for key, rdatas in expected.items():
        assert got[key] == rdatas, key
    assert (f"{ZONE}.", "A") not in got
    for t in ("SOA", "NS", "MX", "TXT", "SRV", "CAA", "PTR", "AAAA", "CNAME"):
        assert any(k[1] == t for k in got), t
    txt = {b"".join(r.strings) for r in got[(f"{ZONE}.", "TXT")]}
    assert (LONG + "tail").encode() in txt and b"part onepart two" in txt
    # TTLs are kept as Route53 has them
    assert zone.find_rdataset(f"www.{ZONE}.", "AAAA").ttl == 86400

    again = cli("move", "-f", str(cfg), "--yes", "--json")
    assert again.exit_code == 0, again.stderr


def test_aws_resource_names() -> None:
    assert aws_resource("my-lb-1.us-east-1.elb.amazonaws.com.") == "Elastic Load Balancer"
    assert aws_resource("d1.cloudfront.net") == "CloudFront distribution"
    assert aws_resource("bucket.s3-website-us-east-1.amazonaws.com.") == "S3 website endpoint"
    assert aws_resource("abc.execute-api.us-east-1.amazonaws.com.") == "API Gateway"
    assert aws_resource("mail.example.net.") is None


def test_unknown_zone_is_one_line_exit_2(tmp_path: Path, moto: str, sshd) -> None:
    cfg = _config(tmp_path, moto, sshd, str(sshd.root / "dns2"))
    r = cli("plan", "-f", str(cfg))
    assert r.exit_code == 2
    assert "route53 zone townsquare.example: not found" in r.stderr
    assert "Traceback" not in r.stderr


def test_cutover_list_compares_names_not_substrings(tmp_path: Path, moto: str, sshd) -> None:
    """Issue 15 item 11: `www` was dropped because `new-www` was listed, `shop` because `eshop` was."""
    r53 = aws_client("route53", moto)
    zone = "contain.example"
    z = zone + "."
    zid = r53.create_hosted_zone(Name=zone, CallerReference="t-contain")["HostedZone"]["Id"]
    soa = {"Action": "UPSERT", "ResourceRecordSet": {"Name": z, "Type": "SOA", "TTL": 900, "ResourceRecords": [
        {"Value": "ns-1.awsdns-1.com. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"}]}}
    changes = [
        _change(f"new-www.{z}", "CNAME", ["d2222.cloudfront.net."], ttl=300),  # listed: points at CloudFront
        _change(f"www.{z}", "A", ["198.51.100.20"], ttl=300),
        _change(f"eshop.{z}", "A", [], AliasTarget={"HostedZoneId": "Z35SXDOTRQ7X7K", "EvaluateTargetHealth": False,
                                                    "DNSName": "shop-lb-1.us-east-1.elb.amazonaws.com."}),
        _change(f"shop.{z}", "A", ["198.51.100.21"], ttl=300),
        _change(f"op.{z}", "AAAA", ["2001:db8::21"], ttl=300),
    ]
    r53.change_resource_record_sets(HostedZoneId=zid, ChangeBatch={"Changes": [*changes, soa]})
    path = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / "dns-contain"))
    doc = yaml.safe_load(path.read_text())
    doc["source"]["dns"] = [{"zone": zone}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))

    plan = cli("plan", "-f", str(path), "--json")
    assert plan.exit_code == 0, plan.stderr
    cutover = [w["message"] for w in plan.json()["warnings"] if w["code"] == "cutover"]
    changes_listed = [c for c in cutover if c.startswith(f"{zone}: change ")]
    for name, rtype, value in ((f"www.{z}", "A", "198.51.100.20"), (f"shop.{z}", "A", "198.51.100.21"),
                               (f"op.{z}", "AAAA", "2001:db8::21")):
        assert any(c.startswith(f"{zone}: change {name} {rtype} {value} -> the new host") for c in changes_listed), (name, changes_listed)
    assert any(f"new-www.{z} CNAME -> d2222.cloudfront.net." in c for c in changes_listed), changes_listed
    assert any(f"eshop.{z} A (ALIAS to Elastic Load Balancer" in c for c in changes_listed), changes_listed


def test_cutover_names_compare_case_insensitive_and_absolute() -> None:
    from relocate.kinds.dns import export_zone, name_key
    from relocate.sources.route53 import HostedZone, RecordSet

    assert name_key("WWW.Example") == name_key("www.example.") == "www.example."
    assert name_key("www.example.") != name_key("new-www.example.")
    hz = HostedZone("example.", "Z1", False, [
        RecordSet("example.", "SOA", 900, ("ns.example. host.example. 1 7200 900 1209600 86400",)),
        RecordSet("WWW.example.", "MX", 300, ("10 inbound-smtp.us-east-1.amazonaws.com.",)),
        RecordSet("www.example.", "AAAA", 300, ("2001:db8::1",)),
        RecordSet("ww.example.", "A", 300, ("192.0.2.1",)),
    ])
    repoint = export_zone(hz).repoint
    # the same name in another case is one name: its AAAA is not listed twice
    assert [r for r in repoint if r.lower().startswith("www.example.")] == ["WWW.example. MX -> inbound-smtp.us-east-1.amazonaws.com. (AWS endpoint)"]
    assert "ww.example. A 192.0.2.1 -> the new host" in repoint


def test_a_zone_file_that_would_not_parse_blocks_the_plan(tmp_path: Path, moto: str, sshd) -> None:
    """moto's own SOA is not zone-file text (the text of a Python dict), so the SOA is left
    out and the file would have none at its origin: `verify` could never pass. The plan says
    so as a blocker (exit 3) instead of "Ready", and a zone file an older move left on the
    target unchanged is no "nothing to do" either; once the SOA is fixed, the move writes it."""
    from relocate.kinds.dns import export_zone
    from relocate.sources.route53 import HostedZone, RecordSet

    r53 = aws_client("route53", moto)
    zone = "badsoa.example"
    z = zone + "."
    zid = r53.create_hosted_zone(Name=zone, CallerReference="t-badsoa")["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zid, ChangeBatch={"Changes": [
        _change(f"www.{z}", "A", ["198.51.100.30"], ttl=300)]})
    root = sshd.root / "dns-badsoa"
    path = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(path.read_text())
    doc["source"]["dns"] = [{"zone": zone}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))

    plan = cli("plan", "-f", str(path), "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    blockers = [b["message"] for b in plan.json()["blockers"] if b["code"] == "dns-zone"]
    assert blockers and "does not parse" in blockers[0] and "SOA" in blockers[0], plan.json()["blockers"]
    moved = cli("move", "-f", str(path), "--yes")
    assert moved.exit_code == 3, moved.stdout + moved.stderr
    assert not (root / "dns").exists()

    # The file an earlier move wrote (the same bytes): still blocked, never "unchanged".
    held = r53.list_resource_record_sets(HostedZoneId=zid)["ResourceRecordSets"]
    hz = HostedZone(z, zid.rsplit("/", 1)[-1], False, [
        RecordSet(r["Name"], r["Type"], r.get("TTL"), tuple(v["Value"] for v in r["ResourceRecords"])) for r in held])
    (root / "dns").mkdir(parents=True)
    (root / "dns" / f"{zone}.zone").write_text(export_zone(hz).text)
    if os.geteuid() == 0:  # as the login user wrote it
        for p in (root, root / "dns", root / "dns" / f"{zone}.zone"):
            os.chown(p, sshd.root.stat().st_uid, sshd.root.stat().st_gid)
    again = cli("move", "-f", str(path), "--yes")
    assert again.exit_code == 3 and "nothing to do" not in again.stdout, again.stdout + again.stderr

    soa = {"Action": "UPSERT", "ResourceRecordSet": {"Name": z, "Type": "SOA", "TTL": 900, "ResourceRecords": [
        {"Value": "ns-1.awsdns-1.com. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"}]}}
    r53.change_resource_record_sets(HostedZoneId=zid, ChangeBatch={"Changes": [soa]})
    fixed = cli("move", "-f", str(path), "--yes")
    assert fixed.exit_code == 0, fixed.stdout + fixed.stderr
    parse_zone_text((root / "dns" / f"{zone}.zone").read_text(), zone)
    assert cli("verify", "-f", str(path)).exit_code == 0
