"""Bench only (bench/stages.py): give Python's threads their names at the OS level, so
/proc/<pid>/task/<tid>/comm tells a lane from an S3 GET pool thread (Python 3.11 does
not do it itself). Loaded through PYTHONPATH by the bench's relocate legs, never by relocate."""

import ctypes
import threading

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None

if _prctl is not None:
    _bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def _named(self):  # type: ignore[no-untyped-def]
        try:
            _prctl(15, self.name.encode("utf-8", "replace")[:15], 0, 0, 0)  # PR_SET_NAME
        except Exception:
            pass
        return _bootstrap(self)

    threading.Thread._bootstrap_inner = _named  # type: ignore[attr-defined]
