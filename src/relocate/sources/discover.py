"""Inventory an AWS account, read-only: what an app may keep there and what ties it to AWS.

Every call goes through `Aws` (so the read-only guard applies) with adaptive retries.
Each collector is independent: one that fails (denied, throttled past retries, not
offered in a region) is recorded with why, and the rest of the inventory still stands.
Values of parameters and secrets are never read, only names.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import botocore.exceptions

from relocate.config import AwsSpec
from relocate.sources.aws import Aws, translate

# Kinds that hold data or config relocate can move, then the services that tie the app
# to AWS and need a replacement elsewhere (with what to look for).
DATA_KINDS = ("s3", "rds_instances", "rds_clusters", "ec2", "ssm", "secrets", "route53")
TIES = {
    "cloudfront": "CDN: serve from the new host or a CDN whose terms accept the app",
    "ses": "outbound mail: a mail relay or your own MTA (SPF/DKIM records move with DNS)",
    "sqs": "queues: a queue on the new host (e.g. Redis, RabbitMQ, PostgreSQL)",
    "sns": "notifications/fan-out: replace the publisher or a push provider",
    "ecr": "container images: docker save/pull them and push to a registry you control",
    "lambda": "functions: run the code as a service or cron job on the new host",
    "ecs": "container services: compose/systemd units on the new host (deploy.runtime)",
    "elbv2": "load balancers: a reverse proxy (nginx, Caddy, HAProxy) on the new host",
    "acm": "TLS certificates: ACM keys cannot be exported; issue new ones (e.g. Let's Encrypt)",
}
GLOBAL_KINDS = ("s3", "route53", "cloudfront")  # listed once, not per region


@dataclass
class Failure:
    kind: str
    region: str
    error: str

    def __post_init__(self) -> None:
        # One line, bounded: a server's HTML error page must not flood the report.
        text = " ".join(self.error.split())
        self.error = text if len(text) <= 300 else text[:297] + "..."

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "region": self.region, "error": self.error}


@dataclass
class Discovery:
    regions: list[str]
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    def items(self, kind: str) -> list[dict[str, Any]]:
        return self.resources.get(kind, [])

    def to_dict(self) -> dict[str, Any]:
        return {"regions": self.regions, "resources": self.resources, "failures": [f.to_dict() for f in self.failures],
                "ties": {k: why for k, why in TIES.items() if self.items(k)}}


def _pages(client: Any, op: str, key: str, **kw: Any) -> list[Any]:
    out: list[Any] = []
    for page in client.get_paginator(op).paginate(**kw):
        out.extend(page.get(key) or ())
    return out


def _code(exc: BaseException) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, botocore.exceptions.ClientError) else ""


# --- S3 -----------------------------------------------------------------------------

def _bucket_setting(fn: Callable[[], Any], absent: set[str], fails: list[str], what: str) -> Any:
    """A bucket sub-resource: its value, None when the bucket simply has none, '?' if unreadable."""
    try:
        return fn()
    except botocore.exceptions.ClientError as exc:
        if _code(exc) in absent:
            return None
        fails.append(f"{what}: {translate(exc, what).line()}")
        return "?"


def _cloudwatch_size(aws: Aws, bucket: str) -> tuple[int, int] | None:
    """(bytes, objects) from the daily S3 storage metrics, summed over storage classes."""
    cw = aws.client("cloudwatch")
    end = dt.datetime.now(dt.timezone.utc)
    totals = {}
    for metric in ("BucketSizeBytes", "NumberOfObjects"):
        metrics = _pages(cw, "list_metrics", "Metrics", Namespace="AWS/S3", MetricName=metric,
                         Dimensions=[{"Name": "BucketName", "Value": bucket}])
        total, seen = 0.0, False
        for m in metrics:
            points = cw.get_metric_statistics(Namespace="AWS/S3", MetricName=metric, Dimensions=m["Dimensions"],
                                              StartTime=end - dt.timedelta(days=3), EndTime=end, Period=86400,
                                              Statistics=["Average"]).get("Datapoints") or []
            if points:
                total += max(points, key=lambda p: p["Timestamp"])["Average"]
                seen = True
        if not seen:
            return None
        totals[metric] = int(total)
    return totals["BucketSizeBytes"], totals["NumberOfObjects"]


def _listing_size(s3: Any, bucket: str) -> tuple[int, int]:
    nbytes = count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents") or ():
            nbytes += int(o["Size"])
            count += 1
    return nbytes, count


def _s3_bucket(aws_for: Callable[[str], Aws], default: Aws, name: str, exact: bool = False) -> dict[str, Any]:
    s3 = default.client("s3")
    fails: list[str] = []
    loc = _bucket_setting(lambda: s3.get_bucket_location(Bucket=name).get("LocationConstraint"), set(), fails, f"s3://{name} location")
    region = "us-east-1" if loc in (None, "", "?") else ("eu-west-1" if loc == "EU" else loc)
    regional = aws_for(region)
    rs3 = regional.client("s3")
    versioning = _bucket_setting(lambda: rs3.get_bucket_versioning(Bucket=name).get("Status"), set(), fails, f"s3://{name} versioning")
    encryption = _bucket_setting(
        lambda: [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
                 for r in rs3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]],
        {"ServerSideEncryptionConfigurationNotFoundError"}, fails, f"s3://{name} encryption")
    lifecycle = _bucket_setting(lambda: len(rs3.get_bucket_lifecycle_configuration(Bucket=name).get("Rules") or ()),
                                {"NoSuchLifecycleConfiguration"}, fails, f"s3://{name} lifecycle")
    website = _bucket_setting(lambda: bool(rs3.get_bucket_website(Bucket=name)), {"NoSuchWebsiteConfiguration"}, fails,
                              f"s3://{name} website")
    size: tuple[int, int] | None = None
    basis = "cloudwatch"
    try:
        # CloudWatch's daily storage metrics cost one call however big the bucket; they lag
        # up to two days, so --count-objects asks for an exact listing pass instead.
        size = None if exact else _cloudwatch_size(regional, name)
    except Exception as exc:  # metrics denied: fall back to listing, but say so
        fails.append(f"s3://{name} metrics: {translate(exc, 'cloudwatch').line()}")
    if size is None:
        basis = "listing"
        try:
            size = _listing_size(rs3, name)
        except Exception as exc:
            fails.append(translate(exc, f"s3://{name} listing").line())
    return {
        "name": name, "region": region, "bytes": size[0] if size else None, "objects": size[1] if size else None,
        "size_from": basis if size else None, "versioning": versioning or "off",
        "encryption": ", ".join(encryption) if isinstance(encryption, list) else (encryption or "none"),
        "lifecycle_rules": lifecycle or 0, "website": bool(website) if website != "?" else "?", "errors": fails,
    }


def _s3(aws: Aws, aws_for: Callable[[str], Aws], exact: bool) -> list[dict[str, Any]]:
    names = [b["Name"] for b in aws.client("s3").list_buckets().get("Buckets") or ()]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda n: _s3_bucket(aws_for, aws, n, exact), names))


# --- regional data and config ---------------------------------------------------------

def _rds_instances(aws: Aws) -> list[dict[str, Any]]:
    return [{"id": d["DBInstanceIdentifier"], "engine": d.get("Engine"), "version": d.get("EngineVersion"),
             "class": d.get("DBInstanceClass"), "storage_gb": d.get("AllocatedStorage"),
             "endpoint": (d.get("Endpoint") or {}).get("Address"), "port": (d.get("Endpoint") or {}).get("Port"),
             "cluster": d.get("DBClusterIdentifier"), "db_name": d.get("DBName")}
            for d in _pages(aws.client("rds"), "describe_db_instances", "DBInstances")]


def _rds_clusters(aws: Aws) -> list[dict[str, Any]]:
    return [{"id": c["DBClusterIdentifier"], "engine": c.get("Engine"), "version": c.get("EngineVersion"),
             "storage_gb": c.get("AllocatedStorage"), "endpoint": c.get("Endpoint"),
             "members": [m["DBInstanceIdentifier"] for m in c.get("DBClusterMembers") or ()]}
            for c in _pages(aws.client("rds"), "describe_db_clusters", "DBClusters")]


def _ec2(aws: Aws) -> list[dict[str, Any]]:
    ec2 = aws.client("ec2")
    instances = [i for r in _pages(ec2, "describe_instances", "Reservations") for i in r.get("Instances") or ()]
    vol_ids = [m["Ebs"]["VolumeId"] for i in instances for m in i.get("BlockDeviceMappings") or () if "Ebs" in m]
    sizes = {}
    if vol_ids:
        sizes = {v["VolumeId"]: v.get("Size") for v in _pages(ec2, "describe_volumes", "Volumes", VolumeIds=vol_ids)}
    out = []
    for i in instances:
        tags = {t["Key"]: t["Value"] for t in i.get("Tags") or ()}
        out.append({
            "id": i["InstanceId"], "name": tags.get("Name", ""), "state": (i.get("State") or {}).get("Name"),
            "type": i.get("InstanceType"), "private_ip": i.get("PrivateIpAddress"), "public_ip": i.get("PublicIpAddress"),
            "public_dns": i.get("PublicDnsName") or None,
            "volumes": [{"id": m["Ebs"]["VolumeId"], "device": m.get("DeviceName"), "size_gb": sizes.get(m["Ebs"]["VolumeId"])}
                        for m in i.get("BlockDeviceMappings") or () if "Ebs" in m],
        })
    return out


def _ssm(aws: Aws) -> list[dict[str, Any]]:
    # describe_parameters returns names and types only; values would need GetParameter*.
    return [{"name": p["Name"], "type": p.get("Type")} for p in _pages(aws.client("ssm"), "describe_parameters", "Parameters")]


def _secrets(aws: Aws) -> list[dict[str, Any]]:
    return [{"name": s["Name"]} for s in _pages(aws.client("secretsmanager"), "list_secrets", "SecretList")]


def _route53(aws: Aws) -> list[dict[str, Any]]:
    return [{"name": z["Name"].rstrip("."), "id": z["Id"].split("/")[-1], "records": z.get("ResourceRecordSetCount"),
             "private": bool((z.get("Config") or {}).get("PrivateZone"))}
            for z in _pages(aws.client("route53"), "list_hosted_zones", "HostedZones")]


# --- ties -----------------------------------------------------------------------------

def _in_region(fn: Callable[[Aws], list[dict[str, Any]]], aws_for: Callable[[str], Aws], region: str) -> list[dict[str, Any]]:
    """A regional reader, with the region's client made in the worker thread that runs it."""
    return fn(aws_for(region))


