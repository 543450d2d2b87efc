"""A killed move's `<id>.partial` snapshot (its dump, its object copies) is removed by
the next move's snapshot in that directory, and a live one never is (snapshot/store.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from relocate.snapshot import store

_WRITER = """
import sys, time
from pathlib import Path
from relocate.snapshot import store
snap = store.begin(Path(sys.argv[1]))
(snap.path / "dump.sql").write_bytes(b"x" * 4096)
print(snap.path, flush=True)
time.sleep(600)
"""


def _writer(root: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_moves_partial_goes_and_a_live_ones_stays(tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    killed, killed_path = _writer(root)
    live, live_path = _writer(root)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        old_style = root / "20200101T000000.000Z-aaaa.partial"  # an older relocate's: no lock file
        old_style.mkdir()
        recent_old_style = root / "20200101T000000.000Z-bbbb.partial"
        recent_old_style.mkdir()
        day_ago = time.time() - store.UNLOCKED_STALE_S - 60
        os.utime(old_style, (day_ago, day_ago))
        assert killed_path.is_dir() and live_path.is_dir()

        snap = store.begin(root)
        assert not killed_path.exists(), "the killed move's partial is still there"
        assert live_path.is_dir() and (live_path / "dump.sql").is_file(), "a running move's partial was removed"
        assert not old_style.exists() and recent_old_style.is_dir()

        final = store.commit(snap, {"id": snap.id})
        assert final.path.is_dir() and not (final.path / store.LOCK).exists()
        assert store.latest(root) == final
        store.begin(root)  # the live writer still holds its own
        assert live_path.is_dir()
    finally:
        live.kill()
        live.wait(timeout=30)
    store.begin(root)  # now it is gone too
    assert not live_path.exists()
