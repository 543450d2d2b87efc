"""PostgreSQL default mode, the mechanism behind the speed (issue 18): the dump's files go
to the target while pg_dump is still writing the others, and the upload that results is
the whole dump, toc.dat last."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from relocate.errors import TargetError
from relocate.execute.pg import PIECE_MIN, LocalPg, dump_and_upload, upload_command
from relocate.sources.rds import DbAddress
from relocate.targets import shell
from relocate.ssh.connection import Result


class _Target:
    """Stands where the remote `tar x` is: keeps what arrives and when."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.arrived = threading.Event()

    def write(self, data: bytes) -> None:
        self.data += data
        self.arrived.set()

    def wait(self, timeout=None) -> Result:
        return Result(0, b"", b"")


class _Dumper:
    """Writes a directory-format dump file by file, like pg_dump's workers."""

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.seen_during_dump = False

    def dump_to(self, out: Path, *, snapshot: str, jobs: int, running=None) -> None:
        running(self)  # like LocalPg.dump_to, once "pg_dump" runs
        (out / "3001.dat.gz").write_bytes(os.urandom(3 << 20))
        # the next file is written only once the first one's bytes reached the target
        self.seen_during_dump = self.target.arrived.wait(20)
        (out / "3002.dat.gz").write_bytes(os.urandom(5000))
        with open(out / "3003.dat.gz", "wb") as fh:  # written, closed, then rewritten: sent again
            fh.write(b"first")
        time.sleep(0.3)
        (out / "3003.dat.gz").write_bytes(b"second, longer")
        (out / "toc.dat").write_bytes(b"toc")
        time.sleep(0.3)  # the first files' sends are done by now
        # pg_dump's last step syncs the directory: each file opened read-write, fsynced and
        # closed, which inotify reports as another close after writing, with nothing changed
        for p in sorted(out.iterdir()):
            fd = os.open(p, os.O_RDWR)
            os.fsync(fd)
            os.close(fd)


def test_files_go_up_while_the_dump_runs_and_toc_last(tmp_path: Path) -> None:
    target = _Target()
    dumper = _Dumper(target)
    dump = tmp_path / "dump"
    dump_and_upload(dumper, dump, "snap", 2, lambda: target, RuntimeError)  # type: ignore[arg-type]
    assert dumper.seen_during_dump
    got: dict[str, bytes] = {}
    order = []
    with tarfile.open(fileobj=io.BytesIO(bytes(target.data)), mode="r|") as tar:
        for m in tar:
            order.append(m.name)
            got[m.name] = tar.extractfile(m).read()  # type: ignore[union-attr]
    assert order[-1] == "toc.dat"
    # each file once (the one rewritten may go twice): the sync's closes send nothing again
    assert [n for n in order if n != "3003.dat.gz"] == ["3001.dat.gz", "3002.dat.gz", "toc.dat"]
    assert got == {p.name: p.read_bytes() for p in dump.iterdir()}  # the last copy of each name is the file


class _GrowingDumper:
    """Writes one data file in steps, like a pg_dump worker on a big table, and keeps it
    open until a piece of it reached the target; then toc.dat, written at the start and
    again at the end, like pg_dump's."""

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.seen_while_open = False
        self.parts = [os.urandom(PIECE_MIN + 12345) for _ in range(3)]

    def dump_to(self, out: Path, *, snapshot: str, jobs: int, running=None) -> None:
        running(self)
        (out / "toc.dat").write_bytes(b"first toc")
        with open(out / "4001.dat.gz", "wb") as fh:
            for part in self.parts:
                fh.write(part)
                fh.flush()
                time.sleep(0.3)
            self.seen_while_open = self.target.arrived.wait(20)
            fh.write(b"tail")
        (out / "4002.dat.gz").write_bytes(b"small")
        (out / "toc.dat").write_bytes(b"final toc, longer")


