"""Many small S3 GETs at once, from one thread, signed here.

Why not obstore for these: obstore costs ~270 us of CPU per GET here (a request hands
off between the calling thread and tokio's workers), and on a 2-core machine shared
with the S3 server that CPU is the wall time of 10,000 small objects. One thread
driving many keep-alive connections does the same GETs for far less: `SocketGets` (the
standard library's sockets, ssl and selectors; the default) ~65 us of its thread's CPU
each, `CurlGets` (one libcurl multi handle, pycurl; used when an HTTP proxy is set,
since libcurl knows proxies) ~85 us (docs/transfer.md, "A GET loop on plain sockets").
obstore keeps the big objects, which are streamed and where a request's cost does not
matter.

Signing is SigV4 for a GET with no body, done here in a few lines so the result can be
compared with botocore's own signer byte for byte (tests/test_s3gets.py); the signing
key is derived once a day. Every key goes through as it is (`a//b`, `/abs`, `tr/`,
`..`): the path is percent-encoded exactly as botocore encodes it and sent untidied.
Anything unexpected (a redirect to another region, a 400, a 403 that is not
AccessDenied) is handed to boto3 (`fallback`), which knows those cases; 5xx,
throttling and network errors are retried here with backoff, like obstore's and
botocore's standard mode.

Read-only: the only request this module can make is a GET.
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import hmac
import itertools
import os
import re
import select
import selectors
import socket
import ssl
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlsplit

from relocate.errors import SourceError, TransientError
from relocate.secret import Secret
from relocate.sources.s3data import Body

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
RETRIES = 6
BACKOFF_S = 0.2
BACKOFF_MAX_S = 15.0
RETRY_FOR_S = 180.0  # no new attempt once a GET has been failing this long
RECV_BUFFER = 256 * 1024  # one recv(2) takes up to this much (libcurl: its buffer per handle)
CONNECT_S = 10.0  # a connection (and its TLS handshake) not up by then has failed
STALL_S = 60.0  # a GET with no byte for this long has failed (libcurl's LOW_SPEED_TIME)
DNS_TTL_S = 60.0  # the endpoint's addresses are looked up again after this long (libcurl's DNS cache)
MAX_HEAD = 64 * 1024  # an answer's head (or a chunk-size line) longer than this is not S3's
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
    fields: dict[bytes, bytes] | None = None  # the head's fields by lower-cased name, once parsed


class _Gets:
    """Whole-body GETs of one bucket, up to `limit` at once, run by one thread: what the
    callers see and what is done with an answer, whichever engine makes the requests
    (`SocketGets`, `CurlGets`; `engine` picks one).

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
        self._later: list[tuple[float, int, _Job]] = []  # retries, by when they are due
        self._order = itertools.count()
        self._closed = False
        self._sleeping = False
        self._asleep_with = 0  # GETs in flight when the loop last went to sleep
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._fallbacks: ThreadPoolExecutor | None = None
        self._setup()  # the engine's state exists before its loop runs, and when it stops
        self._thread = threading.Thread(target=self._loop, name=f"s3-gets-{bucket}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers

    def submit(self, key: str, size: int, etag: str) -> Future[Body]:
        fut: Future[Body] = Future()
        if self._closed:
            fut.set_exception(TransientError(f"s3://{self.bucket}/{key}: reader closed"))
            return fut
        self._queue.append(_Job(key, size, etag, fut))
        if self._sleeping and self._asleep_with < max(1, self.limit // 2):  # see _may_sleep
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

    def _loop(self) -> None:
        crash: BaseException | None = None
        try:
            self._run()
        except BaseException as exc:  # never leave a consumer waiting on a dead loop
            crash = exc
            raise
        finally:
            self._closed = True
            why = f"reading stopped ({type(crash).__name__}: {crash})" if crash else "reader closed"
            ended = TransientError(f"s3://{self.bucket}: {why}", hint="running again resumes")
            for job in [*self._stopped(), *(j for _, _, j in self._later)]:
                if not job.future.done():
                    job.future.set_exception(ended)
            while self._queue:
                fut = self._queue.popleft().future
                if fut.set_running_or_notify_cancel():
                    fut.set_exception(ended)

    def _setup(self) -> None:
        """The engine's own state, made on the caller's thread before the loop starts."""
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError

    def _stopped(self) -> list[_Job]:
        """The engine's GETs in flight, its connections closed: the loop has ended."""
        raise NotImplementedError

    def _next(self, now: float) -> _Job | None:
        """The next GET to start: a retry that is due, else the oldest submitted one."""
        later = self._later
        while True:
            if later and later[0][0] <= now:
                return heapq.heappop(later)[2]
            if not self._queue:
                return None
            job = self._queue.popleft()
            if job.future.set_running_or_notify_cancel():
                return job
            # else the consumer stopped before its turn came

    def _may_sleep(self, busy: int) -> float | None:
        """How long the loop may sleep before a retry is due; 0 when a GET that is waiting
        can start now.

        `_sleeping` is raised before the queue is looked at, so a submit either lands
        before that look or sees the flag and writes the wake-up byte: none is missed, and
        a busy loop is not woken once per submitted GET. The caller lowers it. A loop
        asleep with half its GETs or more in flight is not woken either: the next answer
        wakes it (the stall check's tick at the latest) and it starts the new GET then;
        a wake-up per GET cost two syscalls and a switch to this thread (10,000 small
        objects: ~0.1 s of CPU)."""
        self._asleep_with = busy
        self._sleeping = True
        if self._queue and busy < self.limit:
            return 0.0  # a GET finished and made room for one that is waiting
        return max(0.0, self._later[0][0] - time.monotonic()) if self._later else None

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _signed(self, job: _Job) -> tuple[str, str, list[str]]:
        """(url, path, request headers) of a job's GET, signed now; its answer not yet begun."""
        url, host, path = self.address(job.key)
        job.body = []
        job.head = []
        job.fields = None
        return url, path, self.signer.headers(self.credentials(), host, path, time.time())

    def _finished(self, job: _Job, status: int, error: _Failure | None) -> None:
        """What an answer (or a failure to get one) means: the body, an error, a retry
        later, or boto3's turn."""
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
        if error is not None and error.tls:
            job.future.set_exception(SourceError(f"{what}: TLS: {error.message}",
                                                 hint="set AWS_CA_BUNDLE to the CA that signs the endpoint's certificate"))
            return
        if error is not None or status in _RETRY_STATUS:
            now = time.monotonic()
            job.first_failure = job.first_failure or now
            job.tries += 1
            if job.tries <= RETRIES and now - job.first_failure < RETRY_FOR_S:
                delay = min(BACKOFF_MAX_S, self.backoff_s * 2 ** (job.tries - 1))
                heapq.heappush(self._later, (now + delay, next(self._order), job))
                return
            why = error.message if error is not None else f"HTTP {status} {code}".strip()
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
        fields = job.fields if job.fields is not None else _fields(job.head)
        etag = fields.get(b"etag", b"").strip(b'"').decode("latin-1")
        # one string per type, not per object: the journal record a move keeps for each
        # object holds it (100,000 objects: 7 MiB less)
        ctype = sys.intern(fields.get(b"content-type", b"").decode("latin-1"))
        meta = {name[11:].decode("latin-1"): value.decode("latin-1")
                for name, value in fields.items() if name.startswith(b"x-amz-meta-")}
        if job.etag and etag and etag != job.etag:
            raise TransientError(f"{what} changed since it was listed", hint="running again moves the new version")
        return Body(job.key, sum(map(len, job.body)), etag, ctype or None, meta, data=job.body)


@dataclass(frozen=True)
class _Failure:
    """A GET that got no answer: the connection failed (retried), or TLS refused the
    endpoint (not retried: it will refuse again)."""

    message: str
    tls: bool = False


class SocketGets(_Gets):
    """The GETs on keep-alive HTTP/1.1 connections of the standard library's sockets and
    ssl, one request at a time on each, driven by one `selectors` loop.

    Why not libcurl (CurlGets) by default: with the same 32 GETs in flight, 10,000 x 4 KiB
    from SeaweedFS cost this thread 0.64-0.69 s of CPU against libcurl's thread's 0.85 s,
    in 2.37-2.48 s instead of 2.48-2.70 s (docs/transfer.md, "A GET loop on plain
    sockets"): the loop touches only the sockets that are ready, makes one recv per
    answer, and calls no Python callback per header line. Pipelining more than one
    request on a connection was measured too and dropped: it cost SeaweedFS 15-40% more
    CPU.

    It speaks only what an S3 GET needs: Content-Length or chunked bodies, keep-alive and
    `Connection: close`, TLS with the CA bundle botocore would use. An HTTP proxy is
    libcurl's job (`engine`, relocate.settings). A kept-alive connection the server
    closed before it answered is retried at once on a new one, as libcurl does: a GET is
    safe to repeat."""

    def _setup(self) -> None:
        parts = urlsplit(self.endpoint)
        # the name resolved and checked against the certificate: the Host header without a port
        self._hostname = f"{self.bucket}.{parts.hostname}" if self.virtual else (parts.hostname or "")
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls: ssl.SSLContext | None = None
        self._no_tls: _Failure | None = None  # a CA bundle that cannot be read: every GET fails with it
        if parts.scheme == "https":
            try:
                self._tls = _tls_context(self.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                self._no_tls = _Failure(f"cannot load the CA bundle {self.ca_bundle}: {exc}", tls=True)
        self._addrs: tuple[float, list[Any]] = (0.0, [])
        self._good = 0  # the index in _addrs of the address that last took a connection
        self._buf = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buf)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._idle: list[_Conn] = []
        self._busy: set[_Conn] = set()

    def _run(self) -> None:
        next_check = 0.0
        while not self._closed:
            now = time.monotonic()
            while len(self._busy) < self.limit:
                job = self._next(now)
                if job is None:
                    break
                self._start(job, now)
            timeout = self._may_sleep(len(self._busy))
            try:
                if timeout != 0.0:
                    if self._busy:
                        timeout = 1.0 if timeout is None else min(timeout, 1.0)  # the stall check's tick
                    for key, mask in self._sel.select(timeout):
                        if key.data is None:
                            self._drain_wake()
                        else:
                            self._ready(key.data, mask)
            finally:
                self._sleeping = False
            now = time.monotonic()
            if now >= next_check:  # a stalled connection: no byte for STALL_S (libcurl's LOW_SPEED_TIME)
                next_check = now + 1.0
                for conn in [c for c in self._busy if now - c.last > (CONNECT_S if c.state != _READY else STALL_S)]:
                    self._fail(conn, _Failure("connection timed out" if conn.state != _READY else f"no data for {STALL_S:.0f} s"))

    def _stopped(self) -> list[_Job]:
        jobs = [c.job for c in self._busy if c.job is not None]
        for conn in [*self._busy, *self._idle]:
            conn.sock.close()
        self._sel.close()
        return jobs

    # ------------------------------------------------------------------ connections

    def _start(self, job: _Job, now: float) -> None:
        _, path, headers = self._signed(job)
        if self._no_tls is not None:
            self._finished(job, 0, self._no_tls)
            return
        request = (f"GET {path} HTTP/1.1\r\nHost: {self.address.host}\r\n"
                   "User-Agent: relocate\r\nAccept-Encoding: identity\r\n" + "\r\n".join(headers) + "\r\n\r\n").encode()
        conn = self._idle.pop() if self._idle else None
        if conn is None:
            try:
                conn = self._connect(now)
            except OSError as exc:
                self._finished(job, 0, _Failure(f"cannot connect: {exc.strerror or exc}"))
                return
        conn.job, conn.out, conn.last, conn.answered = job, request, now, False
        self._busy.add(conn)
        if conn.state == _READY:
            self._send(conn)

    def _connect(self, now: float, tried: int = 0) -> _Conn:
        """A new connection to the endpoint's address that last worked, or, `tried` > 0,
        to the one after the address that just refused (`localhost` is ::1 and 127.0.0.1;
        a server may listen on one of them only)."""
        when, addrs = self._addrs
        if now - when > DNS_TTL_S or not addrs:  # resolved again a minute later, as libcurl's DNS cache
            addrs = socket.getaddrinfo(self._hostname, self._port, type=socket.SOCK_STREAM)
            self._addrs = (now, addrs)
        index = (self._good + tried) % len(addrs)
        family, kind, proto, _, where = addrs[index]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(where)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            raise OSError(err, os.strerror(err))
        self.connections += 1
        conn = _Conn(sock)
        conn.address, conn.tried = index, tried
        self._sel.register(sock, selectors.EVENT_WRITE, conn)
        return conn

    def _ready(self, conn: _Conn, mask: int) -> None:
        if conn.state == _READY:
            if conn.job is None:  # an idle connection: the server closed it (or sent what nobody asked)
                self._drop(conn)
            elif conn.out:
                self._send(conn)
            else:
                self._read(conn)
        elif conn.state == _CONNECTING:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(conn, _Failure(f"cannot connect: {os.strerror(err)}"))
            elif self._tls is None:
                self._up(conn)
            else:
                self._sel.unregister(conn.sock)
                conn.sock = self._tls.wrap_socket(conn.sock, server_hostname=self._hostname, do_handshake_on_connect=False)
                self._sel.register(conn.sock, selectors.EVENT_READ, conn)
                conn.events = selectors.EVENT_READ
                conn.state = _HANDSHAKE
                self._handshake(conn)
        else:
            self._handshake(conn)

    def _handshake(self, conn: _Conn) -> None:
        assert isinstance(conn.sock, ssl.SSLSocket)
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(conn, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            self._watch(conn, selectors.EVENT_WRITE)
        except ssl.SSLCertVerificationError as exc:
            self._fail(conn, _Failure(exc.verify_message or str(exc), tls=True))
        except (ssl.SSLError, OSError) as exc:
            self._fail(conn, _Failure(f"TLS handshake failed: {exc}"))
        else:
            self._up(conn)

    def _up(self, conn: _Conn) -> None:
        conn.state = _READY
        self._good = conn.address
        self._send(conn)  # a connection is only opened for a GET: it has one

    def _send(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError as exc:
            self._fail(conn, _Failure(f"send failed: {exc.strerror or exc}"))
            return
        conn.out = conn.out[sent:]
        self._watch(conn, selectors.EVENT_WRITE if conn.out else selectors.EVENT_READ)

    def _watch(self, conn: _Conn, events: int) -> None:
        # A request fits the socket's buffer: a connection that is up stays watched for
        # reading, with no epoll_ctl per GET.
        if conn.events != events:
            self._sel.modify(conn.sock, events, conn)
            conn.events = events

    def _read(self, conn: _Conn) -> None:
        while True:
            try:
                n = conn.sock.recv_into(self._buf)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:
                return  # a TLS renegotiation's turn to write: the next readiness carries on
            except OSError as exc:
                self._fail(conn, _Failure(f"connection failed: {exc.strerror or exc}"))
                return
            if n == 0:
                if conn.until_eof and conn.job is not None:
                    self._done(conn, close=True)
                else:
                    self._fail(conn, _Failure("connection closed before the answer ended"))
                return
            conn.last = time.monotonic()
            if not self._feed(conn, self._view[:n]):
                return
            if not (isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending()):
                return  # a plain socket is read again when select says so: no empty recv per answer

    def _feed(self, conn: _Conn, data: bytes | memoryview) -> bool:
        """Take in what arrived; False once the connection is done with (answered or failed)."""
        job = conn.job
        assert job is not None
        if conn.need < 0:  # still in the head
            if conn.pending:
                conn.pending += data
                raw = bytes(conn.pending)
            else:
                raw = bytes(data)  # the usual case: a whole small answer in one recv, copied once
            while True:
                end = raw.find(b"\r\n\r\n")
                if end < 0:
                    if len(raw) > MAX_HEAD:
                        self._fail(conn, _Failure("answer's head too long"))
                        return False
                    conn.pending = bytearray(raw)
                    return True
                head, raw = raw[:end].split(b"\r\n"), raw[end + 4:]
                if not self._head(conn, job, head):
                    return False
                if conn.status:
                    break  # else an interim answer (100 Continue): the real one follows
            conn.pending = bytearray()
            if conn.need == 0 and not conn.chunked and not conn.until_eof:
                if raw:
                    self._fail(conn, _Failure("answer longer than its Content-Length"))
                    return False
                self._done(conn, close=conn.close)
                return False
            data = raw
        if conn.chunked:
            return self._chunks(conn, job, data)
        if conn.until_eof:
            if data:
                job.body.append(data if isinstance(data, bytes) else bytes(data))
            return True
        take = data[:conn.need]  # a bytes object that is all body is itself, not a copy
        if take:
            job.body.append(take if isinstance(take, bytes) else bytes(take))
            conn.need -= len(take)
        if len(data) > len(take):
            self._fail(conn, _Failure("answer longer than its Content-Length"))
            return False
        if conn.need == 0:
            self._done(conn, close=conn.close)
            return False
        return True

    def _head(self, conn: _Conn, job: _Job, head: list[bytes]) -> bool:
        status_line = head[0].split(None, 2)
        try:
            conn.status = int(status_line[1])
        except (IndexError, ValueError):
            self._fail(conn, _Failure("not an HTTP answer"))
            return False
        if 100 <= conn.status < 200:
            conn.status = 0
            return True
        job.head = head
        job.fields = fields = _fields(head)
        try:
            length = int(fields.get(b"content-length", b"-1"))
        except ValueError:
            self._fail(conn, _Failure("bad Content-Length"))
            return False
        conn.chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
        connection = fields.get(b"connection", b"").lower()
        # HTTP/1.0 closes after each answer unless it says keep-alive; 1.1 keeps it unless it says close
        conn.close = b"close" in connection or (head[0].startswith(b"HTTP/1.0") and b"keep-alive" not in connection)
        conn.answered = True
        conn.until_eof = not conn.chunked and length < 0
        conn.need = 0 if conn.chunked or conn.until_eof else length
        conn.chunk_left = -1
        return True

    def _chunks(self, conn: _Conn, job: _Job, data: bytes | memoryview) -> bool:
        """A chunked body (RFC 9112, 7.1): sizes in hex, each chunk followed by CRLF,
        then a zero-size chunk and trailer lines; the trailers are not used."""
        buf = conn.pending
        buf += data
        while True:
            if conn.chunk_left > 0:
                take = min(conn.chunk_left, len(buf))
                if take == 0:
                    return True
                job.body.append(bytes(buf[:take]))
                del buf[:take]
                conn.chunk_left -= take
                if conn.chunk_left:
                    return True
                conn.chunk_left = -2  # the CRLF after the chunk
            if conn.chunk_left == -2:
                if len(buf) < 2:
                    return True
                del buf[:2]
                conn.chunk_left = -1
            if conn.chunk_left == -3:  # after the last chunk: trailers, up to an empty line
                end = buf.find(b"\r\n")
                if end < 0:
                    return True
                line = bytes(buf[:end])
                del buf[:end + 2]
                if not line:
                    if buf:
                        self._fail(conn, _Failure("answer longer than its chunks"))
                        return False
                    self._done(conn, close=conn.close)
                    return False
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._fail(conn, _Failure("bad chunk size"))
                    return False
                return True
            try:
                size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
            except ValueError:
                self._fail(conn, _Failure("bad chunk size"))
                return False
            del buf[:end + 2]
            conn.chunk_left = size if size else -3

    def _done(self, conn: _Conn, *, close: bool) -> None:
        job, status = conn.job, conn.status
        assert job is not None
        self._release(conn, keep=not close)
        self._finished(job, status, None)

    def _fail(self, conn: _Conn, why: _Failure) -> None:
        job = conn.job
        retry_now = conn.reused and not conn.answered and not why.tls
        refused, tried, request = conn.state == _CONNECTING, conn.tried, conn.out  # nothing of it sent yet if refused
        self._release(conn, keep=False)
        if job is None:
            return
        if retry_now:  # a kept-alive connection the server had closed: not the GET's failure, sent again now
            heapq.heappush(self._later, (0.0, next(self._order), job))
            return
        if refused and tried + 1 < len(self._addrs[1]):  # the endpoint's next address, at once
            try:
                again = self._connect(time.monotonic(), tried + 1)
            except OSError as exc:
                why = _Failure(f"cannot connect: {exc.strerror or exc}")
            else:
                again.job, again.out, again.last = job, request, time.monotonic()
                self._busy.add(again)
                return
        self._finished(job, 0, why)

    def _release(self, conn: _Conn, *, keep: bool) -> None:
        self._busy.discard(conn)
        conn.job = None
        conn.need, conn.status, conn.until_eof, conn.chunked, conn.out = -1, 0, False, False, b""
        conn.pending = bytearray()
        if keep:
            conn.reused = True
            self._idle.append(conn)
        else:
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        if conn in self._idle:
            self._idle.remove(conn)
        self._busy.discard(conn)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()


_CONNECTING, _HANDSHAKE, _READY = 0, 1, 2


class _Conn:
    """One connection of SocketGets and the answer it is reading."""

    __slots__ = ("sock", "address", "tried", "events", "state", "job", "out", "last", "pending", "need", "status", "chunked", "chunk_left",
                 "until_eof", "close", "answered", "reused")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.address = 0  # its index in the endpoint's addresses
        self.tried = 0  # addresses that refused this connection's GET before it
        self.events = selectors.EVENT_WRITE  # what the selector watches it for
        self.state = _CONNECTING
        self.job: _Job | None = None
        self.out = b""  # the request, or what of it the socket has not taken yet
        self.last = time.monotonic()  # when it last made progress (the stall check)
        self.pending = bytearray()  # a head (or chunk framing) not yet complete
        self.need = -1  # body bytes still to come; -1 while the head is read
        self.status = 0
        self.chunked = False
        self.chunk_left = -1
        self.until_eof = False  # neither a length nor chunks: the body ends with the connection
        self.close = False  # the server said it closes the connection after this answer
        self.answered = False  # a head has come on this connection for its current GET
        self.reused = False  # it has answered a GET before (a kept-alive connection)


def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_bundle)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class CurlGets(_Gets):
    """The GETs on one libcurl multi handle (pycurl): RELOCATE_S3_GETS=curl, which is also
    what `auto` means when an HTTP proxy variable is set (libcurl honours http_proxy,
    HTTPS_PROXY, ALL_PROXY and NO_PROXY, as botocore does; relocate.settings)."""

    def _setup(self) -> None:
        import pycurl

        self._pycurl: Any = pycurl
        self._multi: Any = pycurl.CurlMulti()  # its connection cache keeps 4 per handle: every GET's connection is reused
        self._idle_handles: list[Any] = []
        self._active: dict[Any, _Job] = {}

    def _run(self) -> None:
        pycurl, multi, active = self._pycurl, self._multi, self._active
        while not self._closed:
            now = time.monotonic()
            while len(active) < self.limit:
                job = self._next(now)
                if job is None:
                    break
                handle = self._idle_handles.pop() if self._idle_handles else self._handle()
                self._start(multi, handle, job)
                active[handle] = job
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            while True:
                left, ok, failed = multi.info_read()
                for handle in ok:
                    self._end(handle, None)
                for handle, errno_, msg in failed:
                    self._end(handle, (errno_, msg))
                if not left:
                    break
            self._wait(multi)

    def _stopped(self) -> list[_Job]:
        jobs = list(self._active.values())
        for handle in [*self._active, *self._idle_handles]:
            handle.close()
        self._multi.close()
        return jobs

    def _end(self, handle: Any, error: tuple[int, str] | None) -> None:
        pycurl = self._pycurl
        job = self._active.pop(handle)
        status = 0 if error else handle.getinfo(pycurl.RESPONSE_CODE)
        self.connections += handle.getinfo(pycurl.NUM_CONNECTS)
        self._multi.remove_handle(handle)
        self._idle_handles.append(handle)
        failure = None
        if error is not None:
            failure = _Failure(error[1], tls=error[0] in (pycurl.E_PEER_FAILED_VERIFICATION, pycurl.E_SSL_CACERT_BADFILE))
        self._finished(job, status, failure)

    def _wait(self, multi: Any) -> None:
        """Sleep until a socket is ready, curl's next timeout, a retry is due or a caller woke us."""
        try:
            due = self._may_sleep(len(self._active))
            if due == 0.0:
                return
            timeout = due
            if self._active:
                ms = multi.timeout()
                curl_s = 1.0 if ms < 0 else ms / 1000
                timeout = curl_s if timeout is None else min(timeout, curl_s)
            if timeout == 0:
                return
            r, w, x = multi.fdset() if self._active else ([], [], [])
            ready = select.select([*r, self._wake_r], w, x, timeout)[0]
            if self._wake_r in ready:
                self._drain_wake()
        finally:
            self._sleeping = False

    def _handle(self) -> Any:
        pycurl = self._pycurl
        c = pycurl.Curl()
        c.setopt(pycurl.NOSIGNAL, 1)  # curl from a thread: no SIGALRM for DNS timeouts
        c.setopt(pycurl.PATH_AS_IS, 1)  # a key's `..`, `.` and `//` are part of the key
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        c.setopt(pycurl.CONNECTTIMEOUT, int(CONNECT_S))
        c.setopt(pycurl.LOW_SPEED_LIMIT, 1)  # a stalled read: no byte for 60 s
        c.setopt(pycurl.LOW_SPEED_TIME, int(STALL_S))
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

    def _start(self, multi: Any, c: Any, job: _Job) -> None:
        pycurl = self._pycurl
        url, _, headers = self._signed(job)
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.HTTPHEADER, headers)
        c.setopt(pycurl.WRITEFUNCTION, job.body.append)
        c.setopt(pycurl.HEADERFUNCTION, job.head.append)
        multi.add_handle(c)


def engine(setting: str) -> type[_Gets] | None:
    """Which engine reads small bodies for RELOCATE_S3_GETS=`setting` (relocate.settings,
    which turns `auto` into `curl` when a proxy variable is set): plain sockets, libcurl,
    or None (the caller's thread pool: `threads`, or `curl` without pycurl)."""
    if setting == "threads":
        return None
    if setting == "curl":
        try:
            import pycurl  # noqa: F401
        except ImportError:
            return None
        return CurlGets
    return SocketGets


def _fields(head: list[bytes]) -> dict[bytes, bytes]:
    """An answer's header lines (the status line first) as {lower-cased name: value}."""
    out: dict[bytes, bytes] = {}
    for line in head[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _error_code(body: bytes) -> str:
    m = _CODE.search(body[:4096])
    return m.group(1).decode("latin-1") if m else ""
