"""What the source holds, read without values: per bucket counts and bytes, parameter
and secret names with versions. Values are fetched only by `fetch_*` during a move."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator

from relocate.config import BucketSpec, Config, ParamSpec, SecretSpec, owner_of
from relocate.secret import Secret
from relocate.sources.aws import Aws, bucket_region, translate


@dataclass(frozen=True, slots=True)  # one per object listed, alive for the whole move: no __dict__ each
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: float  # epoch seconds; becomes the file's mtime on the target


VERSIONS_DIR = "%%versions"  # under <to>: older versions (README, "Versioned buckets")


def version_key(key: str, version_id: str) -> str:
    """How one older version is named in the journal and the pusher: unambiguous for any key."""
    return json.dumps([key, version_id], ensure_ascii=False)


def split_version_key(vkey: str) -> tuple[str, str]:
    key, version_id = json.loads(vkey)
    return key, version_id


@dataclass
class BucketListing:
    spec: BucketSpec
    objects: list[ObjectInfo]
    # "current": the latest version of each key. "versions": the older versions of a
    # bucket listed with `versions: all`, each ObjectInfo.key a version_key().
    kind: str = "current"
    delete_markers: list[dict[str, Any]] = field(default_factory=list)  # kind "versions": key, version_id, last_modified, latest

    @property
    def step_id(self) -> str:
        base = f"s3:{self.spec.bucket}/{self.spec.prefix}"
        return base + "#versions" if self.kind == "versions" else base

    @property
    def journal_bucket(self) -> str:
        """The journal's bucket column: a bucket name cannot hold '#', so versions never mix with keys."""
        return self.spec.bucket + "#versions" if self.kind == "versions" else self.spec.bucket

    @property
    def dest(self) -> str:
        """The directory, under target.root, this listing's files land in."""
        return f"{self.spec.to}/{VERSIONS_DIR}" if self.kind == "versions" else self.spec.to
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


@dataclass
class LeftOut:
    """Objects of a bucket that no `source.s3` entry's prefix covers: never moved, always said.
    In a versioned bucket also the older versions and delete markers of keys no prefix
    covers (keys deleted since, which exist only as those, included): they stay behind too."""

    bucket: str
    prefixes: list[str]  # the prefixes relocate.yaml lists for this bucket
    count: int = 0
    bytes: int = 0
    examples: list[str] = field(default_factory=list)  # the first few keys, for the message
    # Set once the bucket's versions were listed (versioning Enabled or Suspended): then
    # the counts below are known, and said, even when they are 0.
    versioned: bool = False
    versions: int = 0  # older (noncurrent) versions outside every prefix
    versions_bytes: int = 0
    delete_markers: int = 0
    version_keys: int = 0  # the keys they belong to (a key deleted since has only these)
    version_examples: list[str] = field(default_factory=list)  # the first few of those keys, in key order
    _last: str | None = field(default=None, repr=False, compare=False)

    def add_version_keys(self, keys: list[str]) -> None:
        """Count the distinct keys of one page's older versions and delete markers outside
        every prefix (ListObjectVersions walks keys in order: a key never comes back after
        another one), keeping the first LEFT_OUT_EXAMPLES as examples."""
        for key in sorted(keys):
            if key == self._last:
                continue
            self._last = key
            self.version_keys += 1
            if len(self.version_examples) < LEFT_OUT_EXAMPLES:
                self.version_examples.append(key)

    @property
    def anything(self) -> bool:
        return bool(self.count or self.versions or self.delete_markers)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bucket": self.bucket, "prefixes": self.prefixes, "count": self.count, "bytes": self.bytes,
                               "examples": self.examples}
        if self.versioned:  # additive: a bucket never versioned has no such keys (docs/json.md)
            out.update(versions=self.versions, versions_bytes=self.versions_bytes, delete_markers=self.delete_markers,
                       version_keys=self.version_keys, version_examples=self.version_examples)
        return out


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
    left_out: list[LeftOut] = field(default_factory=list)  # per bucket, only where something is
    # entries of versioned buckets whose older versions stay behind (`versions: current`)
    versions_left: list[dict[str, Any]] = field(default_factory=list)

    def fingerprint(self) -> dict[str, Any]:
        """What `move plan.json` compares to detect that the source changed since."""
        return {
            "buckets": {b.step_id.removeprefix("s3:"): b.digest() for b in self.buckets},
            "parameters": {p.spec.path: sorted([i.name, i.version] for i in p.items) for p in self.parameters},
            "secrets": {s.spec.name: s.item.version for s in self.secrets},
        }

    def fingerprint_digest(self, fingerprint: dict[str, Any] | None = None) -> str:
        """The fingerprint's hash; pass the fingerprint when it is at hand, so a million
        objects are not hashed twice."""
        fp = self.fingerprint() if fingerprint is None else fingerprint
        return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()


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
LIST_MAX_SPLIT = 256  # more prefixes than this at one level: list their parents whole instead ...
LIST_MAX_DENSE = 10000  # ... unless there are at most this many and they are dense:
LIST_DENSE = 200  # a sample of LIST_SAMPLE of them holds at least this many keys each
LIST_SAMPLE = 4