def test_with_gnu_tar_a_file_goes_up_in_pieces_while_it_is_written(tmp_path: Path) -> None:
    """`appends`: pieces of a file pg_dump still writes travel before it is closed, and
    GNU tar's `--to-command` on the receiving end puts the same files together."""
    target = _Target()
    dumper = _GrowingDumper(target)
    dump = tmp_path / "dump"
    dump_and_upload(dumper, dump, "snap", 2, lambda: target, RuntimeError, appends=True)  # type: ignore[arg-type]
    assert dumper.seen_while_open
    with tarfile.open(fileobj=io.BytesIO(bytes(target.data)), mode="r|") as tar:
        members = [m.name for m in tar]
    assert members.count("4001.dat.gz") >= 2  # in pieces
    assert members.count("toc.dat") == 1 and members[-1] == "toc.dat"  # whole, once, last
    landed = tmp_path / "landed"
    landed.mkdir()
    got = subprocess.run(["sh", "-c", shell.line(["cd", str(landed)]) + " && " + shell.line(upload_command(True))],
                         input=bytes(target.data), capture_output=True)
    assert got.returncode == 0, got.stderr
    assert {p.name: p.read_bytes() for p in landed.iterdir()} == {p.name: p.read_bytes() for p in dump.iterdir()}
    assert all(p.stat().st_mode & 0o077 == 0 for p in landed.iterdir())  # the dump is the database's data


class _SlowLogin:
    """The target's login, slow like a real `ssh` handshake; notes when it was asked for."""

    def __init__(self, target: _Target, dumper: "_Dumper") -> None:
        self.target, self.dumper, self.asked_during_dump = target, dumper, False

    def __call__(self) -> _Target:
        self.asked_during_dump = self.dumper.running
        time.sleep(0.3)
        return self.target


class _RunningDumper(_Dumper):
    def __init__(self, target: _Target) -> None:
        super().__init__(target)
        self.running = False

    def dump_to(self, out: Path, *, snapshot: str, jobs: int, running=None) -> None:
        self.running = True
        try:
            super().dump_to(out, snapshot=snapshot, jobs=jobs, running=running)
        finally:
            self.running = False


def test_the_dump_does_not_wait_for_the_targets_login(tmp_path: Path) -> None:
    target = _Target()
    dumper = _RunningDumper(target)
    login = _SlowLogin(target, dumper)
    dump_and_upload(dumper, tmp_path / "dump", "snap", 2, login, RuntimeError)  # type: ignore[arg-type]
    assert login.asked_during_dump


class _LongDump(LocalPg):
    """A real process standing for a long pg_dump (`sleep`), through LocalPg.dump_to."""

    def dump_argv(self, *, snapshot: str, jobs: int, out: Path | None) -> list[str]:
        return ["sleep", "60"]

    def dump_to(self, out: Path, *, snapshot: str, jobs: int, running=None) -> None:
        def seen(proc: subprocess.Popen[str]) -> None:
            self.proc = proc
            running(proc)

        super().dump_to(out, snapshot=snapshot, jobs=jobs, running=seen)


def test_an_upload_that_cannot_start_stops_the_dump_and_says_why(tmp_path: Path) -> None:
    local = _LongDump(DbAddress("postgres", "127.0.0.1", 5432, "app", "db"), "source database")
    local.env = dict(os.environ)

    def refused() -> _Target:
        raise TargetError("the target refused the login")

    with pytest.raises(TargetError, match="refused the login"):
        dump_and_upload(local, tmp_path / "dump", "snap", 2, refused, RuntimeError)
    assert local.proc.returncode == -signal.SIGTERM  # stopped, not waited for


class _LocalTar:
    """A real `tar x` (here, not over SSH) in the upload's place, with the command given."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.arrived = threading.Event()

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.arrived.set()
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError:
            pass

    def wait(self, timeout=None) -> Result:
        out, err = self.proc.communicate()
        return Result(self.proc.returncode, out, err)


def test_a_target_that_cannot_write_a_piece_says_why(tmp_path: Path) -> None:
    """The target's tar ends with "Exiting with failure status"; the error names the cause."""
    target = _LocalTar(["tar", "-x", "-f", "-", "--to-command", 'echo "cannot create $TAR_FILENAME: No space left" >&2; exit 1'])
    with pytest.raises(TargetError, match=r"sending the dump to the target failed: cannot create 3001\.dat\.gz: No space left"):
        dump_and_upload(_Dumper(target), tmp_path / "dump", "snap", 2, lambda: target,
                        lambda err: TargetError(err), appends=True)
