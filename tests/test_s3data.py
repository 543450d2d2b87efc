"""ObjectReader.get_many (sources/s3data.py) against real S3 servers: moto and SeaweedFS.

Order, bodies and metadata as listed; odd keys read exactly; an object changed or gone
since the listing fails when its turn comes; the read-ahead stays within its byte
budget, and an early stop gives the budget back. Each runs with small bodies read by
libcurl (the default) and by the thread pool (RELOCATE_S3_GETS=threads, or no pycurl).
"""

from __future__ import annotations

import hashlib
import json
import random

import boto3
import pytest

from relocate.config import AwsSpec
from relocate.errors import TransientError
from relocate.sources.aws import Aws
from relocate.sources.inventory import ObjectInfo
from relocate.sources.s3data import ByteBudget, ObjectReader, _native_ok

KiB = 1024


def _body(key: str, size: int) -> bytes:
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@pytest.fixture(params=["curl", "threads"])
def engine(request: pytest.FixtureRequest) -> str:
    """Who reads the small bodies: s3gets' libcurl multi handle, or `get` on a thread pool
    (RELOCATE_S3_GETS, read by the CLI into relocate.settings and handed to the reader)."""
    return request.param


@pytest.fixture
def reader_for(s3_server, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """Seed a fresh bucket with {key: size}; returns (ObjectReader, [ObjectInfo] as listed, client)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    readers: list[ObjectReader] = []

    def make(objects: dict[str, int]):
        bucket = s3_server.new_bucket("getmany")
        s3 = s3_server.client()
        for key, size in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=_body(key, size), ContentType="image/x-test",
                          Metadata={"owner": "u1"})
        listed = [ObjectInfo(o["Key"], o["Size"], o["ETag"].strip('"'), 0.0)
                  for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                  for o in page.get("Contents", [])]
        gets = request.getfixturevalue("engine") if "engine" in request.fixturenames else "auto"
        reader = ObjectReader(Aws(AwsSpec(region="us-east-1", endpoint_url=s3_server.endpoint_url)), bucket, gets=gets)
        readers.append(reader)
        return reader, listed, s3

    yield make
    for r in readers:
        r.close()


def _read(body) -> bytes:
    return b"".join(bytes(c) for c in body.iter_chunks())


def test_get_many_yields_in_the_given_order_whole_and_streamed(reader_for, engine: str) -> None:
    sizes = {f"img/{i:03d}.bin": (i * 7919) % (40 * KiB) for i in range(40)}  # 0 bytes included
    sizes["video/big.bin"] = 300 * KiB  # above whole_below: streamed, in chunks
    reader, listed, _ = reader_for(sizes)
    order = listed[:]
    random.Random(6).shuffle(order)
    got = []
    for obj, body in reader.get_many(order, concurrency=4, budget_bytes=128 * KiB, whole_below=64 * KiB):
        assert body.key == obj.key and body.size == obj.size and body.etag == obj.etag
        assert body.content_type == "image/x-test" and body.metadata == {"owner": "u1"}
        assert (body.data is None) == (obj.size > 64 * KiB)
        assert _read(body) == _body(obj.key, obj.size)
        got.append(obj.key)
    assert got == [o.key for o in order]


def test_get_many_reads_odd_keys_exactly(reader_for, s3_server, engine: str) -> None:
    keys = {k: 3 * KiB for k in ("/abs", "tr/", "a//b", "x/./y", "tab\tkey")} | {"abs": KiB, "tr": KiB}
    if s3_server.name == "seaweedfs":  # its filer rewrites "/abs", "a//b" and "tr/" and refuses "x/./y"
        keys = {"tab\tkey": 3 * KiB}
    keys["plain/ok.txt"] = 2 * KiB
    reader, listed, _ = reader_for(keys)
    assert sorted(o.key for o in listed) == sorted(keys)
    assert any(not _native_ok(o.key) for o in listed)
    seen = {obj.key: _read(body) for obj, body in reader.get_many(listed, concurrency=3)}
    # "/abs" and "tr/" must not come back as "abs" and "tr" (object_store trims them)
    assert seen == {k: _body(k, s) for k, s in keys.items()}
    assert (reader._gets is not None) == (engine == "curl")  # the engine asked for did the reading


def test_get_many_object_changed_or_gone_since_listing(reader_for, engine: str) -> None:
    reader, listed, s3 = reader_for({f"k/{i}": 2 * KiB for i in range(6)})
    s3.put_object(Bucket=reader.bucket, Key="k/3", Body=b"a newer version")
    got = []
    with pytest.raises(TransientError, match="changed since it was listed"):
        for obj, _ in reader.get_many(listed, concurrency=4):
            got.append(obj.key)
    assert got == ["k/0", "k/1", "k/2"]  # everything before it, nothing after
    s3.delete_object(Bucket=reader.bucket, Key="k/4")
    with pytest.raises(TransientError, match="vanished"):
        for _ in reader.get_many(listed[4:], concurrency=4):
            pass


def test_get_many_stays_within_its_byte_budget(reader_for, engine: str) -> None:
    reader, listed, _ = reader_for({f"b/{i:02d}": 20 * KiB for i in range(30)} | {"b/zz-large": 90 * KiB})
    budget = ByteBudget(64 * KiB)
    n = 0
    for obj, body in reader.get_many(listed, concurrency=8, budget_bytes=budget, whole_below=128 * KiB):
        assert budget.used <= 90 * KiB  # the consumer's next body always goes through, even above the limit
        assert _read(body) == _body(obj.key, obj.size)
        n += 1
    assert n == len(listed)
    assert budget.used == 0
    assert 20 * KiB < budget.peak <= 90 * KiB  # read ahead, but only the one oversized body past the limit
    # A consumer that stops early gives back what was read ahead for it.
    it = reader.get_many(listed, concurrency=8, budget_bytes=budget)
    next(it)
    assert budget.used > 0
    it.close()
    assert budget.used == 0


def test_read_ahead_asks_for_more_only_when_small_bodies_are_all_that_is_left(reader_for, engine: str) -> None:
    """A lane's ReadAhead runs on into its next batch (`more`) while the current batch's
    last bodies are consumed, but never while a big (streamed) body is ahead of the
    consumer or in its hands: a lane streaming a big object must not take the next batch
    from the other lanes. fill() starts the GETs before anything is consumed."""
    from concurrent.futures import ThreadPoolExecutor

    from relocate.sources.s3data import ReadAhead, whole_reads

    sizes = {f"a/{i}": 2 * KiB for i in range(3)} | {"b/big": 300 * KiB} | {f"c/{i}": 3 * KiB for i in range(3)}
    reader, listed, _ = reader_for(sizes)
    by_key = {o.key: o for o in listed}
    batches = [[by_key["b/big"]], [by_key[f"c/{i}"] for i in range(3)]]
    asked: list[int] = []
    started: list[str] = []

    def more() -> list[ObjectInfo] | None:
        asked.append(len(started))
        return batches.pop(0) if batches else None

    budget = ByteBudget(1 << 20)
    with ThreadPoolExecutor(4) as pool:
        start = whole_reads(reader, pool, 4)
        ahead = ReadAhead(reader.get, [by_key[f"a/{i}"] for i in range(3)], budget=budget, window=8,
                          whole_below=64 * KiB, more=more,
                          start=lambda o: (started.append(o.key), start(o))[1])
        ahead.fill()
        assert started == ["a/0", "a/1", "a/2"] and asked == [3]  # the big one is next: nothing after it yet
        got = [next(ahead) for _ in range(3)]
        assert [o.key for o, _ in got] == ["a/0", "a/1", "a/2"] and asked == [3]  # the big body is still ahead
        obj, body = next(ahead)
        assert obj.key == "b/big" and asked == [3]  # in the consumer's hands: still no more
        assert _read(body) == _body("b/big", 300 * KiB)
        assert ahead.peek() == by_key["c/0"]  # done with it: the next batch's GETs go out
        assert asked == [3, 3, 6] and started[3:] == ["c/0", "c/1", "c/2"]  # and, with room left, found the end
        rest = list(ahead)
        assert [o.key for o, _ in rest] == ["c/0", "c/1", "c/2"] and asked == [3, 3, 6]
        assert all(_read(b) == _body(o.key, o.size) for o, b in got + rest)
    assert budget.used == 0


def test_a_bucket_in_another_region_is_read_signed_for_its_own(moto: str, monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    """relocate.yaml names us-east-1; the bucket lives in eu-west-1. boto3 follows S3's
    redirects by itself, the native readers sign for the region HeadBucket reports."""
    from helpers import aws_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="far-away", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    keys = {f"f/{i}": 3 * KiB + i for i in range(5)}
    for key, size in keys.items():
        s3.put_object(Bucket="far-away", Key=key, Body=_body(key, size))
    reader = ObjectReader(Aws(AwsSpec(region="us-east-1", endpoint_url=moto)), "far-away", gets=engine)
    try:
        assert reader._region == "eu-west-1"
        assert reader.store.config.get("region") == "eu-west-1"  # obstore's too
        listed = [ObjectInfo(k, s, "", 0.0) for k, s in keys.items()]
        assert {o.key: _read(b) for o, b in reader.get_many(listed, concurrency=2)} == {k: _body(k, s) for k, s in keys.items()}
        if engine == "curl":
            assert reader._gets.signer.region == "eu-west-1"
    finally:
        reader.close()
    same = ObjectReader(Aws(AwsSpec(region="eu-west-1", endpoint_url=moto)), "far-away")
    assert same._region == "eu-west-1"
    same.close()


# --------------------------------------------------------------------------- listing parse

_LISTING = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix></Prefix><KeyCount>4</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
  <NextContinuationToken>tok</NextContinuationToken><StartAfter>a</StartAfter>
  <Contents><Key>img/001.jpg</Key><LastModified>2026-11-27T10:40:00.000Z</LastModified>
    <ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>262144</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>odd &amp; &lt;key&gt; </Key><LastModified>Thu, 27 Nov 2026 10:40:00 GMT</LastModified><ETag></ETag>
    <Size>0</Size><Owner><ID>abc</ID><DisplayName>me</DisplayName></Owner>
    <ChecksumAlgorithm>CRC32</ChecksumAlgorithm><ChecksumAlgorithm>SHA256</ChecksumAlgorithm>
    <ChecksumType>FULL_OBJECT</ChecksumType><Unknown>ignored</Unknown>
    <RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress></RestoreStatus></Contents>
  <Contents><Key>one-checksum</Key><ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm><Size>5</Size></Contents>
  <CommonPrefixes><Prefix>dir/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>other/</Prefix></CommonPrefixes>
</ListBucketResult>"""


def test_fast_listing_parser_agrees_with_botocore() -> None:
    from botocore.parsers import RestXMLParser

    from relocate.sources.awsparse import _ListingXmlParser, _timestamp

    client = Aws(AwsSpec(region="us-east-1", endpoint_url="http://127.0.0.1:9")).client("s3")
    for op in ("ListObjectsV2", "ListObjects", "ListObjectVersions"):
        shape = client.meta.service_model.operation_model(op).output_shape
        body = _LISTING
        if op == "ListObjectVersions":  # versions and delete markers interleaved, as S3 sends them
            marker = (b"<DeleteMarker><Key>gone</Key><VersionId>v&#49;</VersionId><IsLatest>true</IsLatest>"
                      b"<LastModified>2026-11-27T10:40:00.000Z</LastModified></DeleteMarker>")
            body = _LISTING.replace(b"Contents", b"Version").replace(b"<Version><Key>one", marker + b"<Version><Key>one")
            body = body.replace(b"<CommonPrefixes>", marker.replace(b"gone", b"gone2") + b"<CommonPrefixes>", 1)
        response = {"body": body, "headers": {}, "status_code": 200}
        want = RestXMLParser(timestamp_parser=_timestamp).parse(dict(response), shape)
        got = _ListingXmlParser(timestamp_parser=_timestamp).parse(dict(response), shape)
        assert got == want, op
    assert len(got["Versions"]) == 3 and got["Versions"][1]["ChecksumAlgorithm"] == ["CRC32", "SHA256"]
    assert [(m["Key"], m["VersionId"], m["IsLatest"]) for m in got["DeleteMarkers"]] == [("gone", "v1", True), ("gone2", "v1", True)]


def _simple_page(n: int, extra: bytes = b"") -> bytes:
    entries = b"".join(b"<Contents><Key>k/%05d \xc3\xbc&amp;&#233;&#x1F600;</Key><LastModified>2026-11-27T10:40:%02d.000Z</LastModified>"
                       b"<ETag>&quot;%032x&quot;</ETag><Size>%d</Size><StorageClass>STANDARD</StorageClass>"
                       b"<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType></Contents>\n"
                       % (i, i % 60, i, i * 7) for i in range(n))
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Name>b</Name><Prefix>k/</Prefix><KeyCount>%d</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
            % n + entries + extra + b"<CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes></ListBucketResult>")


