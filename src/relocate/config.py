"""relocate.yaml: its schema, its loader, and the typed view the rest of relocate reads.

The raw text is kept (not the interpolated values) so a saved plan can carry the
configuration without ever holding what `${ENV}` expanded to.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relocate import pathrules
from relocate.errors import ConfigError
from relocate.schema import Bool, Ctx, Dict, Either, Float, Int, List, Map, Optional_, Str, compose, environ, load_node
from relocate.ssh.via import SshSpec, ref_error, resolve_via, via_error

DEFAULT_FILE = "relocate.yaml"


def _relative_dest(value: str) -> str | None:
    """A `to:` must stay under target.root: relative, no `..`."""
    if value.startswith("/") or value.startswith("~"):
        return "must be a path relative to target.root (no leading / or ~)"
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return "must be a path inside target.root (no '..' segments)"
    return pathrules.dest_error(value)


def _absolute(value: str) -> str | None:
    if not value.startswith("/"):
        return "must be an absolute path on the target"
    return pathrules.path_error(value)


def _dir_mode(value: str) -> str | None:
    return None if re.fullmatch(r"0?[0-7]{3}", value) else 'must be an octal mode like "0700" (quoted)'


def _inventory_url(value: str) -> str | None:
    if not re.match(r"^s3://[^/]+/.+manifest\.json$", value):
        return "must be the s3:// address of an S3 Inventory manifest.json (s3://BUCKET/PATH/manifest.json)"
    return None


def _source_path(value: str) -> str | None:
    return None if value.startswith("/") else "must be an absolute path on the source host"


def _service_name(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,200}", value) else "must be letters, digits, '.', '_', '-' or '@'"


def _health_url(value: str) -> str | None:
    if not re.fullmatch(r"http://[^/\s:]+(:\d{1,5})?(/\S*)?", value):
        return "must be an http://host[:port]/path URL as seen from the target (checked through an SSH tunnel)"
    return None


def region_error(value: str) -> str | None:
    """botocore's own rule (a DNS label, not all digits), checked here so a typo is exit 2
    naming the field, not an InvalidRegionError from the first client built."""
    if re.fullmatch(r"(?![0-9]+$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)", value):
        return None
    return f"must be a region name like us-east-1 (letters, digits and '-', at most 63) (got {value!r})"


def endpoint_error(value: str) -> str | None:
    """An http(s) URL with a host, as botocore requires of endpoint_url (else its
    "Invalid endpoint" ValueError when the first client is built)."""
    import ipaddress
    from urllib.parse import urlsplit

    bad = f"must be an http:// or https:// URL with a host, like http://127.0.0.1:9000 (got {value!r})"
    if re.search(r"\s", value):
        return bad
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return bad
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        return bad
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 255 or not all(re.fullmatch(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", label) for label in labels):
        return bad
    return None


def _fingerprint(value: str) -> str | None:
    return None if value.startswith("SHA256:") else "must be an OpenSSH fingerprint like SHA256:AbC... (see `ssh-keygen -lf`)"


def _password_from(value: str) -> str | None:
    """Where a database password comes from; never the value itself (it would sit in the YAML)."""
    kind, sep, rest = value.partition(":")
    if not sep or kind not in ("secret", "ssm", "env") or not rest:
        return "must be secret:NAME#json_key, secret:NAME, ssm:/parameter/name or env:VARIABLE"
    return None


def _database_url(value: str) -> str | None:
    """A database URL names where, never the password: relocate.yaml's text is saved in
    plan.json and shown by `plan --json`, so a password written here would travel with it."""
    from urllib.parse import urlsplit

    try:
        password = urlsplit(value).password
    except ValueError:
        return None  # a malformed URL is reported with its own words where it is parsed
    if password is not None:
        return "holds a password; name where it comes from instead with password_from: env:VAR, secret:NAME#key or ssm:/name"
    return None


def _relative_dest_any(value: str) -> str | None:
    """A path under the root that may also be inside .relocate (checked further by pathrules.allow_errors)."""
    err = _relative_dest(value)
    return None if err and "state directory" in err else err


PRIORITY = ("critical", "normal", "bulk")
VERSIONS = ("current", "all")

SSH_SPEC = Map(
    {
        "host": Str(check=pathrules.host_error),
        "port": Int(min=1, max=65535),
        "user": Str(),
        "identity_file": Str(),
        "host_key": Str(check=_fingerprint),
        "known_hosts": Str(),
        "jump": Str(),
    },
    required=("host",),
)

# `ssh:` of a source host (and its `via:` bastion): the short string or target.ssh's mapping.
SSH_REF = Either(Str(check=ref_error), SSH_SPEC)
# `via:` (source.hosts, source.databases): a bastion name or an SSH address, checked
# against source.bastions by check_places (ssh/via.py: the one grammar and resolver).
VIA = Either(Str(), SSH_SPEC)

SCHEMA = Map(
    {
        "version": Int(min=1, max=1),
        "app": Map(
            {
                "name": Str(),
                "content": List(Str()),
                "moderation": Map(
                    {
                        "moderators": Int(min=0),
                        "report_response_hours": Float(min=0),
                        "automated_filtering": Bool(),
                        "published_rules": Bool(),
                        "notice_channel": Bool(),
                        "daily_active_users": Int(min=0),
                        "posts_per_day": Int(min=0),
                    }
                ),
                "dependencies": Dict(Str()),
            },
            required=("name",),
        ),
        "source": Map(
            {
                "aws": Map(
                    {
                        "region": Str(check=region_error),
                        "profile": Optional_(Str()),
                        "endpoint_url": Optional_(Str(check=endpoint_error)),
                    },
                    defaults={"region": "us-east-1"},
                ),
                "s3": List(
                    Map(
                        {
                            "bucket": Str(),
                            "prefix": Str(nonempty=False),
                            "to": Str(check=_relative_dest),
                            "priority": Str(choices=PRIORITY),
                            # objects land at <to>/<key without the prefix> instead of <to>/<key>
                            "strip_prefix": Bool(),
                            # current: the latest version of each key; all: older versions and
                            # delete markers too (README, "Versioned buckets")
                            "versions": Str(choices=VERSIONS),
                            # an S3 Inventory report's manifest.json (s3://bucket/path/manifest.json),
                            # read as the bucket's listing instead of ListObjects (README, "Shards")
                            "inventory": Str(check=_inventory_url),
                        },
                        required=("bucket", "to"),
                        defaults={"prefix": "", "priority": "normal", "strip_prefix": False, "versions": "current"},
                    )
                ),
                "parameters": List(Map({"path": Str(), "to": Str(check=_relative_dest)}, required=("path", "to"))),
                "secrets": List(Map({"name": Str(), "to": Str(check=_relative_dest)}, required=("name", "to"))),
                "databases": List(
                    Map(
                        {
                            "rds": Str(),
                            "url": Str(check=_database_url),
                            "engine": Str(choices=("postgres", "mysql", "mariadb")),
                            "password_from": Str(check=_password_from),
                            # an SSH bastion: a name under source.bastions, `user@host:port` or a mapping
                            "via": VIA,
                            "name": Str(),  # the database to move (default: the RDS DBName / the URL's path)
                            "user": Str(),  # default: the URL's user / the RDS master user
                            # connect here instead of the RDS endpoint (host or host:port), e.g. a private alias
                            "endpoint": Str(),
                            "jobs": Int(min=1, max=32),  # parallel pg_dump/pg_restore workers
                        },
                        one_of=("rds", "url"),
                    )
                ),
                "hosts": List(
                    Map(
                        {"ssh": SSH_REF, "paths": List(Str(check=_source_path), min_items=1), "to": Str(check=_relative_dest),
                         "exclude": List(Str()), "via": VIA},
                        required=("ssh", "paths", "to"),
                    )
                ),
                "dns": List(Map({"zone": Str()}, required=("zone",))),
                # named SSH hosts that `via:` may refer to (jump hosts into a private subnet)
                "bastions": Dict(SSH_SPEC),
            },
            defaults={"aws": lambda: {"region": "us-east-1", "profile": None, "endpoint_url": None}},
        ),
        "target": Map(
            {
                "provider": Str(),
                "ssh": SSH_SPEC,
                "root": Str(check=_absolute),
                "database": Map({"engine": Str(choices=("postgres", "mysql", "mariadb")), "url": Str(check=_database_url),
                                 "password_from": Str(check=_password_from)}),
                # install what the move and the runtime need (kinds/packages.py)
                "prepare": Bool(),
                "packages": List(Str()),  # extra distribution packages the app needs, installed by prepare
                # links under root that relocate may write through (nolinks.py; every other one is refused)
                "allow_symlinks": List(Str(check=_relative_dest_any)),
                # the env files' directories (shared/): 0700 unless set here
                "env_dir_mode": Str(check=_dir_mode),
            },
            required=("ssh", "root"),
        ),
        # Checked further (which keys each runtime needs) by kinds/deploy.py settings().
        "deploy": Map(
            {
                "runtime": Str(choices=("systemd", "compose", "command")),
                "release": Str(),  # a local directory or .tar/.tar.gz, relative to relocate.yaml
                "command": Str(),  # the app's foreground command (systemd ExecStart; command runtime runs it)
                "start": Str(),  # command runtime: the user's own start/stop/status instead of `command`
                "stop": Str(),
                "status": Str(),
                "log_file": Str(check=_relative_dest),  # under root; command runtime's log (shared/log/app.log)
                "compose_file": Str(),  # compose runtime: relative to the release
                "service": Str(check=_service_name),  # systemd unit / compose project name (default app.name)
                "env_file": Str(check=_relative_dest),  # under root (default: the first env file moved)
                "keep_releases": Int(min=1, max=100),
                "health": Map({"url": Str(check=_health_url), "timeout_s": Float(min=0)}, required=("url",),
                              defaults={"timeout_s": 60.0}),
            },
            required=("runtime",),
            defaults={"keep_releases": 5},
        ),
        "snapshot": Map(
            {"dir": Str(), "key_file": Str()},
            defaults={"dir": ".relocate/snapshots", "key_file": ".relocate/age.key"},
        ),
    },
    required=("version", "target"),
)


@dataclass(frozen=True)
class BucketSpec:
    bucket: str
    prefix: str
    to: str
    priority: str = "normal"
    strip_prefix: bool = False  # <to>/<key minus prefix> instead of <to>/<key>
    versions: str = "current"  # current | all (older versions and delete markers too)
    inventory: str = ""  # s3://.../manifest.json: an S3 Inventory report read as the listing (sources/s3inventory.py)

    @property
    def strip(self) -> str:
        """What is cut off the front of every key before it becomes a path."""
        return self.prefix if self.strip_prefix else ""


@dataclass(frozen=True)
class ParamSpec:
    path: str
    to: str


@dataclass(frozen=True)
class SecretSpec:
    name: str
    to: str


@dataclass(frozen=True)
class AwsSpec:
    region: str = "us-east-1"
    profile: str | None = None
    endpoint_url: str | None = None


@dataclass(frozen=True)
class AppSpec:
    name: str
    content: tuple[str, ...] = ()
    moderation: dict[str, Any] | None = None
    dependencies: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    path: Path
    text: str  # raw, uninterpolated: safe to store in a plan file
    app: AppSpec
    aws: AwsSpec
    s3: tuple[BucketSpec, ...]
    parameters: tuple[ParamSpec, ...]
    secrets: tuple[SecretSpec, ...]
    ssh: SshSpec
    root: str
    provider: str | None
    snapshot_dir: Path
    key_file: Path
    data: dict[str, Any]  # the whole validated document, for sections other modules own

    @property
    def target_jump(self) -> SshSpec | None:
        """target.ssh.jump: the bastion the target is reached through (like `ssh -J`),
        resolved as every `via:` is (ssh/via.py); None when the target is dialled directly."""
        bastions = (self.data.get("source") or {}).get("bastions")
        return resolve_via(self.ssh.jump, bastions) if self.ssh.jump else None

    @property
    def allowed_links(self) -> tuple[str, ...]:
        """target.allow_symlinks as absolute paths on the target (targets/nolinks.py)."""
        return tuple(posixpath.join(self.root, _norm(p)) for p in (self.data["target"].get("allow_symlinks") or ()))

    @property
    def env_dir_mode(self) -> int:
        return int(self.data["target"].get("env_dir_mode") or "0700", 8)

    @property
    def env_files(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for to in [p.to for p in self.parameters] + [s.to for s in self.secrets]:
            seen[_norm(to)] = None
        return tuple(seen)


def _norm(rel: str) -> str:
    return posixpath.normpath(rel).lstrip("/")


def parse_config(text: str, path: Path, env: dict[str, str] | None = None) -> Config:
    source = str(path)  # as given (`-f /dev/null` is not "null"); the default is plain relocate.yaml
    ctx = Ctx(source=source, env=env if env is not None else environ())
    data = load_node(compose(text, source), SCHEMA, ctx)
    check_places(data, ctx)
    base = path.resolve().parent
    app = data.get("app") or {"name": path.resolve().parent.name, "content": [], "moderation": None, "dependencies": {}}
    src = data.get("source") or {}
    aws = src.get("aws") or {}
    target = data["target"]
    snap = data["snapshot"] or {"dir": ".relocate/snapshots", "key_file": ".relocate/age.key"}
    s3 = tuple(BucketSpec(b["bucket"], b["prefix"] or "", _norm(b["to"]), b["priority"] or "normal",
                          bool(b.get("strip_prefix")), b.get("versions") or "current", b.get("inventory") or "")
               for b in src.get("s3") or [])
    dests = [b.to for b in s3]
    for item in src.get("parameters") or []:
        dests.append(_norm(item["to"]))
    # Two buckets into one directory would make their keys collide silently.
    bucket_dirs = [b.to for b in s3]
    if len(set(bucket_dirs)) != len(bucket_dirs):
        raise ConfigError(f"{source}: source.s3: two buckets share one `to:` directory; give each its own")
    check_bucket_prefixes(s3, source)
    return Config(
        path=path,
        text=text,
        app=AppSpec(
            name=app["name"],
            content=tuple(app.get("content") or ()),
            moderation=app.get("moderation"),
            dependencies=dict(app.get("dependencies") or {}),
        ),
        aws=AwsSpec(region=aws.get("region") or "us-east-1", profile=aws.get("profile"), endpoint_url=aws.get("endpoint_url")),
        s3=s3,
        parameters=tuple(ParamSpec(p["path"], _norm(p["to"])) for p in src.get("parameters") or []),
        secrets=tuple(SecretSpec(s["name"], _norm(s["to"])) for s in src.get("secrets") or []),
        ssh=SshSpec(**{k: v for k, v in target["ssh"].items()}),
        root=posixpath.normpath(target["root"]),
        provider=target.get("provider"),
        snapshot_dir=_local_path(base, snap["dir"]),
        key_file=_local_path(base, snap["key_file"]),
        data=data,
    )


def check_bucket_prefixes(s3: tuple[BucketSpec, ...], source: str) -> None:
    """The rule for listing one bucket several times (README, "relocate.yaml").

    A bucket may be listed once per prefix, each entry with its own `to:` and priority;
    prefixes may nest (a bucket-wide entry plus `legal/`, say). Each key belongs to the
    one entry with the longest prefix it starts with, so no key is moved twice; what no
    entry's prefix covers is reported by `plan` and `verify`. The same prefix twice is
    refused: neither entry would be more specific. `strip_prefix: true` needs a prefix."""
    seen: dict[tuple[str, str], int] = {}
    for i, b in enumerate(s3):
        if b.strip_prefix and not b.prefix:
            raise ConfigError(f"{source}: source.s3[{i}].strip_prefix: needs a `prefix:` to strip ({b.bucket} has none)")
        first = seen.setdefault((b.bucket, b.prefix), i)
        if first != i:
            raise ConfigError(f"{source}: source.s3[{i}]: {b.bucket} is listed twice with the prefix {b.prefix!r} "
                              f"(also source.s3[{first}]); list each prefix once, a longer prefix to move part of it elsewhere")


def owner_of(key: str, specs: list[BucketSpec]) -> BucketSpec | None:
    """The entry a key of this bucket belongs to: the longest prefix it starts with."""
    best: BucketSpec | None = None
    for spec in specs:
        if key.startswith(spec.prefix) and (best is None or len(spec.prefix) > len(best.prefix)):
            best = spec
    return best


def check_places(data: dict[str, Any], ctx: Ctx) -> None:
    """Cross-entry checks of where things land and how hosts are reached (pathrules.py):
    exit 2 at load time, never a failed write on the target."""
    src = data.get("source") or {}
    for where, msg in pathrules.overlap_errors(data):
        ctx.report_path(where, msg)
    allowed = data["target"].get("allow_symlinks") or ()
    for i, msg in pathrules.allow_errors(allowed):
        ctx.report_path(f"target.allow_symlinks[{i}]", msg)
    hosts_to = {_norm(h["to"]) for h in src.get("hosts") or [] if h and h.get("to")}
    for i, link in enumerate(allowed):
        if _norm(link) in hosts_to:  # kinds/hostfiles.py replaces `to:` whole, link and all
            ctx.report_path(f"target.allow_symlinks[{i}]", "is a source.hosts `to:`, which is replaced whole; allow its parent instead")
    bastions = src.get("bastions") or {}
    jump = data["target"]["ssh"].get("jump")
    if jump and (err := via_error(jump, bastions)):
        ctx.report_path("target.ssh.jump", err)
    # One hop: only the target names a jump host; a source host names its bastion with via:.
    hops = [(f"source.bastions.{n}", b) for n, b in bastions.items()]
    for i, h in enumerate(src.get("hosts") or []):
        hops += [(f"source.hosts[{i}].{k}", (h or {}).get(k)) for k in ("ssh", "via")]
    hops += [(f"source.databases[{i}].via", (d or {}).get("via")) for i, d in enumerate(src.get("databases") or [])]
    for where, spec in hops:
        if isinstance(spec, dict) and spec.get("jump"):
            ctx.report_path(f"{where}.jump", "only target.ssh may name a jump host (a source host uses via:)")
    for section in ("hosts", "databases"):
        for i, entry in enumerate(src.get(section) or []):
            via = (entry or {}).get("via")
            if via and (err := via_error(via, bastions)):
                ctx.report_path(f"source.{section}[{i}].via", err)


def _local_path(base: Path, value: str) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base / p


def load_config(path: str | Path = DEFAULT_FILE, env: dict[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file (run `relocate init` to write one, or pass -f PATH)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    return parse_config(text, p, env)
