"""mypy in CI (issue 17): the whole library type-checks under mypy's strict flags
(pyproject.toml [tool.mypy]). A type error fails the suite like any bug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_passes_on_the_library() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "src/relocate"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Success: no issues found" in proc.stdout


def test_the_whole_library_is_strict(tmp_path: Path) -> None:
    """The same configuration fails on an untyped function in any relocate module (not only the
    planner), on a bare generic and on a stray `type: ignore`: the check can fail."""
    pkg = tmp_path / "relocate" / "execute"
    pkg.mkdir(parents=True)
    (tmp_path / "relocate" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "anything.py").write_text("def untyped(x):\n    return x\n\n\n"
                                     "def bare() -> dict:\n    return {}\n\n\n"
                                     "N: int = 1  # type: ignore[assignment]\n")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--config-file", str(ROOT / "pyproject.toml"),
                           str(tmp_path / "relocate")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stdout
    for code in ("no-untyped-def", "type-arg", "unused-ignore"):
        assert f"[{code}]" in proc.stdout, proc.stdout
    assert (ROOT / "src" / "relocate" / "py.typed").exists()
