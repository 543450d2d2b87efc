"""The S3 data path: object bodies read natively, boto3 kept for the control plane.

Why not boto3 for bodies: listing, HEAD and credentials stay with boto3 (sources/aws.py,
its read-only guard), but boto3 costs ~2.5 ms of Python per GET, which decides the
10,000-small-object case (4x slower than rclone here). Two native clients share the work:

- Small bodies (up to WHOLE_BELOW), read whole ahead of their turn: one thread per
  reader driving keep-alive connections (sources/s3gets.py, `whole_reads`), ~65 us of
  CPU a GET (libcurl's multi handle, ~85 us, where an HTTP proxy is set). Every key goes through
  it as it is.
- Big bodies, streamed in CHUNK pieces when their turn comes, and `get` called directly:
  obstore (Rust object_store behind a thin binding), whose per-request cost (~270 us of
  CPU, a hand-off to tokio's threads and back) does not matter there.

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

Many objects: `ObjectReader.get_many` yields bodies in the caller's order while up to
N GETs run at once (`ReadAhead`). Bodies read ahead are bounded by a byte budget
(`ByteBudget`, shareable between calls); big objects are streamed when their turn comes,
never read ahead whole. With RELOCATE_S3_GETS=threads the small
bodies are read by `get` on a pool of N threads instead, as before: sync `obstore.get`
releases the GIL while Rust does the request. obstore's async API (`get_async` on one
asyncio loop thread) was measured against that pool and lost: ~200 us more CPU per GET.

Read-only: this module only ever calls `obstore.get`, boto3's `get_object` and
s3gets' GET; no write method of the store is reachable from relocate.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import botocore.exceptions  # needed at import: tests/test_purity.py uses this module as its positive control
import obstore
import obstore.exceptions as oe
from obstore.store import S3Store

from relocate.errors import RelocateError, SourceError, TransientError
from relocate.sources.aws import Aws, bucket_region, translate
from relocate.secret import Secret
from relocate.settings import GET_BACKOFF_S

if TYPE_CHECKING:
    from relocate.sources.inventory import ObjectInfo

CHUNK = 1024 * 1024
WHOLE_BELOW = 8 * 1024 * 1024  # get_many: bodies up to this size are read ahead whole, bigger ones streamed
BUDGET_BYTES = 64 * 1024 * 1024  # get_many: bodies read ahead of the consumer, at most
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
    """One object's content: either whole (`data`) or a chunk iterator (`chunks`).

    A whole body is one buffer, or the pieces libcurl handed over (sources/s3gets.py), kept
    as they came: joining a 256 KiB body's sixteen 16 KiB pieces into one buffer cost its
    GET thread ~0.3 ms (a fresh allocation, copied into, faulted in) with the GIL held,
    0.6 s of a move of 2,000 such objects; the lanes hash and send the pieces as they are."""

    key: str
    size: int
    etag: str
    content_type: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    data: memoryview | list[bytes] | None = None
    chunks: Iterator[Any] | None = None
    close: Any = None

    def iter_chunks(self) -> Iterator[memoryview | bytes]:
        if isinstance(self.data, list):
            yield from self.data
            return
        if self.data is not None:
            for i in range(0, len(self.data), CHUNK):
                yield self.data[i:i + CHUNK]
            return
        assert self.chunks is not None
        for chunk in self.chunks:
            yield memoryview(chunk)


def _boto_credentials(aws: Aws) -> Any:
    creds = aws.session.get_credentials()
    if creds is None:
        raise SourceError("no AWS credentials found", hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    return creds


def _credentials(aws: Aws) -> Any:
    """An obstore credential provider backed by the botocore session (refreshing creds work)."""
    creds = _boto_credentials(aws)

    def provide() -> dict[str, Any]:
        frozen = creds.get_frozen_credentials()
        expiry = getattr(creds, "_expiry_time", None)
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key,
                "token": frozen.token, "expires_at": expiry if isinstance(expiry, dt.datetime) else None}

    return provide


class ByteBudget:
    """Bytes of bodies read ahead and not yet consumed; thread-safe, shareable between get_many calls."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._lock = threading.Lock()

    def try_take(self, n: int, force: bool = False) -> bool:
        """Take n bytes if they fit (or `force`: the consumer's very next body must be read)."""
        with self._lock:
            if not force and self.used + n > self.limit:
                return False
            self.used += n
            self.peak = max(self.peak, self.used)
            return True

    def give(self, n: int) -> None:
        if n:
            with self._lock:
                self.used -= n