def _cloudfront(aws: Aws) -> list[dict[str, Any]]:
    dists: list[dict[str, Any]] = []
    for page in aws.client("cloudfront").get_paginator("list_distributions").paginate():
        dists.extend((page.get("DistributionList") or {}).get("Items") or ())
    return [{"id": d["Id"], "domain": d.get("DomainName"), "aliases": (d.get("Aliases") or {}).get("Items") or [],
             "origins": [o.get("DomainName") for o in (d.get("Origins") or {}).get("Items") or ()]} for d in dists]


def _ses(aws: Aws) -> list[dict[str, Any]]:
    return [{"identity": i} for i in _pages(aws.client("ses"), "list_identities", "Identities")]


def _sqs(aws: Aws) -> list[dict[str, Any]]:
    return [{"url": u, "name": u.rsplit("/", 1)[-1]} for u in _pages(aws.client("sqs"), "list_queues", "QueueUrls")]


def _sns(aws: Aws) -> list[dict[str, Any]]:
    return [{"arn": t["TopicArn"], "name": t["TopicArn"].rsplit(":", 1)[-1]} for t in _pages(aws.client("sns"), "list_topics", "Topics")]


def _ecr(aws: Aws) -> list[dict[str, Any]]:
    return [{"name": r["repositoryName"], "uri": r.get("repositoryUri")}
            for r in _pages(aws.client("ecr"), "describe_repositories", "repositories")]


