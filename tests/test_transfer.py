"""Issue 6: the bulk path under faults, kill -9, corruption and long connections.

Real servers throughout: S3 from moto and SeaweedFS, the target an OpenSSH sshd,
faults from tests/faultproxy.py (a TCP proxy between relocate and sshd).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from faultproxy import FaultProxy, Rule
from helpers import cli, make_config

from relocate.cli.options import parse_rate
from relocate.errors import TransientError, UsageError
from relocate.execute.objects import BucketPusher, plan_batches
from relocate.settings import Transfer
from relocate.sources.inventory import ObjectInfo
from relocate.sources.s3data import Body, _native_ok
from relocate.ssh.openssh import sweep_stale
from relocate.ssh.connection import Connection

KiB = 1024
MiB = 1024 * 1024


# --------------------------------------------------------------------------- helpers

def _corpus(n_small: int, small: int, big: int = 0) -> dict[str, bytes]:
    objs = {f"img/{i:03d}.bin": hashlib.sha256(str(i).encode()).digest() * (small // 32) for i in range(n_small)}
    if big:
        objs["video/big.bin"] = os.urandom(big)
    return objs


def _seed(server, objects: dict[str, bytes]) -> str:
    bucket = server.new_bucket("xfer")
    s3 = server.client()
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="image/x-test", Metadata={"owner": "u1"})
    return bucket


def _env(server) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "RELOCATE_RETRY_BACKOFF": "0.1"}


def _config(tmp_path: Path, server, sshd, bucket: str, root: Path, port: int | None = None) -> Path:
    target = dataclasses.replace(sshd, port=port) if port else sshd
    return make_config(tmp_path / "relocate.yaml", endpoint=server.endpoint_url, sshd=target, root=str(root),
                       buckets=[{"bucket": bucket, "to": "data"}])


def _assert_complete(root: Path, objects: dict[str, bytes]) -> None:
    """Every object in place with its sha256, nothing extra, no staging or temp debris."""
    base = root / "data"
    found = {str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest() for p in base.rglob("*") if p.is_file()}
    assert found == {k: hashlib.sha256(v).hexdigest() for k, v in objects.items()}
    staging = root / ".relocate" / "staging"
    assert not [p for p in staging.rglob("*") if not p.is_dir()] if staging.exists() else True
    assert not [p for p in root.rglob("*relocate-tmp*")]


def _assert_no_half_files(root: Path, objects: dict[str, bytes]) -> None:
    """Whatever is in place after a kill is whole: right content or absent."""
    base = root / "data"
    want = {k: hashlib.sha256(v).hexdigest() for k, v in objects.items()}
    for p in base.rglob("*") if base.exists() else []:
        if p.is_file():
            assert hashlib.sha256(p.read_bytes()).hexdigest() == want.get(str(p.relative_to(base))), p


# --------------------------------------------------------------------------- pure logic

def test_parse_rate() -> None:
    assert parse_rate("10M") == 10 * MiB
    assert parse_rate("800k") == 800 * KiB
    assert parse_rate("1.5G") == 1.5 * 1024 * MiB
    assert parse_rate("2MiB/s") == 2 * MiB
    assert parse_rate(None) is None and parse_rate("0") is None
    with pytest.raises(UsageError):
        parse_rate("fast")


def test_plan_batches_spread_over_lanes_biggest_first() -> None:
    objs = [ObjectInfo("big", 512 * MiB, "", 0)] + [ObjectInfo(f"s{i}", 256 * KiB, "", 0) for i in range(2000)]
    batches = plan_batches(objs, 4)
    assert batches[0] == [objs[0]]  # the huge object starts first, alone
    assert len(batches) >= 8  # every lane gets work
    assert sorted(o.key for b in batches for o in b) == sorted(o.key for o in objs)  # each object exactly once


def test_odd_keys_stay_on_boto3() -> None:
    # object_store trims "/abs" and "tr/" to other keys and refuses "a//b", ".." and control characters.
    for key in ("/abs", "tr/", "a//b", "..", "x/./y", "tab\tkey", "new\nline", ""):
        assert not _native_ok(key), key
    for key in ("img/001.jpg", "$(touch x)", "ü/é", "a b", "pct%41"):
        assert _native_ok(key), key


def test_fast_timestamp_parser_agrees_with_botocore() -> None:
    # The listing's fast path (datetime.fromisoformat) must give botocore's own answer.
    from botocore.utils import parse_timestamp

    from relocate.sources.awsparse import _timestamp

    for value in ("2026-11-27T10:40:00.000Z", "2026-11-27T10:40:00Z", "2026-11-27T10:40:00.123456+02:00",
                  "2026-11-27T10:40:00", "Thu, 27 Nov 2026 10:40:00 GMT", 1700000000, 1700000000.5, "1700000000"):
        assert _timestamp(value) == parse_timestamp(value), value
        assert _timestamp(value).isoformat() == parse_timestamp(value).isoformat(), value


def test_bad_bwlimit_is_a_usage_error(tmp_path: Path) -> None:
    r = cli("move", "-f", str(tmp_path / "nope.yaml"), "--yes", "--bwlimit", "lots")
    assert r.exit_code == 2 and "--bwlimit" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- faults through a proxy

def _move_through(proxy: FaultProxy, tmp_path: Path, server, sshd, bucket: str, root: Path, *args: str,
                  env: dict[str, str] | None = None):
    """`relocate move` with the target reached through the fault proxy (closed after)."""
    try:
        cfg = _config(tmp_path, server, sshd, bucket, root, port=proxy.port)
        return cli("move", "-f", str(cfg), "--yes", *args, env={**_env(server), **(env or {})})
    finally:
        proxy.close()


def test_reset_mid_transfer_is_retried_on_a_new_connection(tmp_path: Path, s3_server, sshd) -> None:
    objects = _corpus(40, 64 * KiB, big=2 * MiB)
    bucket = _seed(s3_server, objects)
    proxy = FaultProxy((sshd.host, sshd.port), Rule("reset", after=512 * KiB, limit=1))
    root = sshd.root / f"reset-{bucket}"
    r = _move_through(proxy, tmp_path, s3_server, sshd, bucket, root, "--json", "--lanes", "2")
    assert r.exit_code == 0, r.stderr
    assert proxy.faults >= 1
    events = [json.loads(line) for line in r.stderr.splitlines() if line.strip()]  # NDJSON: every line parses
    assert any(e["event"] == "warning" and "retrying" in e["message"] for e in events)
    items = [e for e in events if e["event"] == "item"]
    assert sorted(e["key"] for e in items) == sorted(objects)  # each object reported once, after it landed
    assert all(e.pop("format_version") == 1 for e in events)  # docs/json.md: every event carries it
    assert any(e["event"] == "progress" for e in events) and {"phase": "verify", "event": "phase"} in events
    result = r.json()["result"]
    assert result["verify"]["ok"] and result["objects_sent"] == len(objects)
    # every object was hashed by the target as it landed: the final check only sizes them
    assert result["verify"]["checked_on_arrival"] == len(objects)
    _assert_complete(root, objects)
    # content-type and user metadata still recorded (they came through obstore or boto3)
    sidecar = json.loads((root / ".relocate" / "buckets" / "data.json").read_text())
    assert {(o["content_type"], o["metadata"].get("owner")) for o in sidecar["objects"]} == {("image/x-test", "u1")}


def test_stalled_connection_is_caught_by_the_watchdog(tmp_path: Path, seaweedfs, sshd) -> None:
    from servers import S3Server

    server = S3Server("seaweedfs", seaweedfs.endpoint_url, seaweedfs.access_key, seaweedfs.secret_key)
    objects = _corpus(30, 256 * KiB)  # 7.5 MiB: more than sshd's 2 MiB channel window, so writes block
    bucket = _seed(server, objects)
    proxy = FaultProxy((sshd.host, sshd.port), Rule("stall", after=256 * KiB, limit=1))
    root = sshd.root / f"stall-{bucket}"
    r = _move_through(proxy, tmp_path, server, sshd, bucket, root, "--lanes", "1", env={"RELOCATE_STALL_TIMEOUT": "2"})
    assert r.exit_code == 0, r.stderr
    assert proxy.faults == 1
    assert "no progress for 2s" in r.stderr  # relocate's own watchdog, not a TCP timeout, noticed
    _assert_complete(root, objects)


def test_exhausted_retries_exit_5_and_the_rerun_resumes(tmp_path: Path, moto_server, moto, sshd) -> None:
    from servers import S3Server

    server = S3Server("moto", moto, "testing", "testing")
    objects = _corpus(30, 64 * KiB)
    bucket = _seed(server, objects)
    proxy = FaultProxy((sshd.host, sshd.port), Rule("reset", after=256 * KiB))  # every bulk connection dies
    root = sshd.root / f"exhaust-{bucket}"
    r = _move_through(proxy, tmp_path, server, sshd, bucket, root, "--lanes", "2", env={"RELOCATE_RETRY_ATTEMPTS": "2"})
    assert r.exit_code == 5, r.stderr
    assert "failed 2 times" in r.stderr and "running again resumes" in r.stderr and "Traceback" not in r.stderr
    _assert_no_half_files(root, objects)
    cfg = _config(tmp_path, server, sshd, bucket, root)  # the link is back
    r = cli("move", "-f", str(cfg), "--yes", env=_env(server))
    assert r.exit_code == 0, r.stderr
    _assert_complete(root, objects)


def test_control_connection_dropped_during_bulk_is_reopened(tmp_path: Path, moto_server, moto, sshd) -> None:
    from servers import S3Server

    server = S3Server("moto", moto, "testing", "testing")
    objects = _corpus(16, 128 * KiB)
    bucket = _seed(server, objects)
    proxy = FaultProxy((sshd.host, sshd.port))
    root = sshd.root / f"control-{bucket}"
    cfg = _config(tmp_path, server, sshd, bucket, root, port=proxy.port)
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", "--json", "--bwlimit", "1M"],
                            env={**os.environ, **_env(server)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        control: list[int] = []
        for line in proc.stderr:
            if json.loads(line)["event"] == "progress":
                # The control connection (plan, probe, journal checks) is paramiko's; the bulk
                # lanes' are OpenSSH's. (Were it already gone, the move must recover all the same.)
                control = [n for n in proxy.open_ones(b"SSH-2.0-paramiko") if proxy.reset(n)]
                break
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proxy.close()
    assert proc.returncode == 0, err
    logins = list(proxy.banners.values())
    assert any(b.startswith(b"SSH-2.0-OpenSSH") for b in logins)  # the bulk lanes went through the proxy too
    if control:  # reset while relocate held it: it logged in again for the steps after the bulk
        assert sum(b.startswith(b"SSH-2.0-paramiko") for b in logins) >= 2, logins
    assert json.loads(out)["result"]["verify"]["ok"]
    _assert_complete(root, objects)


def test_s3_bodies_cut_short_are_retried(tmp_path: Path, moto_server, moto, sshd) -> None:
    # S3 connections reset mid-body (downstream bytes): s3gets' and obstore's own retries, or relocate's
    # batch retry get every object through, byte-exact.
    from servers import S3Server

    objects = _corpus(6, 512 * KiB, big=12 * MiB)  # small bodies read whole, the big one streamed
    bucket = _seed(S3Server("moto", moto, "testing", "testing"), objects)
    host, port = moto.split("//")[1].split(":")
    proxy = FaultProxy((host, int(port)), Rule("reset", after=300 * KiB, limit=3, downstream=True))
    server = S3Server("moto", f"http://127.0.0.1:{proxy.port}", "testing", "testing")
    root = sshd.root / f"s3cut-{bucket}"
    try:
        cfg = _config(tmp_path, server, sshd, bucket, root)
        r = cli("move", "-f", str(cfg), "--yes", env=_env(server))
    finally:
        proxy.close()
    assert r.exit_code == 0, r.stderr
    assert proxy.faults == 3
    _assert_complete(root, objects)


# --------------------------------------------------------------------------- kill -9 and rerun

def _kill_when(proc: subprocess.Popen, point: str) -> bool:
    """Read NDJSON events until the kill point; True when the process was killed there."""
    assert proc.stderr is not None
    if point == "listing":
        time.sleep(1.0)  # imports done, gather under way: the source is being listed
        proc.send_signal(signal.SIGKILL)
        return True
    for line in proc.stderr:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        hit = ((point == "mid_object" and ev["event"] == "progress" and ev["bytes"] > 0 and ev["objects"] < ev["total_objects"])
               or (point == "between_batches" and ev["event"] == "item")
               or (point == "verify" and ev.get("event") == "phase" and ev.get("phase") == "verify"))
        if hit:
            proc.send_signal(signal.SIGKILL)
            return True
    return False


# Each kill point once, alternating the two S3 servers (every point on both added a minute to
# the suite and found nothing the alternation does not); mid-object, where the servers' range
# reads differ, on both.
@pytest.mark.parametrize("s3_server,point", [("moto", "listing"), ("seaweedfs", "mid_object"), ("moto", "mid_object"),
                                             ("seaweedfs", "between_batches"), ("moto", "verify")],
                         indirect=["s3_server"])
def test_kill_9_then_rerun_completes(tmp_path: Path, s3_server, sshd, point: str) -> None:
    objects = _corpus(24, 128 * KiB, big=2 * MiB)
    bucket = _seed(s3_server, objects)
    root = sshd.root / f"kill-{point}-{bucket}"
    cfg = _config(tmp_path, s3_server, sshd, bucket, root)
    # A TMPDIR of the test's own, short enough for ssh's control sockets (~100 bytes at most)
    tmp = Path(tempfile.mkdtemp(prefix="rk"))
    env = {**os.environ, **_env(s3_server), "RELOCATE_BATCH_OBJECTS": "4", "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", "--json", "--lanes", "2",
                             "--bwlimit", "1M"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        killed = _kill_when(proc, point)
    finally:
        proc.kill()
        proc.wait()
    assert killed and proc.returncode == -signal.SIGKILL
    _assert_no_half_files(root, objects)
    rerun = subprocess.run([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", "--json"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout)["result"]
    assert result["verify"] is None or result["verify"]["ok"]
    _assert_complete(root, objects)
    verify = subprocess.run([sys.executable, "-m", "relocate", "verify", "-f", str(cfg), "--json"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0 and json.loads(verify.stdout)["matched"] == len(objects)
    # the killed run's ssh state (pinned known_hosts, control sockets) was swept by the rerun
    assert not list(tmp.glob("relocate-ssh-*")), list(tmp.iterdir())
    shutil.rmtree(tmp)


def test_sweep_removes_only_the_ssh_state_of_runs_that_are_gone(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid no longer runs (and is not reused within this test)
    try:
        for pid in (dead.pid, child.pid, os.getpid()):
            d = tmp_path / f"relocate-ssh-{pid}-ab_c1"
            d.mkdir()
            (d / "known_hosts").write_text("relocate-target ssh-ed25519 AAAA\n")
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "keep").write_text("x")
        (tmp_path / f"relocate-ssh-{dead.pid}-link").symlink_to(tmp_path / "elsewhere")  # never followed
        (tmp_path / f"relocate-ssh-{dead.pid}-file").write_text("not a directory")
        (tmp_path / f"relocate-ssh-{dead.pid}").mkdir()  # not a name relocate makes
        gone = sweep_stale(str(tmp_path))
    finally:
        child.kill()
        child.wait()
    assert gone == [str(tmp_path / f"relocate-ssh-{dead.pid}-ab_c1")]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["elsewhere", f"relocate-ssh-{child.pid}-ab_c1", f"relocate-ssh-{os.getpid()}-ab_c1",
                           f"relocate-ssh-{dead.pid}-link", f"relocate-ssh-{dead.pid}-file", f"relocate-ssh-{dead.pid}"])
    assert (tmp_path / "elsewhere" / "keep").exists()


# --------------------------------------------------------------------------- corruption

def test_flipped_byte_is_caught_by_verify_and_repaired_by_the_next_move(tmp_path: Path, s3_server, sshd) -> None:
    objects = _corpus(10, 32 * KiB)
    bucket = _seed(s3_server, objects)
    root = sshd.root / f"flip-{bucket}"
    cfg = _config(tmp_path, s3_server, sshd, bucket, root)
    assert cli("move", "-f", str(cfg), "--yes", "--keep-snapshot", env=_env(s3_server)).exit_code == 0
    kept = {str(p.relative_to(p.parents[1])): p.read_bytes() for p in (tmp_path / "snapshots").glob("*/objects/data/img/*")}
    assert kept == objects  # --keep-snapshot wrote each object as it streamed
    victim = root / "data" / "img" / "003.bin"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x01
    victim.write_bytes(bytes(data))  # same size: the journal + size check alone would trust it
    r = cli("verify", "-f", str(cfg), "--json", env=_env(s3_server))
    assert r.exit_code == 4 and r.json()["differing_paths"] == ["data/img/003.bin"]
    r = cli("move", "-f", str(cfg), "--yes", "--json", env=_env(s3_server))
    assert r.exit_code == 0, r.stderr
    assert r.json()["result"]["objects_sent"] == 1
    # the other nine were hashed on arrival by the first move and are in the journal: the
    # final check sizes all ten (issue 18: no second hash of what was verified before)
    assert r.json()["result"]["verify"]["checked_on_arrival"] == 10 and r.json()["result"]["verify"]["matched"] == 10
    _assert_complete(root, objects)
    assert cli("verify", "-f", str(cfg), env=_env(s3_server)).exit_code == 0


def test_checksum_finds_a_damaged_object_the_journal_trusts(tmp_path: Path, s3_server, sshd) -> None:
    objects = _corpus(6, 16 * KiB)
    bucket = _seed(s3_server, objects)
    root = sshd.root / f"cksum-{bucket}"
    cfg = _config(tmp_path, s3_server, sshd, bucket, root)
    assert cli("move", "-f", str(cfg), "--yes", env=_env(s3_server)).exit_code == 0
    victim = root / "data" / "img" / "002.bin"
    data = bytearray(victim.read_bytes())
    data[7] ^= 0x80
    victim.write_bytes(bytes(data))
    r = cli("plan", "-f", str(cfg), "--json", env=_env(s3_server))
    todo = lambda plan: sum(st["todo_count"] for st in plan["steps"] if st["kind"] == "s3")  # noqa: E731
    assert r.exit_code == 0 and todo(r.json()) == 0  # journal + size alone trust it
    r = cli("plan", "-f", str(cfg), "--json", "--checksum", env=_env(s3_server))
    assert r.exit_code == 0 and todo(r.json()) == 1
    r = cli("move", "-f", str(cfg), "--yes", "--json", "--checksum", env=_env(s3_server))
    assert r.exit_code == 0, r.stderr
    assert r.json()["result"]["objects_sent"] == 1 and r.json()["result"]["objects_skipped"] == 5
    _assert_complete(root, objects)


# --------------------------------------------------------------------------- long connections (re-key)

class _MemReader:
    """Bodies from memory: pushes hundreds of batches without seeding an S3 server."""

    def __init__(self, blob: bytes) -> None:
        self.blob = memoryview(blob)

    def get(self, key: str, size: int, etag: str, whole: bool) -> Body:
        if whole:
            return Body(key, size, etag, None, {}, data=self.blob[:size])
        full, rest = divmod(size, len(self.blob))
        return Body(key, size, etag, None, {}, chunks=iter([self.blob] * full + ([self.blob[:rest]] if rest else [])))


def _push_through_one_lane(sshd, root: Path, objs: list[ObjectInfo], blob: bytes, engine: str = "paramiko") -> tuple[int, list[str]]:
    commits: list[int] = []
    warnings: list[str] = []
    from relocate.ssh.via import SshSpec

    ssh = SshSpec(host=sshd.host, port=sshd.port, user=sshd.user, identity_file=str(sshd.identity_file),
                  host_key=sshd.host_key_fingerprint)
    with Connection(ssh) as conn:
        pusher = BucketPusher(_MemReader(blob), conn, bucket="mem", root=str(root), dest="data",
                              paths={o.key: o.key for o in objs}, staging=str(root / ".relocate" / "staging" / "b"),
                              opts=Transfer(transfers=4, lanes=1, backoff_s=0.2, engine=engine), on_warning=warnings.append)
        lanes_seen: set[int] = set()
        pusher.run(objs, lambda done: (commits.append(len(done)), lanes_seen.add(threading.get_ident())))
    assert len(lanes_seen) == 1  # one lane did it all
    return sum(commits), warnings


def test_hundreds_of_batches_past_a_rekey_on_one_connection(sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    # 300 batches x 2 MiB = 600 MiB (> paramiko's 2^29-byte re-key) and ~900 remote
    # commands on one lane's connection: completes, or recovers on a new connection.
    monkeypatch.setenv("RELOCATE_BATCH_OBJECTS", "1")
    blob = os.urandom(2 * MiB)
    objs = [ObjectInfo(f"b/{i:04d}", len(blob), "", 0) for i in range(300)]
    root = sshd.root / f"rekey-{os.getpid()}-{time.monotonic_ns()}"
    sent, warnings = _push_through_one_lane(sshd, root, objs, blob)
    assert sent == 300, warnings
    want = hashlib.sha256(blob).hexdigest()
    files = sorted((root / "data" / "b").iterdir())
    assert len(files) == 300 and hashlib.sha256(files[-1].read_bytes()).hexdigest() == want


# --------------------------------------------------------------------------- pipelined lanes (issue 18)

def _one_lane_pusher(conn: Connection, root: Path, bodies: dict[str, bytes], events: list[tuple[str, int]],
                     warnings: list[str], **opts: object) -> BucketPusher:
    """A one-lane pusher of in-memory bodies whose trace hook records (event, batch)."""
    pusher = BucketPusher(_KeyedReader(bodies), conn, bucket="mem", root=str(root), dest="data",
                          paths={k: k for k in bodies}, staging=str(root / ".relocate" / "staging" / "b"),
                          opts=Transfer(transfers=4, lanes=1, backoff_s=0.1, **opts), on_warning=warnings.append)  # type: ignore[arg-type]
    pusher.trace = lambda event, lane, batch, n: events.append((event, batch))
    return pusher


class _KeyedReader:
    """Small bodies from memory, by key; the keys in `fail_once` fail their first GET."""

    def __init__(self, bodies: dict[str, bytes], fail_once: set[str] = set()) -> None:
        self.bodies, self.fail_once = bodies, set(fail_once)

    def get(self, key: str, size: int, etag: str, whole: bool) -> Body:
        if key in self.fail_once:
            self.fail_once.discard(key)
            raise TransientError(f"s3://mem/{key}: connection reset (after the GET's own retries)")
        return Body(key, size, etag, None, {}, data=memoryview(self.bodies[key]))


def _ssh(sshd):
    from relocate.ssh.via import SshSpec

    return SshSpec(host=sshd.host, port=sshd.port, user=sshd.user, identity_file=str(sshd.identity_file),
                   host_key=sshd.host_key_fingerprint)


@pytest.mark.parametrize("receiver", ["python", "sh"])
def test_a_lane_sends_its_next_batch_before_reading_the_last_ones_answer(sshd, receiver: str) -> None:
    """With the long-lived receiver a lane streams batch k+1 right after k's tail and reads
    k's answer after that (at most 2 unanswered); the tar wire stays one batch at a time.
    Answers are read, checked and journalled in the order the batches went."""
    bodies = {f"p/{i:02d}": hashlib.sha256(str(i).encode()).digest() * 64 for i in range(12)}
    root = sshd.root / f"pipe-{receiver}-{os.getpid()}-{time.monotonic_ns()}"
    events: list[tuple[str, int]] = []
    commits: list[list[str]] = []
    with Connection(_ssh(sshd)) as conn:
        pusher = _one_lane_pusher(conn, root, bodies, events, [], receiver=receiver, batch_objects=3)
        pusher.run([ObjectInfo(k, len(v), "", 0) for k, v in bodies.items()], lambda done: commits.append([d.key for d in done]))
    order = [b for e, b in events if e == "send"]
    assert sorted(order) == [0, 1, 2, 3]
    at = {(e, b): i for i, (e, b) in enumerate(events)}
    for k, nxt in zip(order, order[1:]):
        if receiver == "python":
            assert at["send", nxt] < at["answer", k], events  # k+1's first bytes before k's answer is read
        else:
            assert at["commit", k] < at["send", nxt], events  # a process per batch: one at a time
    unanswered = 0
    for e, _ in events:
        unanswered += {"send": 1, "answer": -1}.get(e, 0)
        assert unanswered <= (2 if receiver == "python" else 1)
    assert [b for e, b in events if e == "answer"] == order == [b for e, b in events if e == "commit"]
    assert sorted(k for c in commits for k in c) == sorted(bodies)  # each object journalled once
    for k, v in bodies.items():
        assert (root / "data" / k).read_bytes() == v


def test_a_source_read_failing_mid_batch_sends_only_that_batch_again(sshd) -> None:
    """A GET that fails in batch 1 leaves the connection sound: batch 0, sent before it and
    not yet answered, is answered and journalled once; only batch 1 goes again."""
    bodies = {f"r/{i:02d}": hashlib.sha256(str(i).encode()).digest() * 32 for i in range(8)}
    root = sshd.root / f"srcfail-{os.getpid()}-{time.monotonic_ns()}"
    events: list[tuple[str, int]] = []
    warnings: list[str] = []
    commits: list[list[str]] = []
    progress = [0, 0]

    def count(objects: int, nbytes: int) -> None:
        progress[0] += objects
        progress[1] += nbytes

    with Connection(_ssh(sshd)) as conn:
        pusher = _one_lane_pusher(conn, root, bodies, events, warnings, receiver="python", batch_objects=4)
        pusher.reader = _KeyedReader(bodies, fail_once={"r/06"})
        pusher.on_progress = count
        pusher.run([ObjectInfo(k, len(v), "", 0) for k, v in bodies.items()], lambda done: commits.append([d.key for d in done]))
    assert [b for e, b in events if e == "send"] == [0, 1, 1]
    assert [e for e in events if e[0] in ("answer", "commit")] == [("answer", 0), ("commit", 0), ("answer", 1), ("commit", 1)]
    assert events.index(("commit", 0)) < len(events) - 1 - events[::-1].index(("send", 1))  # before batch 1 went again
    assert len(warnings) == 1 and "r/06: connection reset" in warnings[0] and "retrying the batch of 4 on a new connection" in warnings[0]
    assert sorted(k for c in commits for k in c) == sorted(bodies)
    assert progress == [len(bodies), sum(map(len, bodies.values()))]
    for k, v in bodies.items():
        assert (root / "data" / k).read_bytes() == v


def _receiver_pid(staging: Path, timeout: float = 20.0) -> int:
    """The pid of the lane's receiver on the (local) target: the python3 whose own argv
    holds its session's staging dir."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.startswith(str(staging).encode() + b"/l0.") for a in argv):
                return int(pid)
        time.sleep(0.02)
    raise AssertionError("the receiver never started")