Start = Callable[["ObjectInfo"], "Future[Body]"]


def whole_reads(reader: Any, pool: ThreadPoolExecutor, concurrency: int) -> Start:
    """How ReadAhead starts reading a small body whole: the reader's own concurrent
    GETs when it has them (ObjectReader: one libcurl multi handle), else `get` on `pool`."""
    own = getattr(reader, "whole_reads", None)
    start: Start | None = own(concurrency) if own is not None else None
    return start or (lambda o: pool.submit(reader.get, o.key, o.size, o.etag, True))


class ReadAhead:
    """get_many's engine, for any `get(key, size, etag, whole)` (BucketPusher reads
    through it whatever its reader): (object, body) in order, at most `window` bodies in
    flight or waiting. Small bodies are read whole by `start`; bigger ones are opened by
    `get` in turn, never read ahead.

    A BucketPusher lane keeps one for all its batches (execute/objects.py), so the next
    batch's GETs are in flight while the current batch's tail is still being sent:
    `more()` is asked for further objects whenever the ones given are all being read
    and no big (streamed) body is ahead of, or in the hands of, the consumer. It returns
    a list (empty: nothing yet, ask again later) or None (nothing ever again). `fill()`
    starts reads without taking a body (a lane starts its GETs before its login is
    ready); `peek()` is the next object, or None at the end."""

    def __init__(self, get: Callable[[str, int, str, bool], Body], objs: Iterable[ObjectInfo] = (), *, start: Start,
                 budget: ByteBudget, window: int, whole_below: int = WHOLE_BELOW,
                 more: Callable[[], list[ObjectInfo] | None] | None = None) -> None:
        self.get, self.start, self.budget, self.window, self.whole_below = get, start, budget, window, whole_below
        self._todo: deque[ObjectInfo] = deque(objs)
        self._more = more
        self._pending: deque[tuple[ObjectInfo, Future[Body] | None, int]] = deque()
        self._streamed = 0  # big bodies among _pending
        self._held = 0  # budget held by the body the consumer has (given back when it asks for the next)
        self._held_big = False

    def fill(self) -> None:
        pending, todo = self._pending, self._todo
        while len(pending) < self.window:
            if not todo:
                # More only while the consumer's remaining work is small bodies: a lane
                # streaming a big object must not claim the next batch from the other lanes.
                if self._more is None or self._streamed or self._held_big:
                    return
                got = self._more()
                if not got:
                    if got is None:
                        self._more = None
                    return
                todo.extend(got)
            nxt = todo[0]
            if nxt.size > self.whole_below:  # opened when its turn comes, held one chunk at a time
                pending.append((nxt, None, 0))
                self._streamed += 1
            elif self.budget.try_take(nxt.size, force=not pending and not self._held):
                # the consumer's very next body is read even above the budget: one object
                # larger than the budget still goes through
                pending.append((nxt, self.start(nxt), nxt.size))
            else:
                return
            todo.popleft()

    def peek(self) -> ObjectInfo | None:
        """The next object (its read started), None when there is none; the body the
        caller holds counts as consumed."""
        self._release()
        self.fill()
        return self._pending[0][0] if self._pending else None

    def __iter__(self) -> Iterator[tuple[ObjectInfo, Body]]:
        return self

    def __next__(self) -> tuple[ObjectInfo, Body]:
        self._release()
        self.fill()
        if not self._pending:
            raise StopIteration
        obj, fut, cost = self._pending.popleft()
        self._held, self._held_big = cost, fut is None
        if fut is None:
            self._streamed -= 1
        try:
            return obj, (fut.result() if fut is not None else self.get(obj.key, obj.size, obj.etag, False))
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        self.budget.give(self._held)
        self._held, self._held_big = 0, False

    def close(self) -> None:
        """Cancel what is in flight and give back everything read ahead."""
        self._release()
        pending, self._pending = self._pending, deque()
        for _, fut, cost in pending:
            if fut is not None:
                fut.cancel()
            self.budget.give(cost)
        self._todo.clear()
        self._streamed, self._more = 0, None


