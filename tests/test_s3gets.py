"""sources/s3gets.py: small S3 GETs from one thread, signed by relocate, on plain
keep-alive sockets (SocketGets, the default) or one libcurl multi handle (CurlGets).

The signature is compared with botocore's own signer, byte for byte; the GETs run
against moto and SeaweedFS (odd keys included, no help from boto3), through a proxy
that throttles, fails, refuses or answers oddly, to check what is retried, what stops,
and what is handed to boto3, through the same proxy serving HTTPS, and against a
server that answers in every way HTTP/1.1 allows (chunks, interim answers, bodies that
end with the connection, kept-alive connections it closes). Every test of the GETs runs
with both engines.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
import socketserver
import ssl
import threading
import time
from concurrent.futures import Future

import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from helpers import aws_client
from httpfaults import HttpFaults
from relocate.errors import SourceError, TransientError
from relocate.secret import Secret
from relocate.sources import s3gets
from relocate.sources.s3data import Body
from relocate.sources.s3gets import Creds, CurlGets, SigV4, SocketGets, engine, object_url

KiB = 1024
ODD = ["plain/ok.txt", "a b+c&d=e", "ünï/cødé ✓", "~t*'()!$;,@", "per%cent", "tab\tkey", "q?x#y", "/abs", "tr/",
       "a//b", "x/./y", "x/../y"]


def _body(key: str, size: int) -> bytes:
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def _content(body) -> bytes:
    return b"".join(bytes(c) for c in body.iter_chunks())


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE//token+with/odd=chars"])
@pytest.mark.parametrize("endpoint,virtual", [("http://127.0.0.1:9000", False), ("https://s3.eu-west-1.amazonaws.com", True),
                                              ("https://minio.example:8443/base", False)])
def test_signature_equals_botocores(token: str | None, endpoint: str, virtual: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Authorization header relocate computes is the one botocore computes for the same GET."""
    creds = Creds("AKIDEXAMPLE", Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), Secret(token) if token else None)
    signer = SigV4("eu-west-1")
    when = 1_795_000_000.0
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: dt.datetime.fromtimestamp(when, dt.timezone.utc).replace(tzinfo=None))
    for key in ODD:
        url, host, path = object_url(endpoint, "my-bucket", key, virtual=virtual)
        ours = dict(h.split(": ", 1) for h in signer.headers(creds, host, path, when))
        request = AWSRequest(method="GET", url=url, headers={})
        auth = S3SigV4Auth(Credentials(creds.access_key, creds.secret_key.reveal(), token), "s3", "eu-west-1")
        auth.add_auth(request)
        assert request.headers["Authorization"] == ours["Authorization"], key
        assert request.headers["X-Amz-Content-SHA256"] == ours["x-amz-content-sha256"]
        assert request.headers.get("X-Amz-Security-Token") == ours.get("x-amz-security-token")


def _seed(endpoint: str, bucket: str, keys: dict[str, int]) -> dict[str, dict]:
    s3 = aws_client("s3", endpoint)
    s3.create_bucket(Bucket=bucket)
    heads = {}
    for key, size in keys.items():
        s3.put_object(Bucket=bucket, Key=key, Body=_body(key, size), ContentType="image/x-test",
                      Metadata={"owner": "u1", "Mixed-Case": "v"})
        heads[key] = s3.head_object(Bucket=bucket, Key=key)
    return heads


ENGINES = {"sockets": SocketGets, "curl": CurlGets}
_engine: list[type] = [SocketGets]


@pytest.fixture(autouse=True, params=sorted(ENGINES))
def gets_engine(request: pytest.FixtureRequest) -> str:
    """Every test here runs once per engine: `_gets` makes the one of this run."""
    _engine[0] = ENGINES[request.param]
    return str(request.param)


def _gets(endpoint: str, bucket: str, server, fallback=None, limit: int = 4, ca_bundle: str | None = None):
    def refuse(key: str, size: int) -> Body:
        raise AssertionError(f"{key} was handed to boto3")

    return _engine[0](endpoint=endpoint, bucket=bucket, region="us-east-1", virtual=False,
                      credentials=lambda: Creds(server.access_key, Secret(server.secret_key)), fallback=fallback or refuse,
                      limit=limit, ca_bundle=ca_bundle)