def _lambda(aws: Aws) -> list[dict[str, Any]]:
    return [{"name": f["FunctionName"], "runtime": f.get("Runtime"), "code_bytes": f.get("CodeSize")}
            for f in _pages(aws.client("lambda"), "list_functions", "Functions")]


def _ecs(aws: Aws) -> list[dict[str, Any]]:
    ecs = aws.client("ecs")
    out = []
    for cluster in _pages(ecs, "list_clusters", "clusterArns"):
        for svc in _pages(ecs, "list_services", "serviceArns", cluster=cluster):
            out.append({"cluster": cluster.rsplit("/", 1)[-1], "service": svc.rsplit("/", 1)[-1]})
    return out


def _elbv2(aws: Aws) -> list[dict[str, Any]]:
    return [{"name": lb["LoadBalancerName"], "type": lb.get("Type"), "dns": lb.get("DNSName")}
            for lb in _pages(aws.client("elbv2"), "describe_load_balancers", "LoadBalancers")]


def _acm(aws: Aws) -> list[dict[str, Any]]:
    return [{"domain": c.get("DomainName"), "arn": c["CertificateArn"]}
            for c in _pages(aws.client("acm"), "list_certificates", "CertificateSummaryList")]


REGIONAL: dict[str, Callable[[Aws], list[dict[str, Any]]]] = {
    "rds_instances": _rds_instances, "rds_clusters": _rds_clusters, "ec2": _ec2, "ssm": _ssm, "secrets": _secrets,
    "ses": _ses, "sqs": _sqs, "sns": _sns, "ecr": _ecr, "lambda": _lambda, "ecs": _ecs, "elbv2": _elbv2, "acm": _acm,
}
GLOBAL: dict[str, Callable[[Aws], list[dict[str, Any]]]] = {"route53": _route53, "cloudfront": _cloudfront}


