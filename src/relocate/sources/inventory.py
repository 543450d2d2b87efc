"""What the source holds, read without values: per bucket counts and bytes, parameter
and secret names with versions. Values are fetched only by `fetch_*` during a move."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator

from relocate.config import BucketSpec, Config, ParamSpec, SecretSpec
from relocate.secret import Secret
from relocate.sources.aws import Aws, translate


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: float  # epoch seconds; becomes the file's mtime on the target


@dataclass
class BucketListing:
    spec: BucketSpec
    objects: list[ObjectInfo]
    region: str | None = None  # where the bucket lives, as S3 says (prices its egress); None: it did not say

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.objects)

    def digest(self) -> str:
        h = hashlib.sha256()
        for o in self.objects:
            h.update(f"{o.key}\0{o.size}\0{o.etag}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()


@dataclass(frozen=True)
class NamedVersion:
    name: str
    version: str  # parameter Version or secret VersionId: values are never read for the plan


@dataclass
class ParamListing:
    spec: ParamSpec
    items: list[NamedVersion]


@dataclass
class SecretListing:
    spec: SecretSpec
    item: NamedVersion


@dataclass
class Inventory:
    buckets: list[BucketListing] = field(default_factory=list)
    parameters: list[ParamListing] = field(default_factory=list)
    secrets: list[SecretListing] = field(default_factory=list)

    def fingerprint(self) -> dict[str, Any]:
        """What `move plan.json` compares to detect that the source changed since."""
        return {
            "buckets": {f"{b.spec.bucket}/{b.spec.prefix}": b.digest() for b in self.buckets},
            "parameters": {p.spec.path: sorted([i.name, i.version] for i in p.items) for p in self.parameters},
            "secrets": {s.spec.name: s.item.version for s in self.secrets},
        }

    def fingerprint_digest(self) -> str:
        return hashlib.sha256(json.dumps(self.fingerprint(), sort_keys=True).encode()).hexdigest()


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else 0.0


def _pages(client: Any, operation: str, what: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The pages of a paginated read, one at a time, with errors named after `what`."""
    try:
        yield from client.get_paginator(operation).paginate(**kwargs)
    except Exception as exc:
        raise translate(exc, what) from exc


def _paged(client: Any, operation: str, items_key: str, what: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a paginated read, page by page (a million keys are never held twice)."""
    for page in _pages(client, operation, what, **kwargs):
        yield from page.get(items_key, ())


LIST_FANOUT = 16  # prefixes of one bucket listed side by side
LIST_DEPTH = 3  # "directory" levels looked into to find them
LIST_MAX_SPLIT = 256  # more prefixes than this at one level: list their parents whole instead


def list_bucket(aws: Aws, spec: BucketSpec) -> BucketListing:
    """Every object under the prefix, with no per-object calls.

    A listing is 1,000 keys a request, one request after the other: a million keys is a
    thousand round trips. When the keys look like a tree, relocate lists it the way rclone
    walks one: the first levels with a "/" delimiter until it has LIST_FANOUT prefixes,
    then each prefix in full, side by side. A flat bucket costs the one pass it always
    did; a level of very many small "directories" (one per user, say) is listed whole
    rather than one request per directory."""
    s3 = aws.client("s3")
    what = f"s3://{spec.bucket}/{spec.prefix}"

    def page_entries(prefix: str, **kw: Any) -> Iterator[dict[str, Any]]:
        return _pages(s3, "list_objects_v2", what, Bucket=spec.bucket, Prefix=prefix, **kw)

    def whole(prefix: str) -> list[ObjectInfo]:
        return [_object(o) for page in page_entries(prefix) for o in page.get("Contents", ())]

    def one_level(prefix: str) -> tuple[list[ObjectInfo], list[str]]:
        objs: list[ObjectInfo] = []
        subs: list[str] = []
        for page in page_entries(prefix, Delimiter="/"):
            objs.extend(_object(o) for o in page.get("Contents", ()))
            subs.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        return objs, subs

    objects: list[ObjectInfo] = []
    level = [spec.prefix]
    with ThreadPoolExecutor(LIST_FANOUT, thread_name_prefix="s3-list") as pool:
        for _ in range(LIST_DEPTH):
            if len(level) >= LIST_FANOUT:
                break
            found = list(pool.map(one_level, level))
            if sum(len(subs) for _, subs in found) > LIST_MAX_SPLIT:
                break  # `level` is listed whole below, its direct objects included
            for objs, subs in found:
                objects.extend(objs)
            level = [sub for _, subs in found for sub in subs]
        for objs in pool.map(whole, level):
            objects.extend(objs)
    objects.sort(key=lambda o: o.key)
    from relocate.sources.s3data import bucket_region  # obstore and friends: only once a bucket is listed

    return BucketListing(spec, objects, bucket_region(s3, spec.bucket))


def _object(o: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(o["Key"], int(o["Size"]), str(o.get("ETag", "")).strip('"'), _epoch(o.get("LastModified")))


def list_parameters(aws: Aws, spec: ParamSpec) -> ParamListing:
    ssm = aws.client("ssm")
    # SSM wants the path without its trailing slash ("/" alone for the root).
    path = spec.path.rstrip("/") or "/"
    items = [NamedVersion(p["Name"], str(p.get("Version", "")))
             for p in _paged(ssm, "describe_parameters", "Parameters", f"ssm:{spec.path}",
                             ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": [path]}])]
    items.sort(key=lambda i: i.name)
    return ParamListing(spec, items)


def describe_secret(aws: Aws, spec: SecretSpec) -> SecretListing:
    sm = aws.client("secretsmanager")
    try:
        desc = sm.describe_secret(SecretId=spec.name)
    except Exception as exc:
        raise translate(exc, f"secret {spec.name}") from exc
    version = next((v for v, stages in (desc.get("VersionIdsToStages") or {}).items() if "AWSCURRENT" in stages), "")
    return SecretListing(spec, NamedVersion(spec.name, version))


def take_inventory(config: Config, aws: Aws) -> Inventory:
    return Inventory(
        buckets=[list_bucket(aws, b) for b in config.s3],
        parameters=[list_parameters(aws, p) for p in config.parameters],
        secrets=[describe_secret(aws, s) for s in config.secrets],
    )


# --- values, read only while moving -------------------------------------------------

def fetch_parameters(aws: Aws, spec: ParamSpec) -> Iterator[tuple[str, Secret]]:
    """(name relative to the path, value). SecureStrings decrypted, all values wrapped."""
    ssm = aws.client("ssm")
    path = spec.path.rstrip("/") or "/"
    try:
        for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True, WithDecryption=True):
            for p in page.get("Parameters", ()):
                rel = p["Name"][len(path):].lstrip("/") if p["Name"].startswith(path) else p["Name"]
                yield rel, Secret(p["Value"])
    except Exception as exc:
        raise translate(exc, f"ssm:{spec.path}") from exc


def fetch_secret(aws: Aws, spec: SecretSpec) -> Secret:
    sm = aws.client("secretsmanager")
    try:
        resp = sm.get_secret_value(SecretId=spec.name)
    except Exception as exc:
        raise translate(exc, f"secret {spec.name}") from exc
    if "SecretString" in resp:
        return Secret(resp["SecretString"])
    return Secret(resp["SecretBinary"].decode("utf-8", "replace"))