@pytest.mark.parametrize("extra", [b"", b"<Contents><Key>a &amp b</Key></Contents>", b"<Contents><Key>cr\r\n</Key></Contents>",
                                   b"<Contents><Key><![CDATA[x<y]]></Key></Contents>", b'<Contents a="1"><Key>attr</Key></Contents>',
                                   b"<Contents><Key>bad &#0; ref</Key></Contents>", b"<Contents><Key>ctl \x01</Key></Contents>",
                                   b"<Contents><Key>empty</Key><ETag/><Size>0</Size></Contents>",
                                   b"<Contents><Key>x</Key><Size>1</Size><Size>2</Size></Contents>"])
def test_listing_pages_parsed_from_the_bytes_equal_botocores_parse(extra: bytes) -> None:
    """A listing page's entries are cut from the bytes and converted without an element
    tree (awsparse._ListingXmlParser._split_page); the result is botocore's, key for key,
    and a page an XML parser would refuse or rewrite gets botocore's own verdict."""
    from botocore.parsers import ResponseParserError, RestXMLParser

    from relocate.sources.awsparse import _ListingXmlParser, _timestamp

    client = Aws(AwsSpec(region="us-east-1", endpoint_url="http://127.0.0.1:9")).client("s3")
    shape = client.meta.service_model.operation_model("ListObjectsV2").output_shape
    response = {"body": _simple_page(300, extra), "headers": {}, "status_code": 200}
    try:
        want = RestXMLParser(timestamp_parser=_timestamp).parse(dict(response), shape)
    except (ResponseParserError, TypeError) as exc:  # malformed XML; a field given twice
        with pytest.raises(type(exc)):
            _ListingXmlParser(timestamp_parser=_timestamp).parse(dict(response), shape)
        return
    trees: list[int] = []
    parser = _ListingXmlParser(timestamp_parser=_timestamp)
    real = parser._parse_xml_string_to_dom
    parser._parse_xml_string_to_dom = lambda xml: (trees.append(len(xml)), real(xml))[1]  # type: ignore[method-assign]
    got = parser.parse(dict(response), shape)
    assert got == want
    assert len(got["Contents"]) == 300 + (extra.count(b"<Contents") if b"Key" in extra else 0)
    if not extra:  # the fast path was taken: only the page's head and tail went through an element tree
        assert len(trees) == 1 and trees[0] < 1000, trees  # 300 entries: ~110,000 bytes


