"""Files relocate writes on this machine (`init PATH`, `plan -o`, `discover -o`, `shards emit
-o DIR`) share one writer (relocate/localfile.py): a place that cannot take the file (no
such directory, a file where the directory should be, /proc, a directory where the file
should be) is exit 2 with one line naming the path, never exit 1 "internal error", and
nothing half written is left behind. `plan -o` checks its path before the plan runs."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Iterator

import pytest

import servers
from helpers import aws_client, cli, make_config, one_line_error as _one_line

from relocate import localfile
from relocate.errors import ConfigError




def _bad_places(tmp_path: Path) -> list[tuple[Path, str]]:
    """(a path no file can be written at, the reason the line must give)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    return [(tmp_path / "nodir" / "sub" / "out", "No such file or directory"),
            (afile / "out", "Not a directory"),
            (Path("/proc/relocate-out"), "No such file or directory")]


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".")) if directory.is_dir() else []


def test_init_into_a_place_that_cannot_take_it_is_exit_2(tmp_path: Path) -> None:
    for path, why in _bad_places(tmp_path):
        line = _one_line(cli("init", str(path.with_name("r.yaml"))))
        assert line == f"relocate: error: {path.with_name('r.yaml')}: cannot write ({why})", line
    # a directory where the file should go (--force past "already exists")
    (tmp_path / "adir").mkdir()
    line = _one_line(cli("init", str(tmp_path / "adir"), "--force"))
    assert "adir: cannot write (Is a directory)" in line
    assert _leftovers(tmp_path) == [] and list((tmp_path / "adir").iterdir()) == []


def test_init_writes_the_whole_file_0644_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "relocate.yaml"
    assert cli("init", str(out)).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644 and out.read_text().startswith("#")
    assert _leftovers(tmp_path) == []


def _unreachable_config(tmp_path: Path) -> Path:
    """A relocate.yaml whose source and target nobody serves: a plan that ran would end
    in exit 5 ("cannot reach"), so exit 2 naming -o proves -o was checked first."""
    cfg = tmp_path / "relocate.yaml"
    dead = servers.free_port()
    cfg.write_text(f"""version: 1
app: {{name: x}}
source:
  aws: {{region: us-east-1, endpoint_url: "http://127.0.0.1:{dead}"}}
  s3: [{{bucket: media, to: data/media}}]
target:
  ssh: {{host: 127.0.0.1, port: {dead}, user: nobody}}
  root: /srv/x
""")
    return cfg


def test_plan_output_is_checked_before_the_plan_runs(tmp_path: Path) -> None:
    cfg = _unreachable_config(tmp_path)
    for path, why in _bad_places(tmp_path):
        plan = path.with_name("plan.json")
        line = _one_line(cli("plan", "-f", str(cfg), "-o", str(plan)))
        assert line == f"relocate: error: {plan}: cannot write ({why})", line
    (tmp_path / "adir").mkdir()
    assert "adir: cannot write (Is a directory)" in _one_line(cli("plan", "-f", str(cfg), "-o", str(tmp_path / "adir")))
    assert _leftovers(tmp_path) == []  # the check's probe file is gone too
    # and a good -o does not stop the plan: it runs (and here cannot reach the source)
    run = cli("plan", "-f", str(cfg), "-o", str(tmp_path / "plan.json"))
    assert run.exit_code == 5, run.stderr
    assert not (tmp_path / "plan.json").exists() and _leftovers(tmp_path) == []


def test_plan_output_written_whole(tmp_path: Path, sshd, moto: str) -> None:
    aws_client("s3", moto).create_bucket(Bucket="outpaths")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / tmp_path.name),
                      buckets=[{"bucket": "outpaths", "to": "data"}])
    out = tmp_path / "plans"
    out.mkdir()
    run = cli("plan", "-f", str(cfg), "-o", str(out / "plan.json"))
    assert run.exit_code == 0, run.stderr
    assert json.loads((out / "plan.json").read_text())["format_version"] == 1
    assert stat.S_IMODE((out / "plan.json").stat().st_mode) == 0o644
    assert sorted(p.name for p in out.iterdir()) == ["plan.json"]


def test_discover_output_that_cannot_be_written_is_exit_2(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{servers.free_port()}"
    for path, why in _bad_places(tmp_path):
        line = _one_line(cli("discover", "--endpoint-url", dead, "--region", "us-east-1", "-o", str(path)))
        assert line == f"relocate: error: {path}: cannot write ({why})", line


def test_shards_emit_into_a_directory_that_cannot_be_made_is_exit_2(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format_version": 1, "config_text": "version: 1\napp: {name: x}\nsource:\n  s3: "
                                "[{bucket: m, to: d}]\ntarget: {ssh: {host: 203.0.113.10, user: u}, root: /srv/x}\n",
                                "steps": [], "shards": {"count": 2}}))
    (tmp_path / "afile").write_text("x")
    for out in (Path("/proc/relocate-emit"), tmp_path / "afile" / "sub"):
        line = _one_line(cli("shards", "emit", "--engine", "kubernetes", str(plan), "-o", str(out)))
        assert line.startswith(f"relocate: error: {out}: cannot write ("), line


def _chunks_then_fail() -> Iterator[str]:
    yield "half of it\n"
    raise OSError(28, "No space left on device")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("the old plan\n")
    with pytest.raises(ConfigError) as e:
        localfile.write_atomic(path, _chunks_then_fail())
    assert e.value.message == f"{path}: cannot write (No space left on device)"
    assert path.read_text() == "the old plan\n" and sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
    # renamed onto a directory: refused, the staged copy removed
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("keep")
    with pytest.raises(ConfigError, match="cannot write"):
        localfile.write_atomic(tmp_path / "d", ["new"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "plan.json"]
    localfile.write_atomic(path, ["new ", "plan\n"], mode=0o600)
    assert path.read_text() == "new plan\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