class ObjectReader:
    """GETs of one bucket's objects: libcurl for small bodies, obstore when the key allows, boto3 otherwise."""

    def __init__(self, aws: Aws, bucket: str, gets: str = "auto", backoff_s: float = GET_BACKOFF_S) -> None:
        self.bucket = bucket
        self.s3 = aws.client("s3")
        spec = aws.spec
        kw: dict[str, Any] = {"region": spec.region or aws.region_name or "us-east-1"}
        # The endpoint botocore actually resolved (relocate.yaml, or AWS_ENDPOINT_URL_S3 and
        # friends): obstore reads env vars of its own, and must not disagree with botocore.
        endpoint = spec.endpoint_url or self.s3.meta.endpoint_url
        # An account's buckets live in several regions, relocate.yaml names one. boto3 follows
        # S3's redirects by itself; the native clients sign for one region and must be told.
        found = bucket_region(self.s3, bucket)
        if found and found != kw["region"]:
            kw["region"] = found
            endpoint = aws.endpoint_in("s3", found)  # on AWS, the region's own
        if spec.endpoint_url or not re.search(r"\.amazonaws\.com(\.cn)?(:\d+)?$", endpoint.split("/")[2] if "//" in endpoint else ""):
            kw.update(endpoint=endpoint, virtual_hosted_style_request=False)
        # `timeout` covers the whole body (obstore's default 30 s, or any fixed figure, would
        # fail a 5 GiB object on a slow link); a stalled S3 read is caught per read instead.
        options: dict[str, Any] = {"connect_timeout": "10s", "timeout": "48h", "read_timeout": "60s",
                                   "allow_http": endpoint.startswith("http://")}
        # obstore retries 5xx/throttling itself with backoff, like botocore's standard mode.
        retry = {"max_retries": 6, "retry_timeout": dt.timedelta(minutes=3),
                 "backoff": {"init_backoff": dt.timedelta(seconds=backoff_s), "max_backoff": dt.timedelta(seconds=15), "base": 2}}
        self.store = S3Store(bucket, client_options=options, retry_config=retry,  # type: ignore[arg-type]
                             credential_provider=_credentials(aws), **kw)
        self._lock = threading.Lock()
        self._pools: dict[int, ThreadPoolExecutor] = {}
        self._aws = aws
        self._endpoint = endpoint
        self._region = kw["region"]
        # Virtual-hosted on AWS as botocore does it, unless the name cannot be a host name
        # label (dots break the wildcard certificate); path-style on any other endpoint.
        self._virtual = "endpoint" not in kw and re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", bucket) is not None
        self._gets: Any = None
        self._gets_setting = gets
        self._backoff_s = backoff_s

    def whole_reads(self, concurrency: int) -> Callable[[ObjectInfo], Future[Body]] | None:
        """Small bodies read whole, `concurrency` at once by one thread (sources/s3gets.py:
        keep-alive sockets, or libcurl where an HTTP proxy is set); None when the reader
        was made with gets="threads" (RELOCATE_S3_GETS, relocate.settings), or "curl"
        without pycurl, and the caller's pool calls `get` instead."""
        from relocate.sources.s3gets import Creds, engine

        Gets = engine(self._gets_setting)
        if Gets is None:
            return None
        with self._lock:
            if self._gets is None:
                creds = _boto_credentials(self._aws)

                last: list[Any] = [None, None]  # botocore's last frozen triple, and its Creds

                def frozen() -> Creds:
                    # Asked once per GET: the same Creds (and Secrets) while botocore's
                    # credentials stay the same, new ones the moment they are refreshed.
                    f = creds.get_frozen_credentials()
                    if f != last[0]:
                        last[:] = [f, Creds(f.access_key, Secret(f.secret_key), Secret(f.token) if f.token else None)]
                    made: Creds = last[1]
                    return made

                from botocore.httpsession import get_cert_path

                session = self._aws.session
                self._gets = Gets(endpoint=self._endpoint, bucket=self.bucket, region=self._region,
                                  virtual=self._virtual, credentials=frozen,
                                  fallback=lambda key, size: self._get_boto(key, size, True, f"s3://{self.bucket}/{key}"),
                                  ca_bundle=session.get_config_variable("ca_bundle") or get_cert_path(True),
                                  limit=concurrency, backoff_s=self._backoff_s)
            gets = self._gets
        gets.raise_limit(concurrency)
        return lambda o: gets.submit(o.key, o.size, o.etag)

    def get(self, key: str, size: int, etag: str, whole: bool) -> Body:
        """Open one object; `whole` reads it into memory (small objects), else streams it."""
        what = f"s3://{self.bucket}/{key}"
        if not _native_ok(key):
            return self._get_boto(key, size, whole, what)
        try:
            res = obstore.get(self.store, key)
            body = self._body(res, key, etag, what)
            if body is None:
                return self._get_boto(key, size, whole, what)
            if whole:
                body.data = memoryview(res.bytes())
            else:
                body.chunks = iter(res.stream(min_chunk_size=CHUNK))
        except RelocateError:
            raise
        except Exception as exc:
            raise _translate(exc, what) from None
        return body

    def _body(self, res: Any, key: str, etag: str, what: str) -> Body | None:
        """A Body for this GetResult (no content yet); None when object_store read another key."""
        meta = res.meta
        if meta["path"] != key:  # belt and braces for the trimming described above
            return None
        got_etag = str(meta.get("e_tag") or "").strip('"')
        if etag and got_etag and got_etag != etag:
            raise TransientError(f"{what} changed since it was listed", hint="running again moves the new version")
        attrs = res.attributes
        ctype = attrs.get("Content-Type")
        meta_fields = {k: v for k, v in attrs.items() if k.lower() not in _STANDARD_ATTRS} if len(attrs) > (ctype is not None) else {}
        return Body(key, int(meta["size"]), got_etag, ctype, meta_fields)

    # ------------------------------------------------------------- many objects

    def get_many(self, objs: Iterable[ObjectInfo], *, concurrency: int = 16,
                 budget_bytes: int | ByteBudget = BUDGET_BYTES,
                 whole_below: int = WHOLE_BELOW) -> ReadAhead:
        """(object, body) for each of `objs`, in their order, up to `concurrency` GETs at once.

        Bodies of at most `whole_below` bytes are read ahead whole while the bytes held
        ahead of the consumer stay within `budget_bytes` (an int, or a ByteBudget shared
        with other calls: BucketPusher's lanes share one). The next body is always read,
        however big, so one object larger than the budget still goes through. Bigger
        objects are streamed in CHUNK pieces when their turn comes; reading ahead carries
        on past them. A body's bytes count until the consumer asks for the next one.

        Errors are the ones `get` raises (TransientError for an object that changed or
        vanished since the listing, SourceError for access denied), raised when the
        failing object's turn comes; closing the iterator early cancels what is in flight.
        """
        budget = budget_bytes if isinstance(budget_bytes, ByteBudget) else ByteBudget(budget_bytes)
        return ReadAhead(self.get, objs, start=whole_reads(self, self._pool(concurrency), concurrency), budget=budget,
                         window=max(2, concurrency * 2), whole_below=whole_below)

    def _pool(self, size: int) -> ThreadPoolExecutor:
        """get_many's workers, one pool per size, shared by concurrent calls (lanes) on this reader."""
        size = max(1, size)
        with self._lock:
            if size not in self._pools:
                self._pools[size] = ThreadPoolExecutor(size, thread_name_prefix=f"s3-get-{self.bucket}")
            return self._pools[size]

    def close(self) -> None:
        """Stop get_many's worker threads (a later get_many starts new ones)."""
        with self._lock:
            pools, self._pools = self._pools, {}
            gets, self._gets = self._gets, None
        for pool in pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        if gets is not None:
            gets.close()

    def _get_boto(self, key: str, size: int, whole: bool, what: str, version_id: str | None = None) -> Body:
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=key, **({"VersionId": version_id} if version_id else {}))
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


