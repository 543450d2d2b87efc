"""The sample app `relocate demo` moves: "townsquare", seeded into a moto server.

Everything is deterministic (a seeded RNG), so two demo runs, or a test and the
demo, see the same bytes. The seeded secret values are returned so tests can
grep relocate's output, logs and plan files for leaks.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import boto3
import yaml
from botocore.config import Config

if TYPE_CHECKING:
    from relocate.demo.sshserver import EmbeddedSshd

APP_NAME = "townsquare"
BUCKET = "townsquare-media"
PARAMETER_PATH = "/townsquare/prod/"
SECRET_NAME = "townsquare/prod/api"
RNG_SEED = 20210110  # the day the seed case's cloud said "tomorrow"

N_AVATARS = 120
N_POSTS = 170
BIG_KEY = "video/launch.mp4"
BIG_BYTES = 6 * 1024 * 1024
UPLOAD_THREADS = 8


@dataclass(frozen=True)
class SampleObject:
    key: str
    body: bytes = field(repr=False)
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleApp:
    """What was seeded. `secret_values` must never appear in relocate's output."""

    bucket: str
    object_count: int
    total_bytes: int
    parameter_path: str
    parameter_names: tuple[str, ...]
    secret_name: str
    secret_values: tuple[str, ...] = field(repr=False)  # repr=False: no leaks via test logs


def _png(rng: random.Random) -> bytes:
    # A PNG signature and random filler: looks like an image to `file`, costs nothing.
    return b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.randint(512, 6 * 1024))


def _post(rng: random.Random, n: int, user: int) -> bytes:
    words = ["moved", "servers", "tonight", "backup", "hello", "speech", "town", "square"]
    text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 60)))
    return json.dumps({"id": f"p{n}", "author": f"u{user}", "text": text}).encode()


def sample_objects(seed: int = RNG_SEED) -> Iterator[SampleObject]:
    """The bucket's contents: nested keys, some content types and user metadata,
    plus one multi-MiB object so transfers show progress."""
    rng = random.Random(seed)
    for u in range(N_AVATARS):
        user = 100 + u
        meta = {"uploaded-by": f"u{user}"} if u % 10 == 0 else {}
        yield SampleObject(f"avatars/u{user}.png", _png(rng), "image/png", meta)
    for n in range(1, N_POSTS + 1):
        month, day = 1 + n % 12, 1 + n % 28
        key = f"posts/{2019 + n % 3}/{month:02d}/{day:02d}/p{n}.json"
        yield SampleObject(key, _post(rng, n, 100 + n % N_AVATARS), "application/json")
    yield SampleObject("index.html", b"<!doctype html><title>townsquare</title>\n", "text/html")
    yield SampleObject("robots.txt", b"User-agent: *\nDisallow:\n")  # no content type on purpose
    yield SampleObject("exports/2021-01-09/users.csv",
                       b"id,name\n" + b"".join(b"u%d,user %d\n" % (i, i) for i in range(100, 220)),
                       "text/csv", {"export-run": "2021-01-09T23:00:00Z"})
    yield SampleObject("legal/terms of service.txt", b"Be kind.\n", "text/plain")  # a space in a key
    yield SampleObject("emoji/\u2603.txt", "snow \u2603\n".encode(), "text/plain; charset=utf-8")
    yield SampleObject(BIG_KEY, rng.randbytes(BIG_BYTES), "video/mp4",
                       {"duration-s": "94", "uploaded-by": "u100"})


def _parameters() -> list[tuple[str, str, str]]:
    """(name, type, value): each SSM type once, and a nested path."""
    return [
        (PARAMETER_PATH + "db_host", "String", "10.0.3.17"),
        (PARAMETER_PATH + "db_name", "String", "townsquare"),
        (PARAMETER_PATH + "allowed_origins", "StringList",
         "https://townsquare.example,https://www.townsquare.example"),
        (PARAMETER_PATH + "smtp/host", "String", "smtp.townsquare.example"),
        (PARAMETER_PATH + "db_password", "SecureString", "demo-db-pw-9f1c27d4e8b3"),
    ]