def test_listing_pages_are_checked_for_an_error_body_without_a_second_parse(reader_for, monkeypatch: pytest.MonkeyPatch) -> None:
    # awsparse._listing_200_error stands in for botocore's _handle_200_error on listings:
    # the same verdicts (an <Error> root or a body cut short is turned into a 500 and
    # retried), without parsing the whole page into a tree first.
    from botocore import handlers

    from relocate.sources.awsparse import _listing_200_error

    client = Aws(AwsSpec(region="us-east-1", endpoint_url="http://127.0.0.1:9")).client("s3")
    error = b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code></Error>'
    for op in ("ListObjectsV2", "ListObjectVersions", "GetBucketAcl"):
        model = client.meta.service_model.operation_model(op)
        for body in (_LISTING, _LISTING + b"\n", error, _LISTING[:-40], b"", b"not xml"):
            ours, theirs = {"body": body, "status_code": 200, "headers": {}}, {"body": body, "status_code": 200, "headers": {}}
            _listing_200_error(model, ours)
            handlers._handle_200_error(model, theirs)
            assert ours["status_code"] == theirs["status_code"], (op, body[:60])
        whole, cut = {"body": _LISTING, "status_code": 200}, {"body": _LISTING[:-40], "status_code": 200}
        _listing_200_error(model, whole)
        _listing_200_error(model, cut)
        assert (whole["status_code"], cut["status_code"]) == (200, 500)
    # a real listing through relocate's client never falls back to botocore's whole-tree parse
    reader, _, plain = reader_for({f"p/{i:03d}": 1 for i in range(5)})
    trees: list[bytes] = []
    real = handlers._looks_like_special_case_error
    monkeypatch.setattr(handlers, "_looks_like_special_case_error", lambda status, body: trees.append(body) or real(status, body))
    for s3 in (reader.s3, plain):
        listed = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=reader.bucket) for o in p.get("Contents", [])]
        assert len(listed) == 5
    assert len(trees) == 1  # the plain boto3 client's page; relocate's own went without