def test_odd_keys_metadata_and_etags_come_back_as_boto3_reads_them(s3_server) -> None:
    keys = {k: (i * 997) % (5 * KiB) for i, k in enumerate(ODD)}  # one of them is empty
    if s3_server.name == "seaweedfs":  # its filer rewrites "/abs", "a//b", "tr/" and refuses dot segments
        keys = {k: s for k, s in keys.items() if k not in ("/abs", "tr/", "a//b", "x/./y", "x/../y")}
    bucket = s3_server.new_bucket("curl")
    s3 = s3_server.client()
    for key, size in keys.items():
        s3.put_object(Bucket=bucket, Key=key, Body=_body(key, size), ContentType="image/x-test",
                      Metadata={"owner": "u1", "Mixed-Case": "v"})
    gets = _gets(s3_server.endpoint_url, bucket, s3_server)
    try:
        futures = {k: gets.submit(k, s, "") for k, s in keys.items()}
        for key, fut in futures.items():
            body = fut.result(timeout=30)
            want = s3.get_object(Bucket=bucket, Key=key)
            assert _content(body) == _body(key, keys[key]) == want["Body"].read(), key
            assert body.key == key and body.size == keys[key]
            assert body.etag == want["ETag"].strip('"')
            assert body.content_type == want["ContentType"] == "image/x-test"
            assert body.metadata == want["Metadata"] == {"owner": "u1", "mixed-case": "v"}
    finally:
        gets.close()


def test_connections_are_kept_alive_across_gets(seaweedfs) -> None:
    # SeaweedFS keeps HTTP/1.1 connections open, as S3 does (moto's server closes each one).
    from servers import S3Server

    s3_server = S3Server("seaweedfs", seaweedfs.endpoint_url, seaweedfs.access_key, seaweedfs.secret_key)
    bucket = s3_server.new_bucket("alive")
    s3 = s3_server.client()
    keys = {f"k/{i:03d}": 512 + i for i in range(60)}
    for key, size in keys.items():
        s3.put_object(Bucket=bucket, Key=key, Body=_body(key, size))
    gets = _gets(s3_server.endpoint_url, bucket, s3_server, limit=4)
    try:
        futures = {k: gets.submit(k, s, "") for k, s in keys.items()}
        assert {k: _content(f.result(timeout=30)) for k, f in futures.items()} == {k: _body(k, s) for k, s in keys.items()}
    finally:
        gets.close()
    assert 1 <= gets.connections <= 8, gets.connections  # 60 GETs, 4 at a time: not a connection each


def _proxy(moto: str, pick) -> HttpFaults:
    host, port = moto.split("//")[1].split(":")
    return HttpFaults((host, int(port)), pick)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3gets, "BACKOFF_S", 0.01)
    monkeypatch.setattr(s3gets, "RETRIES", 3)


class _Creds:
    access_key = "testing"
    secret_key = "testing"


def test_throttling_and_5xx_are_retried_until_the_body_comes(moto: str, fast_retries) -> None:
    keys = {f"t/{i:02d}": 3 * KiB + i for i in range(12)}
    _seed(moto, "busy", keys)
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def pick(method: str, path: str) -> int | None:
        with lock:
            seen[path] = seen.get(path, 0) + 1
            n = seen[path]
        return {1: 503, 2: 500}.get(n) if path.endswith(("/00", "/05", "/11")) else None

    proxy = _proxy(moto, pick)
    gets = _gets(proxy.endpoint_url, "busy", _Creds)
    try:
        got = {k: gets.submit(k, s, "").result(timeout=30) for k, s in keys.items()}
    finally:
        gets.close()
        proxy.close()
    assert {k: _content(b) for k, b in got.items()} == {k: _body(k, s) for k, s in keys.items()}
    assert sorted(s for _, _, s in proxy.injected) == [500] * 3 + [503] * 3
    assert seen["/busy/t/05"] == 3 and seen["/busy/t/04"] == 1


