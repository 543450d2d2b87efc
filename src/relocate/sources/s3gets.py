"""Many small S3 GETs at once, on one libcurl multi handle (pycurl), signed here.

Why not obstore for these: obstore costs ~270 us of CPU per GET here (a request hands
off between the calling thread and tokio's workers), and on a 2-core machine shared
with the S3 server that CPU is the wall time of 10,000 small objects. One libcurl
multi handle driven from one thread does the same GETs for ~60 us each, in C:
10,000 x 4 KiB from SeaweedFS took 0.6 s of CPU and 2.0 s against 2.7-3.0 s and
3.1-3.3 s on obstore's 16 threads (docs/transfer.md, "Measured"). obstore keeps the
big objects, which are streamed and where a request's cost does not matter.

Signing is SigV4 for a GET with no body, done here in a few lines so the result can be
compared with botocore's own signer byte for byte (tests/test_s3gets.py); the signing
key is derived once a day. Every key goes through as it is (`a//b`, `/abs`, `tr/`,
`..`): the path is percent-encoded exactly as botocore encodes it and curl is told not
to tidy it. Anything unexpected (a redirect to another region, a 400, a 403 that is
not AccessDenied) is handed to boto3 (`fallback`), which knows those cases; 5xx,
throttling and network errors are retried here with backoff, like obstore's and
botocore's standard mode.

Read-only: the only request this module can make is a GET.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import re
import select
import socket
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import pycurl

from relocate.errors import SourceError, TransientError
from relocate.secret import Secret
from relocate.sources.s3data import Body

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
RETRIES = 6
BACKOFF_S = 0.2
BACKOFF_MAX_S = 15.0
RETRY_FOR_S = 180.0  # no new attempt once a GET has been failing this long
RECV_BUFFER = 256 * 1024  # libcurl's receive buffer per handle (CURLOPT_BUFFERSIZE)
_RETRY_STATUS = {429, 500, 502, 503, 504}
_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")


@dataclass(frozen=True)
class Creds:
    """AWS credentials as the signer needs them; the secret key and session token are
    `Secret`s, so a repr in a log or a traceback shows `***`."""

    access_key: str
    secret_key: Secret
    token: Secret | None = None


class SigV4:
    """AWS Signature Version 4 for an S3 GET without a body or a query.

    Per request it costs two sha256s and one HMAC (the signing key is derived once a
    day), and the date stamp is formatted once a second, not per request."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._keys: dict[tuple[Secret, str], bytes] = {}
        self._stamp: tuple[int, str] = (-1, "")

    def _key(self, secret: Secret, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = ("AWS4" + secret.reveal()).encode()
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            self._keys = {(secret, day): key}  # one day, one secret: the old ones are never needed again
        return key

    def headers(self, creds: Creds, host: str, path: str, now: float) -> list[str]:
        """The request headers that sign `GET path` on `host` (host[:port], as sent)."""
        second = int(now)
        if self._stamp[0] != second:
            self._stamp = (second, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second)))
        stamp = self._stamp[1]
        scope = f"{stamp[:8]}/{self.region}/s3/aws4_request"
        canon = f"host:{host}\nx-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:{stamp}\n"
        signed = "host;x-amz-content-sha256;x-amz-date"
        if creds.token:
            canon += f"x-amz-security-token:{creds.token.reveal()}\n"
            signed += ";x-amz-security-token"
        request = f"GET\n{path}\n\n{canon}\n{signed}\n{EMPTY_SHA256}"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        # hmac.new, not the one-shot hmac.digest: that one releases the GIL around its
        # microseconds of work, and with the lanes busy this thread then waited up to a
        # switch interval (5 ms) to get it back, once per GET.
        sig = hmac.new(self._key(creds.secret_key, stamp[:8]), to_sign.encode(), "sha256").hexdigest()
        out = [f"Authorization: AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, SignedHeaders={signed}, Signature={sig}",
               f"x-amz-content-sha256: {EMPTY_SHA256}", f"x-amz-date: {stamp}"]
        if creds.token:
            out.append(f"x-amz-security-token: {creds.token.reveal()}")
        return out