SECRET_VALUE = {
    "stripe_key": "sk_demo_4b1d9e0c7a6f52e3",
    "jwt_secret": "demo-jwt-8c3f5a1e9d7b60f2",
}


def _session(region: str) -> boto3.Session:
    # Explicit dummy credentials: the demo must never pick up a user's real AWS profile.
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                         aws_session_token="testing", region_name=region)


def _client(session: boto3.Session, service: str, endpoint_url: str) -> Any:
    config = Config(retries={"mode": "standard"}, max_pool_connections=UPLOAD_THREADS * 2)
    return session.client(service, endpoint_url=endpoint_url, config=config)


def _put(s3: Any, obj: SampleObject) -> None:
    extra: dict[str, Any] = {}
    if obj.content_type:
        extra["ContentType"] = obj.content_type
    if obj.metadata:
        extra["Metadata"] = obj.metadata
    s3.put_object(Bucket=BUCKET, Key=obj.key, Body=obj.body, **extra)


def _seed_bucket(s3: Any, region: str) -> tuple[int, int]:
    if region == "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
        s3.create_bucket(Bucket=BUCKET)
    else:
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": region})
    objects = list(sample_objects())
    # A few threads: ~300 sequential round trips would make the demo start sluggishly.
    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        list(pool.map(lambda o: _put(s3, o), objects))
    return len(objects), sum(len(o.body) for o in objects)


def seed_sample_app(endpoint_url: str, region: str = "us-east-1") -> SampleApp:
    """Fill the AWS-compatible endpoint (a moto server) with townsquare's data."""
    session = _session(region)
    count, total = _seed_bucket(_client(session, "s3", endpoint_url), region)

    ssm = _client(session, "ssm", endpoint_url)
    params = _parameters()
    for name, type_, value in params:
        ssm.put_parameter(Name=name, Type=type_, Value=value, Overwrite=True)

    _client(session, "secretsmanager", endpoint_url).create_secret(
        Name=SECRET_NAME, SecretString=json.dumps(SECRET_VALUE))

    secure = tuple(v for _, t, v in params if t == "SecureString")
    return SampleApp(
        bucket=BUCKET, object_count=count, total_bytes=total,
        parameter_path=PARAMETER_PATH, parameter_names=tuple(n for n, _, _ in params),
        secret_name=SECRET_NAME, secret_values=secure + tuple(SECRET_VALUE.values()),
    )


def demo_config(*, endpoint_url: str, target: "EmbeddedSshd", root: Path,
                known_hosts: Path, region: str = "us-east-1") -> dict[str, Any]:
    """The demo's relocate.yaml as data (the loader owns the schema; this follows it)."""
    return {
        "version": 1,
        "app": {"name": APP_NAME, "content": ["user_generated_content"]},
        "source": {
            "aws": {"region": region, "endpoint_url": endpoint_url},
            "s3": [{"bucket": BUCKET, "prefix": "", "to": "data/media"}],
            "parameters": [{"path": PARAMETER_PATH, "to": "shared/app.env"}],
            "secrets": [{"name": SECRET_NAME, "to": "shared/app.env"}],
        },
        "target": {
            "provider": "hetzner",
            "ssh": {
                "host": target.host, "port": target.port, "user": target.user,
                "identity_file": str(target.identity_file),
                "host_key": target.host_key_fingerprint,
                "known_hosts": str(known_hosts),
            },
            "root": str(root),
        },
    }


def write_demo_config(path: Path, *, endpoint_url: str, target: "EmbeddedSshd",
                      root: Path, known_hosts: Path) -> None:
    """Write relocate.yaml for the demo: moto as the source, the embedded sshd as the target."""
    data = demo_config(endpoint_url=endpoint_url, target=target, root=root, known_hosts=known_hosts)
    header = "# Written by `relocate demo`: a sample app on a local moto server, moved to a local SSH server.\n"
    Path(path).write_text(header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))
