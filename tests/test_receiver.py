"""The target's end of a bulk batch (targets/receiver_agent.py and execute/wire.py).

The agent is run with this machine's python3 on real pipes for the edge cases of its
stream format, and through the real sshd (both SSH engines, both receivers: the
Python agent and the tar fallback a target without python3 gets) for whole batches.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import servers
from conftest import require
from helpers import feed_at_network_pace, needs_page_cache, page_cached
from relocate.ssh.via import SshSpec
from relocate.execute.objects import BucketPusher
from relocate.settings import Transfer
from relocate.execute.wire import AGENT_SOURCE, AgentWire
from relocate.sources.inventory import ObjectInfo
from relocate.sources.s3data import Body
from relocate.ssh.connection import Connection

MiB = 1024 * 1024
HEAD = struct.Struct(">IQq")
ODD_NAMES = ["plain.txt", "sp ace/f 1.bin", "new\nline", "back\\slash", "ü é/ö.txt", "-dash", "*star", "d/e/f/deep.bin"]


def _record(path: bytes, data: bytes, mtime: int = 1_600_000_000, digest: bytes | None = None) -> bytes:
    return b"F" + HEAD.pack(len(path), len(data), mtime) + path + data + (digest or hashlib.sha256(data).digest())


def _run_agent(tmp_path: Path, stream: bytes) -> tuple[subprocess.CompletedProcess[bytes], Path, Path]:
    stage, final = tmp_path / "stage" / "7", tmp_path / "final"
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", AGENT_SOURCE, str(stage), str(final)],
                          input=stream, capture_output=True, timeout=60)
    return proc, stage, final


def test_agent_places_whole_files_with_their_mtime_and_reports_hashes(tmp_path: Path) -> None:
    bodies = {name: (name * 100).encode() for name in ODD_NAMES}
    stream = b"RLC1" + b"".join(_record(n.encode(), b) for n, b in bodies.items()) + b"E"
    proc, stage, final = _run_agent(tmp_path, stream)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[-1] == "end"
    assert lines[:-1] == [f"{i} {hashlib.sha256(b).hexdigest()}" for i, b in enumerate(bodies.values())]
    for name, body in bodies.items():
        assert (final / name).read_bytes() == body
        assert int((final / name).stat().st_mtime) == 1_600_000_000
    assert not stage.exists()  # the batch's staging is gone once it is all in place


def test_agent_answers_batch_after_batch_in_one_session(tmp_path: Path) -> None:
    one, two = [b"a" * 10, b"b" * 20], [b"c" * 30]
    stream = (b"RLC1" + _record(b"x/1", one[0]) + _record(b"x/2", one[1]) + b"E"
              + _record(b"y/3", two[0]) + b"E")
    proc, stage, final = _run_agent(tmp_path, stream)
    assert proc.returncode == 0, proc.stderr
    h = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    assert proc.stdout.decode() == f"0 {h(one[0])}\n1 {h(one[1])}\nend\n0 {h(two[0])}\nend\n"  # indexes restart per batch
    assert (final / "y" / "3").read_bytes() == two[0] and not stage.exists()


def test_agent_session_cut_between_files_is_a_failure(tmp_path: Path) -> None:
    # the end of stdin is only a clean end right after a batch's "E"
    proc, _, final = _run_agent(tmp_path, b"RLC1" + _record(b"whole", b"w" * 100))
    assert proc.returncode == 1 and b"stream ended early" in proc.stderr
    assert (final / "whole").read_bytes() == b"w" * 100  # that file was whole and checked


def test_agent_never_places_a_file_whose_hash_differs(tmp_path: Path) -> None:
    good, bad = b"good" * 1000, b"flipped" * 1000
    stream = b"RLC1" + _record(b"a/good", good) + _record(b"a/bad", bad, digest=hashlib.sha256(b"other").digest()) + b"E"
    proc, _, final = _run_agent(tmp_path, stream)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines()[1] == f"1 {hashlib.sha256(bad).hexdigest()} !"
    assert (final / "a" / "good").read_bytes() == good
    assert not (final / "a" / "bad").exists()


def test_agent_sizes_around_its_one_read_small_file_path_land_whole(tmp_path: Path) -> None:
    # Up to 64 KiB a file and its hash come in one read (receiver_agent.SMALL), above that
    # in chunks: sizes on both sides of the edge and of the 1 MiB chunk, and a damaged
    # small file between good ones, must land byte for byte or not at all.
    edge = 64 * 1024
    sizes = [0, 1, edge - 1, edge, edge + 1, MiB, MiB + 7]
    bodies = {f"d{i % 3}/s{n}".encode(): os.urandom(n) for i, n in enumerate(sizes)}
    bad = os.urandom(edge - 3)
    stream = (b"RLC1" + b"".join(_record(p, b) for p, b in list(bodies.items())[:3])
              + _record(b"d0/bad", bad, digest=hashlib.sha256(b"other").digest())
              + b"".join(_record(p, b) for p, b in list(bodies.items())[3:]) + b"E")
    proc, stage, final = _run_agent(tmp_path, stream)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[3] == f"3 {hashlib.sha256(bad).hexdigest()} !" and lines[-1] == "end"
    for path, body in bodies.items():
        assert (final / path.decode()).read_bytes() == body
        assert int((final / path.decode()).stat().st_mtime) == 1_600_000_000
    assert not (final / "d0" / "bad").exists() and not stage.exists()
    cut = _record(b"short", b"s" * 100)[:-40]  # a small file whose body and hash did not all arrive
    proc, stage, final = _run_agent(tmp_path, b"RLC1" + cut)
    assert proc.returncode == 1 and b"stream ended early" in proc.stderr
    assert not (final / "short").exists() and not stage.exists()


@pytest.mark.parametrize("keep", [False, True], ids=["default", "RELOCATE_PAGE_CACHE=keep"])
def test_agent_lets_what_it_wrote_leave_the_page_cache(tmp_path: Path, keep: bool) -> None:
    # targets/dropbehind.py: a big file window by window as it is written, and files
    # over 64 KiB once 8 MiB more has been written after them. The stream comes at a
    # network's pace, so each window has reached the disk before it is let go of; pages
    # still being written would stay, so the bound is loose. With the sender's "K"
    # record (RELOCATE_PAGE_CACHE=keep) all of it stays.
    needs_page_cache(tmp_path)  # the same data written plainly stays cached here
    big, smalls = os.urandom(40 * MiB), [os.urandom(MiB) for _ in range(24)]
    head = AgentWire(keep_cache=keep).start()
    assert head == (b"RLC1K" if keep else b"RLC1")
    stream = head + _record(b"big.bin", big) + b"".join(_record(b"s/%d" % i, b) for i, b in enumerate(smalls)) + b"E"
    stage, final = tmp_path / "stage" / "7", tmp_path / "final"
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", AGENT_SOURCE, str(stage), str(final)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = feed_at_network_pace(proc, stream)
    assert proc.returncode == 0, err
    assert out.decode().splitlines()[-1] == "end"
    first_half = sum(page_cached(final / "s" / str(i)) for i in range(12))
    if keep:
        assert page_cached(final / "big.bin") >= len(big) * 0.9 and first_half >= 12 * MiB * 0.9
    else:
        assert page_cached(final / "big.bin") <= len(big) // 2
        assert first_half <= 6 * MiB
    assert (final / "big.bin").read_bytes() == big  # and all of it is there
    assert all((final / "s" / str(i)).read_bytes() == b for i, b in enumerate(smalls))


def test_agent_cut_short_leaves_nothing_half_written(tmp_path: Path) -> None:
    whole = _record(b"one", b"1" * 5000)
    cut = _record(b"two", b"2" * (3 * MiB))[: 2 * MiB]  # the connection died mid-file
    proc, stage, final = _run_agent(tmp_path, b"RLC1" + whole + cut)
    assert proc.returncode == 1 and b"stream ended early" in proc.stderr
    assert (final / "one").read_bytes() == b"1" * 5000  # the whole one is in place
    assert not (final / "two").exists()  # the cut one only ever existed in staging
    assert not stage.exists()  # and the receiver cleared it on its way out
    proc2, _, _ = _run_agent(tmp_path, b"RLC1" + _record(b"two", b"2" * 10) + b"E")
    assert proc2.returncode == 0, proc2.stderr
    assert (final / "two").read_bytes() == b"2" * 10 and not stage.exists()


def test_agent_clears_what_a_killed_session_left_in_its_staging(tmp_path: Path) -> None:
    # a SIGKILLed receiver leaves its staging dir behind, not empty (shutil is then loaded to clear it)
    stage = tmp_path / "stage" / "7"
    (stage / "sub").mkdir(parents=True)
    (stage / "0").write_bytes(b"half")
    (stage / "sub" / "x").write_bytes(b"debris")
    proc, stage, final = _run_agent(tmp_path, b"RLC1" + _record(b"0", b"new") + b"E")
    assert proc.returncode == 0, proc.stderr
    assert (final / "0").read_bytes() == b"new" and not stage.exists()


@pytest.mark.parametrize("path", [b"../escape", b"/abs", b"a//b", b"a/./b", b"", b"a/..", b"a/", b"a/\0b"])
def test_agent_refuses_paths_that_could_leave_the_final_dir(tmp_path: Path, path: bytes) -> None:
    proc, _, final = _run_agent(tmp_path, b"RLC1" + _record(path, b"x") + b"E")
    assert proc.returncode == 1 and b"unsafe path" in proc.stderr
    assert not (tmp_path / "escape").exists() and not final.exists()


def test_agent_rejects_a_stream_that_is_not_its_own(tmp_path: Path) -> None:
    proc, _, _ = _run_agent(tmp_path, b"ustar\0" + b"\0" * 600)
    assert proc.returncode == 1 and b"not a relocate stream" in proc.stderr


def test_agent_wire_reads_answers_and_needs_the_end_line() -> None:
    from relocate.ssh.connection import Result

    wire = AgentWire()
    ans = wire.answer(Result(0, b"0 aa\n1 bb !\nend\n", b""), ["x", "y"])
    assert ans.hashes == {"x": "aa", "y": "bb"} and ans.placed and ans.failed == {}
    # " x why": that file's path can never be written there (the rest of the batch landed)
    ans = wire.answer(Result(0, b"0 aa\n1 bb x cannot write /r/d/legal: Not a directory\nend\n", b""), ["x", "y"])
    assert ans.hashes == {"x": "aa", "y": "bb"} and ans.failed == {"y": "cannot write /r/d/legal: Not a directory"}
    with pytest.raises(ValueError):
        wire.answer(Result(0, b"0 aa\n", b""), ["x"])


# --------------------------------------------------------------------------- through sshd

class _MemReader:
    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies

    def get(self, key: str, size: int, etag: str, whole: bool) -> Body:
        data = memoryview(self.bodies[key])
        if whole:
            return Body(key, size, etag, None, {}, data=data)
        return Body(key, size, etag, None, {}, chunks=iter([data[i:i + MiB] for i in range(0, len(data), MiB)]))


@pytest.mark.parametrize("engine", ["openssh", "paramiko"])
@pytest.mark.parametrize("receiver", ["python", "sh"])
def test_batches_land_whole_through_either_receiver(sshd, monkeypatch: pytest.MonkeyPatch, receiver: str, engine: str) -> None:
    bodies = {name: hashlib.sha256(name.encode()).digest() * 300 for name in ODD_NAMES}
    bodies["v/clip.bin"] = os.urandom(9 * MiB + 7)  # above SMALL_OBJECT: streamed, and a batch of its own
    objs = [ObjectInfo(k, len(v), "", 1_600_000_000 + i) for i, (k, v) in enumerate(bodies.items())]
    root = sshd.root / f"recv-{receiver}-{engine}-{os.getpid()}-{time.monotonic_ns()}"
    spec = SshSpec(host=sshd.host, port=sshd.port, user=sshd.user, identity_file=str(sshd.identity_file),
                   host_key=sshd.host_key_fingerprint)
    committed: list[str] = []
    with Connection(spec) as conn:
        pusher = BucketPusher(_MemReader(bodies), conn, bucket="mem", root=str(root), dest="data",
                              paths={k: k for k in bodies}, staging=str(root / ".relocate" / "staging" / "b"),
                              # several batches per lane: the agent's session answers each
                              opts=Transfer(transfers=4, lanes=2, engine=engine, receiver=receiver, batch_objects=2))
        pusher.run(objs, lambda done: committed.extend(d.key for d in done))
        assert pusher.receiver == ("agent" if receiver == "python" else "tar")
    assert sorted(committed) == sorted(bodies)
    for o in objs:
        landed = root / "data" / o.key
        assert landed.read_bytes() == bodies[o.key], o.key
        assert int(landed.stat().st_mtime) == int(o.last_modified)
    assert not [p for p in (root / ".relocate" / "staging").rglob("*") if not p.is_dir()]


@pytest.fixture(scope="module")
def sshd_without_python(tmp_path_factory: pytest.TempPathFactory):
    """A target whose logins find every command of this machine but python3: its PATH
    (set by sshd for every session) is a dir of links to /usr/bin and /bin, less python*."""
    work = tmp_path_factory.mktemp("sshd-nopython")
    bin_dir = servers._user_dir(work, "bin")
    for d in ("/usr/bin", "/bin"):
        for name in os.listdir(d):
            if not name.startswith("python") and not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(os.path.join(d, name))
    server = require(servers.start_sshd, work, extra_config=[f"SetEnv PATH={bin_dir}"])
    yield server
    server.stop()


def test_a_target_without_python3_gets_the_tar_receiver(sshd_without_python, monkeypatch: pytest.MonkeyPatch) -> None:
    """No RELOCATE_RECEIVER: relocate asks the target, finds no python3, and the batches
    go as tar streams hashed by openssl there, landing whole all the same."""
    monkeypatch.delenv("RELOCATE_RECEIVER", raising=False)
    server = sshd_without_python
    spec = SshSpec(host=server.host, port=server.port, user=server.user, identity_file=str(server.identity_file),
                   host_key=server.host_key_fingerprint)
    bodies = {name: hashlib.sha256(name.encode()).digest() * 100 for name in ODD_NAMES}
    objs = [ObjectInfo(k, len(v), "", 1_600_000_000 + i) for i, (k, v) in enumerate(bodies.items())]
    root = server.root / f"nopython-{os.getpid()}"
    with Connection(spec) as conn:
        # The premise, checked on the target itself: no python3 there, tar and openssl are.
        assert conn.run("command -v python3", timeout=30, check=False).status != 0
        assert conn.run("command -v tar && command -v openssl", timeout=30, check=False).status == 0
        pusher = BucketPusher(_MemReader(bodies), conn, bucket="mem", root=str(root), dest="data",
                              paths={k: k for k in bodies}, staging=str(root / ".relocate" / "staging" / "b"),
                              opts=Transfer(transfers=4, lanes=2))
        committed: list[str] = []
        pusher.run(objs, lambda done: committed.extend(d.key for d in done))
        assert pusher.receiver == "tar"
    assert sorted(committed) == sorted(bodies)
    for o in objs:
        assert (root / "data" / o.key).read_bytes() == bodies[o.key], o.key
    assert not [p for p in (root / ".relocate" / "staging").rglob("*") if not p.is_dir()]