def test_a_get_that_keeps_failing_stops_with_a_transient_error(moto: str, fast_retries) -> None:
    _seed(moto, "down", {"k": KiB})
    proxy = _proxy(moto, lambda method, path: 503)
    gets = _gets(proxy.endpoint_url, "down", _Creds)
    try:
        with pytest.raises(TransientError, match=r"s3://down/k: HTTP 503 SlowDown \(4 tries\)") as err:
            gets.submit("k", KiB, "").result(timeout=30)
        assert "running again resumes" in str(err.value.hint)
    finally:
        gets.close()
        proxy.close()
    assert len(proxy.injected) == 4  # the first try and RETRIES more


def test_denied_missing_and_unreachable(moto: str, fast_retries) -> None:
    _seed(moto, "mixed", {"ok": KiB})
    proxy = _proxy(moto, lambda method, path: 403 if path.endswith("/secret") else None)
    gets = _gets(proxy.endpoint_url, "mixed", _Creds)
    try:
        with pytest.raises(SourceError, match="access denied"):
            gets.submit("secret", KiB, "").result(timeout=30)
        with pytest.raises(TransientError, match="vanished since it was listed"):
            gets.submit("gone", KiB, "").result(timeout=30)
        with pytest.raises(TransientError, match="changed since it was listed"):
            gets.submit("ok", KiB, "0" * 32).result(timeout=30)
        assert _content(gets.submit("ok", KiB, "").result(timeout=30)) == _body("ok", KiB)
    finally:
        gets.close()
        proxy.close()
    # nothing listens here any more: connection refused, retried, then a transient error
    dead = _gets(proxy.endpoint_url, "mixed", _Creds)
    try:
        with pytest.raises(TransientError, match=r"s3://mixed/ok: .*\(4 tries\)"):
            dead.submit("ok", KiB, "").result(timeout=30)
    finally:
        dead.close()


def test_an_answer_it_does_not_know_goes_to_boto3(moto: str, fast_retries) -> None:
    _seed(moto, "odd", {"k": KiB})
    proxy = _proxy(moto, lambda method, path: 400)
    handed: list[str] = []

    def fallback(key: str, size: int) -> Body:
        handed.append(key)
        return Body(key, 3, "e", None, {}, data=memoryview(b"via"))

    gets = _gets(proxy.endpoint_url, "odd", _Creds, fallback=fallback)
    try:
        assert _content(gets.submit("k", KiB, "").result(timeout=30)) == b"via"
    finally:
        gets.close()
        proxy.close()
    assert handed == ["k"] and len(proxy.injected) == 1  # not retried: boto3 decides


def test_a_get_cancelled_before_its_turn_is_never_sent(moto: str) -> None:
    _seed(moto, "few", {f"c/{i}": KiB for i in range(6)})
    paths: list[str] = []
    gate = threading.Event()

    def pick(method: str, path: str) -> None:
        paths.append(path)
        gate.wait(10)  # hold the first GET until the rest are cancelled
        return None

    proxy = _proxy(moto, pick)
    gets = _gets(proxy.endpoint_url, "few", _Creds, limit=1)
    try:
        futures: list[Future] = [gets.submit(f"c/{i}", KiB, "") for i in range(6)]
        assert all(f.cancel() for f in futures[2:])
        gate.set()
        assert _content(futures[0].result(timeout=30)) == _body("c/0", KiB)
        assert _content(futures[1].result(timeout=30)) == _body("c/1", KiB)
    finally:
        gets.close()
        proxy.close()
    assert paths == ["/few/c/0", "/few/c/1"]