def all_regions(aws: Aws) -> list[str]:
    try:
        regions = aws.client("ec2").describe_regions().get("Regions") or ()
    except Exception as exc:
        raise translate(exc, "ec2:DescribeRegions (for --all-regions)") from exc
    return sorted(r["RegionName"] for r in regions)


class _SharedAws(Aws):
    """Aws whose clients may be asked for from many threads: botocore sessions are not
    thread-safe while creating clients (made clients are)."""

    _lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._lock:
            return super().client(service)


def default_region(profile: str | None) -> str:
    """The region the user's AWS config names (AWS_DEFAULT_REGION, the profile), else us-east-1."""
    import botocore.session

    try:
        region: str | None = botocore.session.Session(profile=profile).get_config_variable("region")
        return region or "us-east-1"
    except botocore.exceptions.ProfileNotFound as exc:
        raise translate(exc, "--profile") from None


def discover(regions: list[str], *, profile: str | None = None, endpoint_url: str | None = None,
             workers: int = 8, exact_sizes: bool = False) -> Discovery:
    """Inventory `regions` (the first also answers the global services)."""
    cache: dict[str, Aws] = {}
    lock = threading.Lock()

    def aws_for(region: str) -> Aws:
        with lock:  # S3 buckets may live in regions not asked for; their clients are made on demand
            if region not in cache:
                cache[region] = _SharedAws(AwsSpec(region=region, profile=profile, endpoint_url=endpoint_url),
                                           retry_mode="adaptive")
            return cache[region]

    home = aws_for(regions[0])
    jobs: list[tuple[str, str, Callable[[], list[dict[str, Any]]]]] = [("s3", "global", lambda: _s3(home, aws_for, exact_sizes))]
    for kind, fn in GLOBAL.items():
        jobs.append((kind, "global", functools.partial(fn, home)))
    for region in regions:
        for kind, fn in REGIONAL.items():
            jobs.append((kind, region, functools.partial(_in_region, fn, aws_for, region)))

    def run(job: tuple[str, str, Callable[[], list[dict[str, Any]]]]) -> tuple[str, str, list[dict[str, Any]] | Failure]:
        kind, region, fn = job
        try:
            return kind, region, fn()
        except Exception as exc:  # one service failing must not lose the rest of the inventory
            return kind, region, Failure(kind, region, translate(exc, f"{kind} ({region})").line())

    result = Discovery(regions=list(regions))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(run, jobs))
    for kind, region, got in outcomes:
        items = result.resources.setdefault(kind, [])
        if isinstance(got, Failure):
            result.failures.append(got)
            continue
        for item in got:
            item.setdefault("region", region)
            for err in item.pop("errors", None) or ():
                result.failures.append(Failure(kind, item.get("region", region), err))
        items.extend(got)
    return result