class VersionReader(ObjectReader):
    """GETs of older versions (`versions: all`): the pusher's keys are version_key()s.
    Always boto3's GetObject with VersionId (a read the source guard allows); older
    versions are few next to current objects, so the native clients are not needed."""

    def whole_reads(self, concurrency: int) -> None:
        return None

    def get(self, key: str, size: int, etag: str, whole: bool) -> Body:
        from relocate.sources.inventory import split_version_key

        real, version_id = split_version_key(key)
        body = self._get_boto(real, size, whole, f"s3://{self.bucket}/{real} version {version_id}", version_id)
        if etag and body.etag and body.etag != etag:
            raise TransientError(f"s3://{self.bucket}/{real} version {version_id}: ETag differs from the listing")
        body.key = key
        return body


def _translate(exc: BaseException, what: str) -> RelocateError:
    if isinstance(exc, (oe.NotFoundError, FileNotFoundError)):
        return TransientError(f"{what}: vanished since it was listed", hint="running again moves what is there now")
    if isinstance(exc, (oe.PermissionDeniedError, oe.UnauthenticatedError, PermissionError)):
        return SourceError(f"{what}: access denied ({exc})", hint="grant read access to these credentials")
    # Network errors, 5xx after obstore's own retries, timeouts: worth another go.
    first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return TransientError(f"{what}: {first}", hint="running again resumes")
