"""sources/s3gets.py: small S3 GETs on one libcurl multi handle, signed by relocate.

The signature is compared with botocore's own signer, byte for byte; the GETs run
against moto and SeaweedFS (odd keys included, no help from boto3), and through a proxy
that throttles, fails, refuses or answers oddly, to check what is retried, what stops,
and what is handed to boto3.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
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
from relocate.sources.s3gets import Creds, CurlGets, SigV4, object_url

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


def _gets(endpoint: str, bucket: str, server, fallback=None, limit: int = 4) -> CurlGets:
    def refuse(key: str, size: int) -> Body:
        raise AssertionError(f"{key} was handed to boto3")

    return CurlGets(endpoint=endpoint, bucket=bucket, region="us-east-1", virtual=False,
                    credentials=lambda: Creds(server.access_key, Secret(server.secret_key)), fallback=fallback or refuse, limit=limit)


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