def test_listing_through_relocate_equals_plain_boto3(reader_for, s3_server) -> None:
    # Keys whose XML needs escaping (and, without EncodingType=url, a CR and a control
    # character: botocore's path for those pages) come back as plain boto3 lists them.
    odd = {"tab\tkey": 3, "amp&<lt>\"q'.txt": 1, "cr\rkey": 2, "ctl\x01key": 1, "ünï/cødé": 2}
    reader, listed, s3 = reader_for({f"l/{i:03d}": i for i in range(30)} | odd)
    ours = Aws(AwsSpec(region="us-east-1", endpoint_url=s3_server.endpoint_url)).client("s3")
    for kw in ({}, {"MaxKeys": 7}, {"Delimiter": "/"}, {"FetchOwner": True}, {"EncodingType": "url"}):
        a = [p.get("Contents", []) + p.get("CommonPrefixes", [])
             for p in ours.get_paginator("list_objects_v2").paginate(Bucket=reader.bucket, **kw)]
        b = [p.get("Contents", []) + p.get("CommonPrefixes", [])
             for p in s3.get_paginator("list_objects_v2").paginate(Bucket=reader.bucket, **kw)]
        assert a == b, kw
        assert sum(len(p) for p in a) == (6 if "Delimiter" in kw else 35), kw  # with "/": l/ and ünï/ one prefix each