def object_url(endpoint: str, bucket: str, key: str, *, virtual: bool) -> tuple[str, str, str]:
    """(url, host as signed, path as signed) of one object: path-style on a custom
    endpoint, virtual-hosted on AWS (as botocore addresses it)."""
    return _Addresser(endpoint, bucket, virtual)(key)


class _Addresser:
    """object_url for one bucket, with the endpoint parsed once (not per GET)."""

    def __init__(self, endpoint: str, bucket: str, virtual: bool) -> None:
        parts = urlsplit(endpoint)
        base = parts.path.rstrip("/")
        if virtual:
            self.host, self.prefix = f"{bucket}.{parts.netloc}", f"{base}/"
        else:
            self.host, self.prefix = parts.netloc, f"{base}/{quote(bucket, safe='')}/"
        self.origin = f"{parts.scheme}://{self.host}"

    def __call__(self, key: str) -> tuple[str, str, str]:
        path = self.prefix + quote(key, safe="/~")  # botocore's encoding of a key; '/' stays, everything else escaped
        return self.origin + path, self.host, path


@dataclass
class _Job:
    key: str
    size: int
    etag: str
    future: Future[Body]
    tries: int = 0
    first_failure: float = 0.0
    body: list[bytes] = field(init=False)  # body chunks and header lines of the current try, set by _start
    head: list[bytes] = field(init=False)