@pytest.mark.parametrize("engine", ["openssh", "paramiko"])
def test_a_connection_lost_with_two_batches_unanswered_sends_both_again(sshd, engine: str) -> None:
    """The receiver is stopped before it reads anything, so both batches are sent and
    neither is answered, then killed: the lane sends both again on a new connection, each
    is journalled once, and the bytes counted for the lost try are taken back."""
    bodies = {f"q/{i:02d}": hashlib.sha256(str(i).encode()).digest() * 32 for i in range(8)}
    root = sshd.root / f"lost-{engine}-{os.getpid()}-{time.monotonic_ns()}"
    staging = root / ".relocate" / "staging" / "b"
    events: list[tuple[str, int]] = []
    warnings: list[str] = []
    commits: list[list[str]] = []
    progress = [0, 0]
    pids: list[int] = []

    def hook(event: str, lane: int, batch: int, n: int) -> None:
        events.append((event, batch))
        if event == "send" and not pids:
            pids.append(_receiver_pid(staging))
            os.kill(pids[0], signal.SIGSTOP)  # it reads nothing more: no answer can come
        elif event == "tail" and batch == 1 and len(pids) == 1:
            pids.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)  # the connection's end goes away, two batches unanswered

    def count(objects: int, nbytes: int) -> None:
        progress[0] += objects
        progress[1] += nbytes

    with Connection(_ssh(sshd)) as conn:
        pusher = _one_lane_pusher(conn, root, bodies, events, warnings, receiver="python", batch_objects=4, engine=engine)
        pusher.trace = hook
        pusher.on_progress = count
        pusher.run([ObjectInfo(k, len(v), "", 0) for k, v in bodies.items()], lambda done: commits.append([d.key for d in done]))
    assert [e for e in events if e[0] != "tail"][:2] == [("send", 0), ("send", 1)]  # both went before any answer
    assert [b for e, b in events if e == "send"] == [0, 1, 0, 1]  # both again, in order, on the new connection
    assert [b for e, b in events if e == "commit"] == [0, 1]
    assert len(warnings) == 1 and "retrying the 2 batches it had sent (8 objects) on a new connection" in warnings[0]
    assert sorted(k for c in commits for k in c) == sorted(bodies)  # each journalled once
    assert progress == [len(bodies), sum(map(len, bodies.values()))]  # the lost try's bytes taken back
    for k, v in bodies.items():
        assert (root / "data" / k).read_bytes() == v