_TREE = ["top.txt", "dir/", "dir/a.bin", "dir/sub/b.bin", "dir/sub/deeper/c.bin", "a//b", "a/b", "tab\tkey/x",
         "ü/é.txt", "t", "t2/x", *[f"t/{i:02d}/n-{j}.txt" for i in range(6) for j in range(3)], "users/" + "z" * 40]


@pytest.mark.parametrize("fanout,max_split", [(16, 256), (2, 256), (2, 3), (1, 1)])
def test_bucket_listing_walks_prefixes_side_by_side_and_misses_nothing(reader_for, s3_server, monkeypatch: pytest.MonkeyPatch,
                                                                        fanout: int, max_split: int) -> None:
    """list_bucket splits a tree-shaped bucket by prefix (sources/inventory.py): whatever
    the split, it finds exactly what one flat listing finds, for any prefix."""
    from relocate.config import BucketSpec
    from relocate.sources import inventory

    monkeypatch.setattr(inventory, "LIST_FANOUT", fanout)
    monkeypatch.setattr(inventory, "LIST_MAX_SPLIT", max_split)
    reader, _, s3 = reader_for({key: 1 + len(key) for key in _TREE})
    aws = Aws(AwsSpec(region="us-east-1", endpoint_url=s3_server.endpoint_url))
    calls: list[dict] = []
    aws.client("s3").meta.events.register("provide-client-params.s3.ListObjectsV2", lambda params, **kw: calls.append(dict(params)))
    for prefix in ("", "t", "t/", "dir/sub/", "dir/sub/deeper/c", "nothing-here/"):
        calls.clear()
        got = inventory.list_bucket(aws, BucketSpec(reader.bucket, prefix, "data")).objects
        want = sorted(((o["Key"], o["Size"], o["ETag"].strip('"'))
                       for page in s3.get_paginator("list_objects_v2").paginate(Bucket=reader.bucket, Prefix=prefix)
                       for o in page.get("Contents", [])))
        assert [(o.key, o.size, o.etag) for o in got] == want, prefix
        assert all(o.last_modified > 0 for o in got)
        if prefix == "":  # (SeaweedFS folds "a//b" into "a/b": the flat listing is the reference)
            assert len(want) >= len(_TREE) - 1
            walked = [c["Prefix"] for c in calls if c.get("Delimiter") == "/"]
            whole = sorted(c["Prefix"] for c in calls if "Delimiter" not in c and "MaxKeys" not in c)  # (MaxKeys: a density sample)
            tops = sorted({k.split("/")[0] + "/" for k in _TREE if "/" in k})
            if fanout == 1:  # one prefix is already "enough": the plain single pass
                assert (walked, whole) == ([], [""])
            elif max_split < len(tops):  # too many prefixes to list one by one: the root, whole
                assert (walked, whole) == ([""], [""])
            elif fanout == 2:  # the first level gave enough prefixes: each listed whole
                assert (walked, whole) == ([""], tops)
            else:  # walked deeper, and never listed one prefix twice
                assert len(walked) > 1 and len(set(whole)) == len(whole)


