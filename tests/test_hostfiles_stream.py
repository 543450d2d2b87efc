"""Host files, the mechanism behind the speed (issue 18): the tar stream is read once.

The listing `verify` compares with (type, mode, mtime, owner, link, sha256 per entry) is
built from the stream as it passes; it must equal what Python's tarfile reads from the
snapshot tar, for what GNU tar writes: long names and link targets, hard links, empty
files, fifos, non-UTF-8 names, at any chunk boundaries.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

from relocate.components.hostfiles import _TarLister, listing_from_tar, tar_command


def _tree(base: Path) -> Path:
    root = base / "tree"
    deep = root / ("d" * 90) / ("e" * 90)
    deep.mkdir(parents=True)
    (deep / ("f" * 120 + ".conf")).write_bytes(os.urandom(70_000))
    (root / "empty").write_bytes(b"")
    (root / "block").write_bytes(os.urandom(512))
    (root / "big").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    os.link(root / "block", root / "block-hard")
    (root / "near").symlink_to("block")
    (root / "far").symlink_to("x/" * 70 + "target")
    os.mkfifo(root / "pipe")
    os.chmod(root / "block", 0o4751)
    (root / "caf\xe9 \u2603").write_text("snow\n")
    (root / os.fsdecode(b"raw-\xff")).write_text("latin\n")
    os.utime(root / "big", (1_600_000_000, 1_600_000_000))
    return root


def test_stream_listing_equals_tarfile_at_any_chunking(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    tar = tmp_path / "t.tar"
    argv = tar_command([str(root)], [])
    argv[argv.index("-f") + 1] = str(tar)
    subprocess.run(argv, check=True)
    data = tar.read_bytes()
    want = listing_from_tar(tar)
    assert len(want) >= 12 and want[str(root / "big").lstrip("/")][5] is not None
    rng = random.Random(18)
    for sizes in ([len(data)], [1] * 3000 + [len(data)], [511, 513, 1 << 20], None):
        lister, at = _TarLister(), 0
        while at < len(data):
            step = sizes.pop(0) if sizes else rng.randint(1, 70_000)
            lister.feed(data[at:at + step])
            at += step
        assert lister.done and not lister.unsupported
        assert lister.entries == want


def test_pax_headers_are_left_to_tarfile(tmp_path: Path) -> None:
    """A format the lister does not follow is flagged, never listed wrong."""
    root = _tree(tmp_path)
    tar = tmp_path / "p.tar"
    subprocess.run(["tar", "--format=posix", "-c", "-f", str(tar), "-C", str(root), "."], check=True)
    lister = _TarLister()
    lister.feed(tar.read_bytes())
    assert lister.unsupported