@pytest.mark.slow
def test_multi_gib_object_on_one_connection(sshd) -> None:
    blob = os.urandom(4 * MiB)
    size = 2 * 1024 * MiB + 12345  # past 2^31 (a signed 32-bit size), 4 re-keys at 2^29, not a multiple of the chunk
    root = sshd.root / f"huge-{os.getpid()}-{time.monotonic_ns()}"
    sent, warnings = _push_through_one_lane(sshd, root, [ObjectInfo("huge.bin", size, "", 0)], blob)
    assert sent == 1, warnings
    assert (root / "data" / "huge.bin").stat().st_size == size


def test_hash_tree_many_files_and_odd_names(sshd) -> None:
    # >512 files (two hashing workers) and names openssl would escape (newline, backslash).
    from relocate.ssh.via import SshSpec
    from relocate.targets import files

    base = sshd.root / f"hash-{os.getpid()}-{time.monotonic_ns()}"
    names = [f"d{i % 7}/f {i}.bin" for i in range(1200)] + ["new\nline", "back\\slash", "ü é", "-dash", "*star"]
    for i, name in enumerate(names):
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(str(i).encode() * 50)
    ssh = SshSpec(host=sshd.host, port=sshd.port, user=sshd.user, identity_file=str(sshd.identity_file),
                  host_key=sshd.host_key_fingerprint)
    with Connection(ssh) as conn:
        got = files.hash_tree(conn, str(base))
    assert got == {n: hashlib.sha256(str(i).encode() * 50).hexdigest() for i, n in enumerate(names)}


