"""PostgreSQL default mode, the mechanism behind the speed (issue 18): the dump's files go
to the target while pg_dump is still writing the others, and the upload that results is
the whole dump, toc.dat last."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
from pathlib import Path

from relocate.execute.pg import dump_and_upload
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

    def dump_to(self, out: Path, *, snapshot: str, jobs: int) -> None:
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
