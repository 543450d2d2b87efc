"""Receipts (issue 18): the receiver writes one as it places each file, so a move killed
before it journalled a batch does not send that batch's placed files again.

Real servers: moto for S3, the test sshd as the target (its files are on this machine,
so the test watches the receipts appear and kills the sender right after). The batch is
slowed with --bwlimit and made one per lane, so the kill lands after some files are in
place and before any batch is journalled.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import yaml

from helpers import aws_client, make_config
from relocate.snapshot import receipts
from relocate.snapshot.manifest import ObjectEntry
from relocate.execute.wire import AGENT_SOURCE

N = 40
SIZE = 256 * 1024  # the sender writes in 1 MiB buffers: several files per write


def _seed(moto: str) -> tuple[str, dict[str, bytes]]:
    bucket = "rcpt" + secrets.token_hex(3)
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket=bucket)
    objects = {f"p/{i:03d}.bin": os.urandom(SIZE) for i in range(N)}
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="image/x-test", Metadata={"owner": "u1"})
    return bucket, objects


def _receipt_lines(root: Path) -> list[bytes]:
    where = root / ".relocate" / "receipts" / "data"
    out: list[bytes] = []
    for f in sorted(where.glob("*.r")) if where.is_dir() else []:
        out += [line for line in f.read_bytes().split(b"\n") if line]
    return out


def _move(cfg: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", "--json", *extra],
                          capture_output=True, text=True, timeout=300)


def _killed_part_way(tmp_path: Path, moto: str, sshd) -> tuple[Path, Path, dict[str, bytes], set[str]]:
    """A move SIGKILLed once at least 5 files are placed (their receipts on the target),
    while its one batch is still streaming: nothing journalled yet. Returns the config,
    the target root, the objects and the keys the receipts name."""
    bucket, objects = _seed(moto)
    root = sshd.root / f"rcpt-{bucket}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data"}])
    env = {**os.environ, "RELOCATE_BATCH_OBJECTS": str(N)}
    # 40 x 256 KiB at 2 MiB/s: the batch streams for ~5 s, the first files land within one
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", "--json",
                             "--lanes", "1", "--bwlimit", "2M"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_receipt_lines(root)) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    db = sqlite3.connect(tmp_path / "snapshots" / "journal.sqlite")
    try:
        assert db.execute("SELECT count(*) FROM objects").fetchone()[0] == 0, "killed before the batch was journalled"
    finally:
        db.close()
    # the receiver saw its stream end and stopped; what it placed stays, each with its receipt line
    time.sleep(0.2)
    named = set(receipts.parse(b"\n".join(_receipt_lines(root)) + b"\n", bucket))
    placed = {str(p.relative_to(root / "data")) for p in (root / "data").rglob("*") if p.is_file()}
    assert 5 <= len(named) < N and named <= placed
    for key in named:  # whole and right: a receipt is only written once the file is in place
        assert (root / "data" / key).read_bytes() == objects[key]
    return cfg, root, objects, named


def _assert_complete(root: Path, objects: dict[str, bytes]) -> None:
    base = root / "data"
    found = {str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest() for p in base.rglob("*") if p.is_file()}
    assert found == {k: hashlib.sha256(v).hexdigest() for k, v in objects.items()}


def test_a_resume_sends_none_of_the_files_the_receipts_name(moto: str, sshd, tmp_path: Path) -> None:
    cfg, root, objects, named = _killed_part_way(tmp_path, moto, sshd)
    inodes = {k: os.stat(root / "data" / k).st_ino for k in named}
    r = _move(cfg)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)["result"]
    assert result["objects_sent"] == N - len(named), "a file a receipt names was sent again"
    assert result["objects_skipped"] == len(named)
    assert result["verify"]["ok"] and result["verify"]["matched"] == N and result["verify"]["checked_on_arrival"] == N
    assert {k: os.stat(root / "data" / k).st_ino for k in named} == inodes  # not rewritten
    _assert_complete(root, objects)
    # folded at the step's end: the sidecar names every object with its metadata, and no receipt is left
    assert not (root / ".relocate" / "receipts" / "data").exists()
    assert not (root / ".relocate" / "receipts").exists()  # its parent too, once empty (README: only after a kill)
    side = json.loads((root / ".relocate" / "buckets" / "data.json").read_bytes())
    by_key = {o["key"]: o for o in side["objects"]}
    assert set(by_key) == set(objects)
    for key in named:
        assert by_key[key]["sha256"] == hashlib.sha256(objects[key]).hexdigest()
        assert by_key[key]["content_type"] == "image/x-test" and by_key[key]["metadata"] == {"owner": "u1"}
    # ... and journalled: the next move has nothing to do, and `verify` re-hashes all of it clean
    again = _move(cfg)
    assert again.returncode == 0 and json.loads(again.stdout)["result"]["nothing_to_do"]
    verify = subprocess.run([sys.executable, "-m", "relocate", "verify", "-f", str(cfg), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0 and json.loads(verify.stdout)["matched"] == N


def test_a_receipt_is_not_trusted_for_a_file_truncated_or_deleted_since(moto: str, sshd, tmp_path: Path) -> None:
    cfg, root, objects, named = _killed_part_way(tmp_path, moto, sshd)
    cut, gone = sorted(named)[:2]
    with open(root / "data" / cut, "r+b") as fh:
        fh.truncate(SIZE // 2)
    (root / "data" / gone).unlink()
    r = _move(cfg)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)["result"]
    assert result["objects_sent"] == N - len(named) + 2
    assert result["verify"]["ok"] and result["verify"]["matched"] == N
    _assert_complete(root, objects)


def test_receipts_are_folded_even_when_nothing_is_left_to_send(moto: str, sshd, tmp_path: Path) -> None:
    cfg, root, objects, named = _killed_part_way(tmp_path, moto, sshd)
    bucket = yaml_bucket(cfg)
    s3 = aws_client("s3", moto)
    for key in set(objects) - named:  # what the receipts do not name is gone from the source
        s3.delete_object(Bucket=bucket, Key=key)
    r = _move(cfg)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)["result"]
    assert result["objects_sent"] == 0 and result["objects_skipped"] == len(named)
    assert not (root / ".relocate" / "receipts" / "data").exists()
    side = json.loads((root / ".relocate" / "buckets" / "data.json").read_bytes())
    assert {o["key"] for o in side["objects"]} == named
    db = sqlite3.connect(tmp_path / "snapshots" / "journal.sqlite")
    try:
        assert {k for (k,) in db.execute("SELECT key FROM objects")} == named
    finally:
        db.close()


def yaml_bucket(cfg: Path) -> str:
    return yaml.safe_load(cfg.read_text())["source"]["s3"][0]["bucket"]


# ----------------------------------------------------------------- the two ends, on pipes

def _file(path: bytes, data: bytes, digest: bytes | None = None) -> bytes:
    return (b"F" + struct.pack(">IQq", len(path), len(data), 1_600_000_000) + path + data
            + (digest or hashlib.sha256(data).digest()))


def _note(record: bytes) -> bytes:
    return b"M" + len(record).to_bytes(4, "big") + record


def test_the_receiver_writes_a_receipt_line_per_file_placed_and_none_for_a_damaged_one(tmp_path: Path) -> None:
    stage, final, where = tmp_path / "r" / ".relocate" / "staging" / "1", tmp_path / "r" / "data", tmp_path / "r" / ".relocate" / "receipts" / "data"
    recs = [receipts.describe("b", f"k{i}", f'"e{i}"', 3, f"data/f{i}", "text/plain", {"m": str(i)}) for i in range(3)]
    stream = (b"RLC1" + b"R" + len(bytes(where)).to_bytes(4, "big") + bytes(where)
              + _note(recs[0]) + _file(b"f0", b"aaa")
              + _note(recs[1]) + _file(b"f1", b"bbb", digest=b"\0" * 32)  # damaged: not placed, no receipt
              + b"E" + _note(recs[2]) + _file(b"f2", b"ccc") + _file(b"f3", b"ddd") + b"E")  # f3: no note, no line
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", AGENT_SOURCE, str(stage), str(final), str(tmp_path / "r")],
                          input=stream, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in final.iterdir()) == ["f0", "f2", "f3"]
    [log] = list(where.glob("*.r"))
    assert log.stat().st_mode & 0o777 == 0o600
    got = receipts.parse(log.read_bytes(), "b")
    assert sorted(got) == ["k0", "k2"]
    assert got["k0"].sha256 == hashlib.sha256(b"aaa").hexdigest() and got["k0"].metadata == {"m": "0"}
    assert got["k2"].path == "data/f2" and got["k2"].etag == '"e2"' and got["k2"].content_type == "text/plain"


def test_the_receiver_refuses_a_receipt_outside_the_root(tmp_path: Path) -> None:
    where = b"/tmp/elsewhere-" + secrets.token_hex(4).encode()
    stream = b"RLC1" + b"R" + len(where).to_bytes(4, "big") + where
    root = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", AGENT_SOURCE, str(root / ".relocate" / "staging" / "1"),
                           str(root / "data"), str(root)], input=stream, capture_output=True, timeout=60)
    assert proc.returncode != 0 and b"outside the root" in proc.stderr
    assert not os.path.exists(where)


def test_parse_ignores_torn_damaged_and_foreign_lines() -> None:
    good = receipts.describe("b", "k", '"e"', 5, "data/k", None, {})
    sha = hashlib.sha256(b"x").hexdigest().encode()
    raw = b"\n".join([
        sha + b" " + good,
        sha + b" " + receipts.describe("other", "k2", '"e"', 5, "data/k2", None, {}),  # another bucket's
        b"zz" * 32 + b" " + receipts.describe("b", "k3", '"e"', 5, "data/k3", None, {}),  # not a sha256
        sha + b" " + good[:-7],  # torn in the middle, then a newline (the reader adds one per file)
        b"",
        sha + b" " + receipts.describe("b", "k4", '"e"', 5, "data/k4", None, {}),  # torn: no newline at all
    ])
    got = receipts.parse(raw, "b")
    assert list(got) == ["k"] and got["k"].sha256 == sha.decode() and got["k"].size == 5


def test_a_receipt_is_read_as_the_manifest_entry_it_describes() -> None:
    """One record format for receipts, sidecar, manifest and shard chunks: a receipt's record
    read back is the ObjectEntry the sidecar would hold, and values of the wrong type (a
    forged line) become strings that match nothing or cost the line, never another type."""
    sha = hashlib.sha256(b"x").hexdigest()
    rec = receipts.describe("b", "k", '"e"', 5, "data/k", "text/plain", {"m": "1"})
    entry = ObjectEntry.from_dict({**json.loads(rec), "sha256": sha})
    got = receipts.parse(sha.encode() + b" " + rec + b"\n", "b")
    assert got == {"k": entry.done("b")}
    forged = b"\n".join(sha.encode() + b" " + line for line in [
        b'{"bucket":"b","key":7,"etag":"e","size":1,"path":"data/7","content_type":null,"metadata":{"n":2}}',
        b'{"bucket":"b","key":"s","etag":"e","size":"many","path":"data/s","content_type":null,"metadata":{}}',
        b'{"bucket":"b","key":"m","etag":"e","size":1,"path":"data/m","content_type":null,"metadata":[1]}',
    ]) + b"\n"
    got = receipts.parse(forged, "b")
    assert list(got) == ["7"]
    assert got["7"].key == "7" and got["7"].metadata == {"n": "2"}