def test_versioning_refused_is_unknown_not_a_failure(moto: str) -> None:
    """Credentials that may list and read but not ask GetBucketVersioning: the plan says it
    cannot tell (a warning) instead of failing; any other refusal still fails."""
    from botocore.awsrequest import AWSResponse

    from relocate.config import BucketSpec
    from relocate.sources import inventory

    boto3.client("s3", endpoint_url=moto, region_name="us-east-1").create_bucket(Bucket="vers-denied")
    aws = Aws(AwsSpec(region="us-east-1", endpoint_url=moto))

    class _Raw:
        def stream(self, **_):
            yield (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                   b'<Message>not allowed</Message></Error>')

    def deny(request, **_):
        return AWSResponse(request.url, 403, {}, _Raw())

    aws.client("s3").meta.events.register("before-send.s3.GetBucketVersioning", deny)
    assert inventory.versioning(aws, "vers-denied") == "unknown"
    listings, left = inventory.take_versions(aws, (BucketSpec("vers-denied", "", "data"),))
    assert listings == [] and left[0]["status"] == "unknown"
    from relocate.kinds.objects import plan_objects

    part = plan_objects(inventory.Inventory(versions_left=left), {})
    assert any(w.code == "s3-versions" and "cannot tell whether it keeps older versions" in w.message for w in part.warnings)