def test_credentials_never_show_in_a_repr() -> None:
    creds = Creds("AKIDEXAMPLE", Secret("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), Secret("FwoGZXIvYXdzEtoken"))
    shown = repr(creds) + str(creds) + f"{creds}"
    assert "AKIDEXAMPLE" in shown  # the access key id is not a secret; it names the key in logs
    assert "wJalrXUtnFEMI" not in shown and "FwoGZXIvYXdzEtoken" not in shown


def test_a_body_bigger_than_one_curl_write_is_handed_over_in_its_pieces(s3_server) -> None:
    """libcurl hands a body to Python 16 KiB at a time; the pieces are kept as they came
    (no join: a fresh 256 KiB buffer per object cost the GET thread ~0.3 ms with the GIL
    held), and the lanes hash and send them in order (Body.iter_chunks)."""
    bucket = s3_server.new_bucket("pieces")
    s3 = s3_server.client()
    size = 300 * KiB
    s3.put_object(Bucket=bucket, Key="big", Body=_body("big", size))
    gets = _gets(s3_server.endpoint_url, bucket, s3_server)
    try:
        body = gets.submit("big", size, "").result(timeout=30)
    finally:
        gets.close()
    assert isinstance(body.data, list) and len(body.data) > 1
    assert body.size == size == sum(len(p) for p in body.data)
    assert _content(body) == _body("big", size)


def test_the_engine_is_sockets_unless_a_proxy_or_the_setting_says_otherwise() -> None:
    from relocate.settings import Tuning

    def picked(env: dict[str, str]) -> type | None:
        return engine(Tuning.from_env(env).s3_gets)

    assert picked({}) is SocketGets
    assert picked({"HTTPS_PROXY": "http://proxy.internal:3128"}) is CurlGets  # libcurl knows proxies
    assert picked({"http_proxy": "http://proxy.internal:3128"}) is CurlGets
    assert picked({"RELOCATE_S3_GETS": "sockets", "https_proxy": "http://proxy.internal:3128"}) is SocketGets
    assert picked({"RELOCATE_S3_GETS": "curl"}) is CurlGets
    assert picked({"RELOCATE_S3_GETS": "threads"}) is None


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A CA of the test's own, and a server context with a certificate it signed for localhost."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("relocate test CA")).issuer_name(name("relocate test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=1)).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(2).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("tls")
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "server.pem", d / "server.key")
    return ctx, str(d / "ca.pem")


def test_https_is_read_when_the_ca_bundle_vouches_for_the_endpoint_and_refused_when_not(moto: str, tls_pair, fast_retries) -> None:
    keys = {f"s/{i}": 3 * KiB + i for i in range(6)}
    _seed(moto, "sealed", keys)
    host, port = moto.split("//")[1].split(":")
    server_ctx, ca = tls_pair
    seen: list[str] = []
    proxy = HttpFaults((host, int(port)), lambda method, path: seen.append(path), tls=server_ctx)  # type: ignore[func-returns-value]
    assert proxy.endpoint_url.startswith("https://localhost:")  # a name: checked against the certificate
    gets = _gets(proxy.endpoint_url, "sealed", _Creds, ca_bundle=ca)
    try:
        got = {k: _content(gets.submit(k, s, "").result(timeout=30)) for k, s in keys.items()}
    finally:
        gets.close()
    assert got == {k: _body(k, s) for k, s in keys.items()}
    asked = len(seen)
    # The system's CAs do not know the test's: refused at once (retrying cannot help), nothing asked.
    untrusted = _gets(proxy.endpoint_url, "sealed", _Creds, ca_bundle=None)
    try:
        with pytest.raises(SourceError, match=r"s3://sealed/s/0: TLS: ") as err:
            untrusted.submit("s/0", keys["s/0"], "").result(timeout=30)
        assert "AWS_CA_BUNDLE" in str(err.value.hint)
    finally:
        untrusted.close()
        proxy.close()
    assert len(seen) == asked == len(keys)


class _Scripted(socketserver.ThreadingTCPServer):
    """An HTTP/1.1 server that answers each GET in one of the ways the protocol allows,
    chosen by the path's last segment, written in small pieces:

    - `chunked-*`: a 100 Continue first, then a chunked body (a chunk extension, a trailer);
    - `eof-*`: neither a length nor chunks, `Connection: close`: the body ends with the connection;
    - `once-*`: a Content-Length; the connection is kept alive, but the next request on it
      is met by a close without an answer (a server's keep-alive timeout met by a request);
    - `mute-*`: the request is read and never answered."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ScriptedHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        server: _Scripted = self.server  # type: ignore[assignment]
        pending, answered = b"", 0
        while True:
            while b"\r\n\r\n" not in pending:
                data = sock.recv(65536)
                if not data:
                    return
                pending += data
            head, pending = pending.split(b"\r\n\r\n", 1)
            path = head.split(b" ")[1].decode()
            with server.lock:
                server.paths.append(path)
            kind, key = path.rsplit("/", 1)[1].split("-")[0], path.split("/", 2)[2]
            if kind == "mute":
                time.sleep(30)
                return
            if kind == "once" and answered:
                return  # closed without an answer
            body = _body(key, 20 * KiB + len(key))
            if kind == "chunked":
                pieces = [b"HTTP/1.1 100 Continue\r\n\r\n",
                          b'HTTP/1.1 200 OK\r\nETag: "c1"\r\nContent-Type: text/x-chunked\r\nx-amz-meta-who: me\r\n'
                          b"Transfer-Encoding: chunked\r\n\r\n",
                          b"1\r\n" + body[:1] + b"\r\n", b"%x;ext=1\r\n" % 4095 + body[1:4096] + b"\r\n",
                          b"%x\r\n" % (len(body) - 4096), body[4096:], b"\r\n", b"0\r\nX-Trailer: t\r\n\r\n"]
            elif kind == "eof":
                pieces = [b'HTTP/1.1 200 OK\r\nConnection: close\r\nETag: "e1"\r\n\r\n', body[:7], body[7:]]
            else:
                pieces = [b'HTTP/1.1 200 OK\r\nETag: "o1"\r\nContent-Length: %d\r\n\r\n' % len(body), body[:100], body[100:]]
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.002)  # the client reads each piece on its own
            if kind == "eof":
                sock.shutdown(socket.SHUT_WR)
                return
            answered += 1


def test_every_way_http_11_ends_an_answer_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3gets, "RETRIES", 0)  # a kept-alive connection closed under a GET is not a failure: no retry needed
    server = _Scripted()
    keys = [f"chunked-{i}" for i in range(3)] + [f"eof-{i}" for i in range(3)] + [f"once-{i}" for i in range(8)]
    gets = _gets(server.endpoint_url, "b", _Creds, limit=2)
    try:
        got = {k: gets.submit(k, 0, "").result(timeout=30) for k in keys}
    finally:
        gets.close()
        server.shutdown()
        server.server_close()
    assert {k: _content(b) for k, b in got.items()} == {k: _body(k, 20 * KiB + len(k)) for k in keys}
    assert all(b.size == 20 * KiB + len(k) for k, b in got.items())
    chunked = got["chunked-0"]
    assert (chunked.etag, chunked.content_type, chunked.metadata) == ("c1", "text/x-chunked", {"who": "me"})
    assert got["eof-1"].etag == "e1" and got["once-7"].etag == "o1"
    # the `once` GETs that met a closed connection were sent again, each on a new one
    assert len(server.paths) > len(keys) and set(server.paths) == {f"/b/{k}" for k in keys}


def test_a_get_that_gets_no_byte_for_the_stall_time_fails_and_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3gets, "STALL_S", 1.0)
    monkeypatch.setattr(s3gets, "RETRIES", 1)
    monkeypatch.setattr(s3gets, "BACKOFF_S", 0.01)
    server = _Scripted()
    gets = _gets(server.endpoint_url, "b", _Creds, limit=2)
    started = time.monotonic()
    try:
        with pytest.raises(TransientError, match=r"s3://b/mute-0: .*\(2 tries\)"):
            gets.submit("mute-0", 0, "").result(timeout=30)
    finally:
        gets.close()
        server.shutdown()
        server.server_close()
    assert time.monotonic() - started < 10
    assert server.paths == ["/b/mute-0", "/b/mute-0"]


def test_a_ca_bundle_that_cannot_be_read_fails_each_get_with_a_hint(moto: str, tls_pair, tmp_path, fast_retries) -> None:
    host, port = moto.split("//")[1].split(":")
    proxy = HttpFaults((host, int(port)), lambda method, path: None, tls=tls_pair[0])
    gets = _gets(proxy.endpoint_url, "b", _Creds, ca_bundle=str(tmp_path / "no-such-ca.pem"))
    try:
        with pytest.raises(SourceError, match=r"s3://b/k: TLS: ") as err:
            gets.submit("k", 1, "").result(timeout=30)
        assert "AWS_CA_BUNDLE" in str(err.value.hint)
    finally:
        gets.close()
        proxy.close()