@pytest.mark.parametrize("mode", ["json", "plain", "rich"])
def test_progress_reporter_modes(mode: str) -> None:
    import io

    from relocate.cli.progress import Reporter

    out = io.StringIO()
    rep = Reporter(3, 300, mode=mode, stream=out, every_s=0)
    rep("s3:b", 0, 100)
    rep.event({"event": "warning", "message": "batch retried"})
    rep("s3:b", 3, 200)
    rep.close()
    text = out.getvalue()
    if mode == "json":
        events = [json.loads(line) for line in text.splitlines()]
        assert all(e.pop("format_version") == 1 for e in events)  # docs/json.md: every event carries it
        assert events[-1]["event"] == "progress" and events[-1]["objects"] == 3 and events[-1]["bytes"] == 300
        assert {"event": "warning", "message": "batch retried"} in events
    else:
        assert "batch retried" in text and "3/3" in text


def test_openssh_lanes_refuse_a_host_key_that_changed(sshd, sshd2) -> None:
    # The bulk `ssh` is pinned to the key relocate checked; another key is refused, never retried.
    from relocate.ssh.via import SshSpec
    from relocate.errors import HostKeyError
    from relocate.ssh.openssh import ALIAS, OpenSsh

    ssh = SshSpec(host=sshd.host, port=sshd.port, user=sshd.user, identity_file=str(sshd.identity_file),
                  host_key=sshd.host_key_fingerprint)
    with Connection(ssh) as conn:
        bulk = OpenSsh.probe(conn)
        assert bulk is not None
        try:
            master = bulk.master()
            assert bulk.start("echo ok", master).wait(30).stdout == b"ok\n"
            master.close()
            (Path(bulk._dir) / "known_hosts").write_text(f"{ALIAS} {sshd2.host_key_line}\n")
            with pytest.raises(HostKeyError):
                bulk.master()
        finally:
            bulk.close()