class CurlGets:
    """Whole-body GETs of one bucket, up to `limit` at once, run by one thread.

    `submit` returns a Future of the Body; a Future cancelled before its GET starts is
    skipped. Bodies, headers and errors come back the way ObjectReader.get gives them."""

    def __init__(self, *, endpoint: str, bucket: str, region: str, virtual: bool,
                 credentials: Callable[[], Creds], fallback: Callable[[str, int], Body],
                 ca_bundle: str | None = None, limit: int = 16, backoff_s: float = BACKOFF_S) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.virtual = virtual
        self.credentials = credentials
        self.fallback = fallback
        self.ca_bundle = ca_bundle
        self.limit = max(1, limit)
        self.backoff_s = backoff_s  # the first retry's wait, doubled each time (RELOCATE_RETRY_BACKOFF / 5)
        self.connections = 0  # TCP connections opened so far: kept alive, it stays near `limit`
        self.signer = SigV4(region)
        self.address = _Addresser(endpoint, bucket, virtual)
        self._queue: deque[_Job] = deque()
        self._closed = False
        self._sleeping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._fallbacks: ThreadPoolExecutor | None = None
        self._thread = threading.Thread(target=self._run, name=f"s3-gets-{bucket}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers

    def submit(self, key: str, size: int, etag: str) -> Future[Body]:
        fut: Future[Body] = Future()
        if self._closed:
            fut.set_exception(TransientError(f"s3://{self.bucket}/{key}: reader closed"))
            return fut
        self._queue.append(_Job(key, size, etag, fut))
        if self._sleeping:  # see _wait: a loop that is awake looks at the queue before it sleeps
            self._wake()
        return fut

    def raise_limit(self, limit: int) -> None:
        if limit > self.limit:
            self.limit = limit
            self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()
        self._thread.join(timeout=10)
        if self._fallbacks is not None:
            self._fallbacks.shutdown(wait=False, cancel_futures=True)
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already woken (buffer full) or closing

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        multi = pycurl.CurlMulti()  # its connection cache keeps 4 per handle: every GET's connection is reused
        idle: list[pycurl.Curl] = []
        active: dict[pycurl.Curl, _Job] = {}
        later: list[tuple[float, int, _Job]] = []  # retries, by when they are due
        order = itertools.count()
        crash: BaseException | None = None
        try:
            while not self._closed:
                now = time.monotonic()
                while len(active) < self.limit:
                    if later and later[0][0] <= now:
                        job = heapq.heappop(later)[2]
                    elif self._queue:
                        job = self._queue.popleft()
                        if not job.future.set_running_or_notify_cancel():
                            continue  # the consumer stopped before its turn came
                    else:
                        break
                    handle = idle.pop() if idle else self._handle()
                    self._start(multi, handle, job)
                    active[handle] = job
                while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                    pass
                while True:
                    left, ok, failed = multi.info_read()
                    for handle in ok:
                        self._finished(multi, handle, active.pop(handle), None, later, order)
                        idle.append(handle)
                    for handle, errno, msg in failed:
                        self._finished(multi, handle, active.pop(handle), (errno, msg), later, order)
                        idle.append(handle)
                    if not left:
                        break
                self._wait(multi, active, later)
        except BaseException as exc:  # never leave a consumer waiting on a dead loop
            crash = exc
            raise
        finally:
            self._closed = True
            for handle in [*active, *idle]:
                handle.close()
            multi.close()
            why = f"reading stopped ({type(crash).__name__}: {crash})" if crash else "reader closed"
            ended = TransientError(f"s3://{self.bucket}: {why}", hint="running again resumes")
            for job in [*active.values(), *(j for _, _, j in later)]:
                if not job.future.done():
                    job.future.set_exception(ended)
            while self._queue:
                fut = self._queue.popleft().future
                if fut.set_running_or_notify_cancel():
                    fut.set_exception(ended)

    def _wait(self, multi: pycurl.CurlMulti, active: dict[pycurl.Curl, _Job], later: list[tuple[float, int, _Job]]) -> None:
        """Sleep until a socket is ready, curl's next timeout, a retry is due or a caller woke us.

        `_sleeping` is raised before the queue is looked at, so a submit either lands
        before that look or sees the flag and writes the wake-up byte: none is missed, and
        a busy loop is not woken once per submitted GET."""
        self._sleeping = True
        try:
            if self._queue and len(active) < self.limit:
                return  # a GET finished and made room for one that is waiting
            self._sleep(multi, active, later)
        finally:
            self._sleeping = False

    def _sleep(self, multi: pycurl.CurlMulti, active: dict[pycurl.Curl, _Job], later: list[tuple[float, int, _Job]]) -> None:
        timeout: float | None = None
        if active:
            ms = multi.timeout()
            timeout = 1.0 if ms < 0 else ms / 1000
        if later:
            due = max(0.0, later[0][0] - time.monotonic())
            timeout = due if timeout is None else min(timeout, due)
        if timeout == 0:
            return
        r, w, x = multi.fdset() if active else ([], [], [])
        ready = select.select([*r, self._wake_r], w, x, timeout)[0]
        if self._wake_r in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass

    def _handle(self) -> pycurl.Curl:
        c = pycurl.Curl()
        c.setopt(pycurl.NOSIGNAL, 1)  # curl from a thread: no SIGALRM for DNS timeouts
        c.setopt(pycurl.PATH_AS_IS, 1)  # a key's `..`, `.` and `//` are part of the key
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        c.setopt(pycurl.CONNECTTIMEOUT, 10)
        c.setopt(pycurl.LOW_SPEED_LIMIT, 1)  # a stalled read: no byte for 60 s
        c.setopt(pycurl.LOW_SPEED_TIME, 60)
        c.setopt(pycurl.FOLLOWLOCATION, 0)
        c.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        # A receive buffer of 256 KiB instead of libcurl's 16 KiB: a 256 KiB body is one or
        # a few recv(2) calls, not 16+ (client CPU 510-590 -> 400-440 us per 256 KiB GET
        # here). libcurl still hands the body to Python in 16 KiB pieces (CURL_MAX_WRITE_SIZE);
        # they are kept in a list and handed over as they came (_body, s3data.Body): no join.
        # 32 handles, 8 MiB.
        c.setopt(pycurl.BUFFERSIZE, RECV_BUFFER)
        if self.ca_bundle:
            c.setopt(pycurl.CAINFO, self.ca_bundle)
        return c

    def _start(self, multi: pycurl.CurlMulti, c: pycurl.Curl, job: _Job) -> None:
        url, host, path = self.address(job.key)
        job.body = []
        job.head = []
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.HTTPHEADER, self.signer.headers(self.credentials(), host, path, time.time()))
        c.setopt(pycurl.WRITEFUNCTION, job.body.append)
        c.setopt(pycurl.HEADERFUNCTION, job.head.append)
        multi.add_handle(c)

    def _finished(self, multi: pycurl.CurlMulti, c: pycurl.Curl, job: _Job, error: tuple[int, str] | None,
                  later: list[tuple[float, int, _Job]], order: itertools.count[int]) -> None:
        status = 0 if error else c.getinfo(pycurl.RESPONSE_CODE)
        self.connections += c.getinfo(pycurl.NUM_CONNECTS)
        multi.remove_handle(c)
        what = f"s3://{self.bucket}/{job.key}"
        if status == 200:
            try:
                job.future.set_result(self._body(job, what))
            except TransientError as exc:
                job.future.set_exception(exc)
            return
        if status == 404:
            job.future.set_exception(TransientError(f"{what}: vanished since it was listed",
                                                    hint="running again moves what is there now"))
            return
        code = _error_code(b"".join(job.body))
        if status == 403 and code == "AccessDenied":
            job.future.set_exception(SourceError(f"{what}: access denied (AccessDenied)",
                                                 hint="grant read access to these credentials"))
            return
        if error and error[0] in (pycurl.E_PEER_FAILED_VERIFICATION, pycurl.E_SSL_CACERT_BADFILE):
            job.future.set_exception(SourceError(f"{what}: TLS: {error[1]}",
                                                 hint="set AWS_CA_BUNDLE to the CA that signs the endpoint's certificate"))
            return
        if error or status in _RETRY_STATUS:
            now = time.monotonic()
            job.first_failure = job.first_failure or now
            job.tries += 1
            if job.tries <= RETRIES and now - job.first_failure < RETRY_FOR_S:
                delay = min(BACKOFF_MAX_S, self.backoff_s * 2 ** (job.tries - 1))
                heapq.heappush(later, (now + delay, next(order), job))
                return
            why = error[1] if error else f"HTTP {status} {code}".strip()
            job.future.set_exception(TransientError(f"{what}: {why} ({job.tries} tries)", hint="running again resumes"))
            return
        self._hand_to_boto(job)  # a redirect, a 400, a 403 other than AccessDenied: boto3 knows these

    def _hand_to_boto(self, job: _Job) -> None:
        if self._fallbacks is None:
            self._fallbacks = ThreadPoolExecutor(2, thread_name_prefix=f"s3-boto-{self.bucket}")
        inner = self._fallbacks.submit(self.fallback, job.key, job.size)

        def copy(f: Future[Body]) -> None:
            if f.cancelled():  # the reader closed before boto3's turn came
                job.future.set_exception(TransientError(f"s3://{self.bucket}/{job.key}: reader closed"))
                return
            exc = f.exception()
            if exc is not None:
                job.future.set_exception(exc)
            else:
                job.future.set_result(f.result())
        inner.add_done_callback(copy)

    @staticmethod
    def _body(job: _Job, what: str) -> Body:
        etag = ctype = ""
        meta: dict[str, str] = {}
        for line in job.head[1:]:  # after the status line
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip().lower()
            if name == b"etag":
                etag = value.strip().strip(b'"').decode("latin-1")
            elif name == b"content-type":
                # one string per type, not per object: the journal record a move keeps for
                # each object holds it (100,000 objects: 7 MiB less)
                ctype = sys.intern(value.strip().decode("latin-1"))
            elif name.startswith(b"x-amz-meta-"):
                meta[name[11:].decode("latin-1")] = value.strip().decode("latin-1")
        if job.etag and etag and etag != job.etag:
            raise TransientError(f"{what} changed since it was listed", hint="running again moves the new version")
        return Body(job.key, sum(map(len, job.body)), etag, ctype or None, meta, data=job.body)


def _error_code(body: bytes) -> str:
    m = _CODE.search(body[:4096])
    return m.group(1).decode("latin-1") if m else ""