def test_many_dense_prefixes_are_listed_side_by_side(reader_for, s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past LIST_MAX_SPLIT prefixes, a level whose sampled prefixes are dense is still
    listed one prefix per request, side by side (1,000 directories of 1,000 keys are not
    one serial walk of 1,000 pages); sparse ones go on being listed whole."""
    from relocate.config import BucketSpec
    from relocate.sources import inventory

    keys = {f"d/{i:02d}/{j}.bin": 3 for i in range(8) for j in range(4)}
    reader, _, s3 = reader_for(keys)
    aws = Aws(AwsSpec(region="us-east-1", endpoint_url=s3_server.endpoint_url))
    calls: list[dict] = []
    aws.client("s3").meta.events.register("provide-client-params.s3.ListObjectsV2", lambda params, **kw: calls.append(dict(params)))
    monkeypatch.setattr(inventory, "LIST_MAX_SPLIT", 4)
    for dense, want_whole in ((4, [f"d/{i:02d}/" for i in range(8)]), (5, ["d/"])):
        monkeypatch.setattr(inventory, "LIST_DENSE", dense)
        calls.clear()
        got = inventory.list_bucket(aws, BucketSpec(reader.bucket, "", "data")).objects
        assert [o.key for o in got] == sorted(keys)
        assert sorted(c["Prefix"] for c in calls if "Delimiter" not in c and "MaxKeys" not in c) == want_whole


def test_the_session_takes_profile_and_region_as_boto3_did(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Aws makes botocore's session itself (boto3's import is not on the way to the first
    listing): relocate.yaml's region over the profile's, the profile's where relocate
    asks for the user's default (`discover`), and an unknown profile is one clear error
    naming source.aws.profile, as with boto3.Session."""
    from relocate.errors import SourceError
    from relocate.sources.discover import default_region

    conf = tmp_path / "config"
    conf.write_text("[profile far]\nregion = ap-southeast-2\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(conf))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    assert default_region("far") == boto3.Session(profile_name="far").region_name == "ap-southeast-2"
    aws = Aws(AwsSpec(profile="far", region="eu-north-1"))
    assert aws.region_name == aws.client("s3").meta.region_name == "eu-north-1"
    assert default_region(None) == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "sa-east-1")
    assert default_region(None) == "sa-east-1"
    with pytest.raises(SourceError, match=r"source\.aws\.profile: .*nope"):
        Aws(AwsSpec(profile="nope")).client("s3")


def test_the_model_loader_gives_botocores_models_and_errors(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sources/botomodels.py loads models into plain dicts and checks only the service
    asked for: the same models as botocore's own loader, the same UnknownServiceError
    naming every known service, and AWS_DATA_PATH's models found first."""
    import botocore.exceptions
    import botocore.session

    from relocate.sources.botomodels import model_loader

    plain, stock = model_loader(None), botocore.session.Session().get_component("data_loader")
    for service, kind in (("s3", "service-2"), ("s3", "endpoint-rule-set-1"), ("ssm", "paginators-1"),
                          ("secretsmanager", "service-2"), ("route53", "waiters-2")):
        ours = plain.load_service_model(service, kind)
        assert type(ours) is dict
        assert ours == stock.load_service_model(service, kind)
    assert plain.load_data("endpoints") == stock.load_data("endpoints")
    known = plain.list_available_services("service-2")
    assert "s3" in known and "no-such-service" not in known and "../s3" not in known
    assert list(known) == stock.list_available_services("service-2")
    with pytest.raises(botocore.exceptions.UnknownServiceError) as err:
        plain.load_service_model("no-such-service", "service-2")
    assert "s3, s3control" in str(err.value).replace("\n", " ")

    # A model under AWS_DATA_PATH wins, as with botocore's loader (here: one operation fewer).
    model = dict(stock.load_service_model("sts", "service-2"))
    model["operations"] = {k: v for k, v in model["operations"].items() if k != "GetSessionToken"}
    version = model["metadata"]["apiVersion"]
    (tmp_path / "sts" / version).mkdir(parents=True)
    (tmp_path / "sts" / version / "service-2.json").write_text(json.dumps(model))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    sts = Aws(AwsSpec(region="eu-west-1")).client("sts")
    assert hasattr(sts, "get_caller_identity") and not hasattr(sts, "get_session_token")