def _dense(pool: ThreadPoolExecutor, page_entries: Any, subs: list[str]) -> bool:
    """Whether prefixes look big enough that one listing each beats one serial walk
    (1,000 directories of 1,000 keys: 1,000 requests side by side, not 1,000 in a row;
    100,000 users' few files each: one walk). One page of LIST_SAMPLE of them decides."""
    step = max(1, len(subs) // LIST_SAMPLE)

    def keys(prefix: str) -> int:
        for page in page_entries(prefix, MaxKeys=LIST_DENSE):
            return len(page.get("Contents", ()))  # the first page is the sample
        return 0

    return min(pool.map(keys, subs[::step][:LIST_SAMPLE])) >= LIST_DENSE


def list_bucket(aws: Aws, spec: BucketSpec) -> BucketListing:
    """Every object under the entry's prefix (see list_prefix)."""
    return BucketListing(spec, list_prefix(aws, spec.bucket, spec.prefix), region=region_of(aws, spec.bucket))


def region_of(aws: Aws, bucket: str) -> str | None:
    """Where the bucket lives (one HeadBucket): AWS prices a bucket's egress by its own region."""
    return bucket_region(aws.client("s3"), bucket)


LEFT_OUT_EXAMPLES = 5


def versioning(aws: Aws, bucket: str) -> str:
    """"Enabled", "Suspended" (older versions may exist), "" (never versioned), or
    "unknown" when the credentials may list and read but not ask (s3:GetBucketVersioning
    is a permission of its own): the plan says it cannot tell rather than failing."""
    import botocore.exceptions  # asked only with a bucket to read: botocore is loaded for it anyway

    try:
        return str(aws.client("s3").get_bucket_versioning(Bucket=bucket).get("Status") or "")
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("AccessDenied", "NotImplemented", "MethodNotAllowed", "403", "501"):
            return "unknown"
        raise translate(exc, f"s3://{bucket} versioning") from exc
    except Exception as exc:
        raise translate(exc, f"s3://{bucket} versioning") from exc


def list_versions(aws: Aws, bucket: str, group: list[BucketSpec],
                  outside: LeftOut | None = None) -> dict[BucketSpec, tuple[list[ObjectInfo], list[dict[str, Any]]]]:
    """The older (noncurrent) versions and the delete markers of a bucket, one
    ListObjectVersions pass, split between the entries like the current objects. Those of
    keys no entry's prefix covers are counted into `outside` (when given): never moved."""
    out: dict[BucketSpec, tuple[list[ObjectInfo], list[dict[str, Any]]]] = {spec: ([], []) for spec in group}
    if outside is not None:
        outside.versioned = True
    for page in _pages(aws.client("s3"), "list_object_versions", f"s3://{bucket} versions", Bucket=bucket):
        keys_outside: list[str] = []
        for v in page.get("Versions", ()):
            if v.get("IsLatest"):
                continue  # the current object: counted by the listing of current objects
            owner = owner_of(v["Key"], group)
            if owner is not None:
                vid = str(v.get("VersionId") or "null")
                out[owner][0].append(ObjectInfo(version_key(v["Key"], vid), int(v["Size"]), str(v.get("ETag", "")).strip('"'),
                                                _epoch(v.get("LastModified"))))
            elif outside is not None:
                outside.versions += 1
                outside.versions_bytes += int(v["Size"])
                keys_outside.append(v["Key"])
        for m in page.get("DeleteMarkers", ()):
            owner = owner_of(m["Key"], group)
            if owner is not None:
                out[owner][1].append({"key": m["Key"], "version_id": str(m.get("VersionId") or "null"),
                                      "last_modified": _epoch(m.get("LastModified")), "latest": bool(m.get("IsLatest"))})
            elif outside is not None:
                outside.delete_markers += 1
                keys_outside.append(m["Key"])
        if outside is not None and keys_outside:
            outside.add_version_keys(keys_outside)
    for objs, markers in out.values():
        objs.sort(key=lambda o: o.key)
        markers.sort(key=lambda m: (m["key"], m["version_id"]))
    return out


def list_buckets(aws: Aws, specs: tuple[BucketSpec, ...]) -> tuple[list[BucketListing], list[LeftOut]]:
    """One listing per bucket, however many entries name it, split between the entries
    by their prefixes: a key belongs to the entry with the longest prefix it starts
    with (config.owner_of), so nested entries never move a key twice. What no prefix
    covers is counted as left out. A bucket listed only bucket-wide leaves nothing out."""
    groups: dict[str, list[BucketSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.bucket, []).append(spec)
    found: dict[BucketSpec, list[ObjectInfo]] = {}
    regions: dict[str, str | None] = {}
    left: list[LeftOut] = []
    for bucket, group in groups.items():
        parts: dict[BucketSpec, list[ObjectInfo]] = {spec: [] for spec in group}
        out = LeftOut(bucket, [spec.prefix for spec in group])
        # The whole bucket, even when every entry names a prefix: what lies outside them
        # must be counted to be reported (issue 15: robots.txt left behind silently).
        report = next((spec.inventory for spec in group if spec.inventory), "")
        if report:  # an S3 Inventory report instead of ListObjects (sources/s3inventory.py)
            from relocate.sources.s3inventory import inventory_objects

            listed = inventory_objects(aws, report, bucket)
        else:
            listed = list_prefix(aws, bucket, "")
        for o in listed:
            owner = owner_of(o.key, group)
            if owner is not None:
                parts[owner].append(o)
            else:
                out.count += 1
                out.bytes += o.size
                if len(out.examples) < LEFT_OUT_EXAMPLES:
                    out.examples.append(o.key)
        found.update(parts)
        regions[bucket] = region_of(aws, bucket)
        if out.count:
            left.append(out)
    return [BucketListing(spec, found[spec], region=regions[spec.bucket]) for spec in specs], left


def take_versions(aws: Aws, specs: tuple[BucketSpec, ...],
                  regions: dict[str, str | None] | None = None,
                  left_out: list[LeftOut] | None = None) -> tuple[list[BucketListing], list[dict[str, Any]]]:
    """Per versioned bucket: a "versions" listing for each `versions: all` entry, and what
    the `versions: current` entries leave behind (count and bytes, for the plan).

    `regions` ({bucket: region}, from the current objects' listings): older versions are
    sent from the same bucket, so they are priced in the same region; a bucket missing
    from it is asked (one HeadBucket), never left unknown (unknown is priced dearest).

    `left_out` (list_buckets' list, completed in place): the older versions and delete
    markers of keys outside every listed prefix are counted into the bucket's entry
    (one is added, in relocate.yaml's bucket order, where only they lie outside)."""
    regions = dict(regions or {})
    groups: dict[str, list[BucketSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.bucket, []).append(spec)
    listings: list[BucketListing] = []
    left: list[dict[str, Any]] = []
    for bucket, group in groups.items():
        status = versioning(aws, bucket)
        if not status:
            continue
        if status == "unknown" and not any(spec.versions == "all" for spec in group):
            left.append({"bucket": bucket, "prefix": "", "status": status, "versions": 0, "bytes": 0, "delete_markers": 0})
            continue
        outside: LeftOut | None = None
        if left_out is not None:
            outside = next((o for o in left_out if o.bucket == bucket), None) or LeftOut(bucket, [spec.prefix for spec in group])
        for spec, (objs, markers) in list_versions(aws, bucket, group, outside).items():
            if spec.versions == "all":
                if bucket not in regions:
                    regions[bucket] = region_of(aws, bucket)
                listings.append(BucketListing(spec, objs, kind="versions", delete_markers=markers, region=regions[bucket]))
            elif objs or markers:
                left.append({"bucket": bucket, "prefix": spec.prefix, "status": status, "versions": len(objs),
                             "bytes": sum(o.size for o in objs), "delete_markers": len(markers)})
        if left_out is not None and outside is not None and outside.anything and not any(o is outside for o in left_out):
            left_out.append(outside)
    if left_out is not None:
        order = {bucket: i for i, bucket in enumerate(groups)}
        left_out.sort(key=lambda o: order.get(o.bucket, len(order)))
    return listings, left


def list_prefix(aws: Aws, bucket: str, prefix: str) -> list[ObjectInfo]:
    """Every object under the prefix, sorted by key, with no per-object calls.

    A listing is 1,000 keys a request, one request after the other: a million keys is a
    thousand round trips. When the keys look like a tree, relocate lists it the way rclone
    walks one: the first levels with a "/" delimiter until it has LIST_FANOUT prefixes,
    then each prefix in full, side by side. A flat bucket costs the one pass it always
    did; a level of very many small "directories" (one per user, say) is listed whole
    rather than one request per directory."""
    s3 = aws.client("s3")
    what = f"s3://{bucket}/{prefix}"

    def page_entries(prefix: str, **kw: Any) -> Iterator[dict[str, Any]]:
        return _pages(s3, "list_objects_v2", what, Bucket=bucket, Prefix=prefix, **kw)

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
    level = [prefix]
    with ThreadPoolExecutor(LIST_FANOUT, thread_name_prefix="s3-list") as pool:
        for _ in range(LIST_DEPTH):
            if len(level) >= LIST_FANOUT:
                break
            found = list(pool.map(one_level, level))
            subs_all = [sub for _, subs in found for sub in subs]
            if len(subs_all) > LIST_MAX_SPLIT:
                if len(subs_all) <= LIST_MAX_DENSE and _dense(pool, page_entries, subs_all):
                    # many "directories", each worth a request (a sample of them holds
                    # LIST_DENSE keys or more): listed side by side after all
                    for objs, _ in found:
                        objects.extend(objs)
                    level = subs_all
                break  # else `level` is listed whole below, its direct objects included
            for objs, subs in found:
                objects.extend(objs)
            level = [sub for _, subs in found for sub in subs]
        for objs in pool.map(whole, level):
            objects.extend(objs)
    objects.sort(key=lambda o: o.key)
    return objects


def list_range(aws: Aws, spec: BucketSpec, group: list[BucketSpec], start: str | None, end: str | None,
               start_after: str | None = None) -> Iterator[ObjectInfo]:
    """A shard's keys, streamed in key order: the keys of `spec` (the entry owning them
    among the bucket's `group`, config.owner_of) in [start, end). One ListObjectsV2 walk
    from StartAfter=`start_after` (just below `start`), which stops at `end`: a worker
    never lists another shard's range, and never holds more than a page."""
    if start is None:  # an empty shard
        return
    kw: dict[str, Any] = {"Bucket": spec.bucket, "Prefix": spec.prefix}
    if start_after and start_after > spec.prefix:
        kw["StartAfter"] = start_after
    for page in _pages(aws.client("s3"), "list_objects_v2", f"s3://{spec.bucket}/{spec.prefix}", **kw):
        for o in page.get("Contents", ()):
            key = o["Key"]
            if end is not None and key >= end:
                return
            if key >= start and owner_of(key, group) == spec:
                yield _object(o)


def first_owned_after(aws: Aws, spec: BucketSpec, group: list[BucketSpec], after: str) -> str | None:
    """The first key of `spec` greater than `after` that starts with `after` (keymap.chunk_paths:
    does a key at a chunk's end have "children"?), or None."""
    kw: dict[str, Any] = {"Bucket": spec.bucket, "Prefix": after, "StartAfter": after}
    for page in _pages(aws.client("s3"), "list_objects_v2", f"s3://{spec.bucket}/{after}", **kw):
        for o in page.get("Contents", ()):
            if owner_of(o["Key"], group) == spec:
                return str(o["Key"])
    return None


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
    buckets, left_out = list_buckets(aws, config.s3)
    # the older versions and delete markers outside every prefix join `left_out` (stay behind, said)
    versions, versions_left = take_versions(aws, config.s3, {b.spec.bucket: b.region for b in buckets}, left_out)
    return Inventory(
        buckets=buckets + versions,
        left_out=left_out,
        versions_left=versions_left,
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
