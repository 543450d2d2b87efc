"""The S3 data path: object bodies read through obstore, boto3 kept for the control plane.

Why two clients: listing, HEAD and credentials stay with boto3 (sources/aws.py, its
read-only guard), but boto3 costs ~2.5 ms of Python per GET, which decides the
10,000-small-object case (4x slower than rclone here). obstore (Rust object_store
behind a thin binding) does the GET natively and matched rclone on tiny objects.

What obstore gives back, checked against moto and SeaweedFS (DESIGN.md "Measured
here"): `GetResult.attributes` holds Content-Type and every user metadata field
(`x-amz-meta-*`, keys lower-cased exactly as boto3's `Metadata`), so nothing needs a
second request. Standard HTTP attributes (Cache-Control, Content-Encoding, ...) are
not recorded, as before.

Keys object_store cannot address exactly fall back to boto3's get_object:
`a//b`, `.`/`..` segments and control characters are refused by its Path parser,
and worse, `/abs` and `tr/` are silently trimmed to `abs` and `tr` (another object!).
`_native_ok` keeps all of those on boto3; the size and ETag of every body are also
compared with the listing.

Read-only: this module only ever calls `obstore.get`; no write method of the
store is reachable from relocate.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import obstore
import obstore.exceptions as oe
from obstore.store import S3Store

from relocate.errors import RelocateError, SourceError, TransientError
from relocate.sources.aws import Aws, translate

CHUNK = 1024 * 1024
_STANDARD_ATTRS = {"content-disposition", "content-encoding", "content-language", "content-type",
                   "cache-control", "storage-class"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _native_ok(key: str) -> bool:
    """True when object_store's Path round-trips this key unchanged."""
    if not key or key.startswith("/") or key.endswith("/") or _CONTROL.search(key):
        return False
    return all(seg not in ("", ".", "..") for seg in key.split("/"))


@dataclass
class Body:
    """One object's content: either whole (`data`) or a chunk iterator (`chunks`)."""

    key: str
    size: int
    etag: str
    content_type: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    data: memoryview | None = None
    chunks: Iterator[Any] | None = None
    close: Any = None

    def iter_chunks(self) -> Iterator[memoryview]:
        if self.data is not None:
            for i in range(0, len(self.data), CHUNK):
                yield self.data[i:i + CHUNK]
            return
        assert self.chunks is not None
        for chunk in self.chunks:
            yield memoryview(chunk)


def _credentials(aws: Aws) -> Any:
    """An obstore credential provider backed by the boto3 session (refreshing creds work)."""
    creds = aws.session.get_credentials()
    if creds is None:
        raise SourceError("no AWS credentials found", hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")

    def provide() -> dict[str, Any]:
        frozen = creds.get_frozen_credentials()
        expiry = getattr(creds, "_expiry_time", None)
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key,
                "token": frozen.token, "expires_at": expiry if isinstance(expiry, dt.datetime) else None}

    return provide


class ObjectReader:
    """GETs of one bucket's objects: obstore when the key allows, boto3 otherwise."""

    def __init__(self, aws: Aws, bucket: str) -> None:
        self.bucket = bucket
        self.s3 = aws.client("s3")
        spec = aws.spec
        kw: dict[str, Any] = {"region": spec.region or aws.session.region_name or "us-east-1"}
        # The endpoint boto3 actually resolved (relocate.yaml, or AWS_ENDPOINT_URL_S3 and
        # friends): obstore reads env vars of its own, and must not disagree with boto3.
        endpoint = spec.endpoint_url or self.s3.meta.endpoint_url
        if spec.endpoint_url or not re.search(r"\.amazonaws\.com(\.cn)?(:\d+)?$", endpoint.split("/")[2] if "//" in endpoint else ""):
            kw.update(endpoint=endpoint, virtual_hosted_style_request=False)
        # `timeout` covers the whole body (obstore's default 30 s, or any fixed figure, would
        # fail a 5 GiB object on a slow link); a stalled S3 read is caught per read instead.
        options: dict[str, Any] = {"connect_timeout": "10s", "timeout": "48h", "read_timeout": "60s",
                                   "allow_http": endpoint.startswith("http://")}
        # obstore retries 5xx/throttling itself with backoff, like botocore's standard mode.
        retry = {"max_retries": 6, "retry_timeout": dt.timedelta(minutes=3),
                 "backoff": {"init_backoff": dt.timedelta(milliseconds=200), "max_backoff": dt.timedelta(seconds=15), "base": 2}}
        self.store = S3Store(bucket, client_options=options, retry_config=retry,  # type: ignore[arg-type]
                             credential_provider=_credentials(aws), **kw)

    def get(self, key: str, size: int, etag: str, whole: bool) -> Body:
        """Open one object; `whole` reads it into memory (small objects), else streams it."""
        what = f"s3://{self.bucket}/{key}"
        if not _native_ok(key):
            return self._get_boto(key, size, whole, what)
        try:
            res = obstore.get(self.store, key)
            meta = res.meta
            if meta["path"] != key:  # belt and braces for the trimming described above
                return self._get_boto(key, size, whole, what)
            attrs = dict(res.attributes)
            got_etag = str(meta.get("e_tag") or "").strip('"')
            if etag and got_etag and got_etag != etag:
                raise TransientError(f"{what} changed since it was listed", hint="running again moves the new version")
            body = Body(key, int(meta["size"]), got_etag, attrs.get("Content-Type"),
                        {k: v for k, v in attrs.items() if k.lower() not in _STANDARD_ATTRS})
            if whole:
                body.data = memoryview(res.bytes())
            else:
                body.chunks = iter(res.stream(min_chunk_size=CHUNK))
        except RelocateError:
            raise
        except Exception as exc:
            raise _translate(exc, what) from None
        return body

    def _get_boto(self, key: str, size: int, whole: bool, what: str) -> Body:
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=key)
            stream = resp["Body"]
            body = Body(key, int(resp.get("ContentLength", size)), str(resp.get("ETag", "")).strip('"'),
                        resp.get("ContentType"), dict(resp.get("Metadata") or {}))
            if whole:
                body.data = memoryview(stream.read())
            else:
                body.chunks = iter(lambda: stream.read(CHUNK), b"")
                body.close = stream.close
        except Exception as exc:
            raise translate(exc, what) from exc
        return body


def _translate(exc: BaseException, what: str) -> RelocateError:
    if isinstance(exc, (oe.NotFoundError, FileNotFoundError)):
        return TransientError(f"{what}: vanished since it was listed", hint="running again moves what is there now")
    if isinstance(exc, (oe.PermissionDeniedError, oe.UnauthenticatedError, PermissionError)):
        return SourceError(f"{what}: access denied ({exc})", hint="grant read access to these credentials")
    # Network errors, 5xx after obstore's own retries, timeouts: worth another go.
    first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return TransientError(f"{what}: {first}", hint="running again resumes")
