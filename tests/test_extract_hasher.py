"""The host-files extraction on the target (kinds/hostfiles._EXTRACT): GNU tar x with each
file hashed while tar extracts the next (targets/extract_hasher.py), or, without
python3, the tree hashed once tar is done. Run here with this machine's sh, GNU tar and
python3 on real pipes, on archives with the names and members that could trip it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from relocate.kinds.hostfiles import extract_script
from relocate.targets import shell
from relocate.targets.files import parse_hashes

TARGETS = Path(__file__).resolve().parent.parent / "src" / "relocate" / "targets"
NAMES = ["d/sp ace", "d/new\nline", "d/back\\slash", "d/tab\tx", "d/café", "d/q'uote\"", "d/-dash", "d/?wh*",
         "d/ctl\x01x", "d/" + "L" * 150, "d/sub/deeper/file"]


def _archive(path: Path, *, duplicate: bool = False) -> dict[str, bytes]:
    """A GNU tar with awkward names, a 3 MiB file, a symlink, a hard link and a directory;
    `duplicate` adds a second member under one name (tar extracts both, the last wins).
    Returns {path: content} of the regular files the extraction must leave."""
    files = {name: f"content of {name!r}\n".encode() for name in NAMES}
    files["big/blob.bin"] = os.urandom(3 << 20)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_600_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
        for d in ("d", "d/sub", "d/sub/deeper", "big"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_600_000_000
            tar.addfile(info)
        for name, data in files.items():
            add(name, data)
        link = tarfile.TarInfo("d/link")
        link.type, link.linkname = tarfile.SYMTYPE, "sp ace"
        tar.addfile(link)
        hard = tarfile.TarInfo("d/hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "d/café"
        tar.addfile(hard)
        files["d/hard"] = files["d/café"]
        if duplicate:
            files["d/sp ace"] = b"the second copy wins\n"
            add("d/sp ace", files["d/sp ace"])
    return files


def _expected(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def _extract(tmp_path: Path, archive: Path, path_env: str | None = None) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    stage = tmp_path / "stage"
    env = {**os.environ, **({"PATH": path_env} if path_env is not None else {})}
    with archive.open("rb") as stdin:
        r = subprocess.run(["sh", "-c", extract_script(), "sh", str(stage), shell.program("extract_hasher")],
                           stdin=stdin, capture_output=True, env=env, timeout=120)
    return r, stage


def test_each_file_is_hashed_as_it_lands_and_the_answer_is_the_finished_trees(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    files = _archive(archive)
    r, stage = _extract(tmp_path, archive)
    assert r.returncode == 0, r.stderr
    assert parse_hashes(r.stdout) == _expected(files)
    assert (stage / "d" / "new\nline").read_bytes() == files["d/new\nline"]
    assert (stage / "d" / "link").is_symlink() and "d/link" not in parse_hashes(r.stdout)

    # The mechanism: run the hasher's two halves here and count what the walk at the end
    # had to hash again. Every file was hashed during the extraction, and stayed as hashed.
    driver = (f"import sys, json; sys.path.insert(0, {str(TARGETS)!r}); import extract_hasher as e\n"
              "code, seen = e.extract(['tar', '-x', '-p', '-v', '--quoting-style=escape', '-f', '-'])\n"
              "out, again = e.settle(seen)\n"
              "print(json.dumps([code, len(seen), again, len(out)]))")
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    with archive.open("rb") as stdin:
        got = subprocess.run([sys.executable, "-I", "-S", "-c", driver], stdin=stdin, cwd=again_dir,
                             capture_output=True, timeout=120)
    code, during, rehashed, total = json.loads(got.stdout)
    assert (code, rehashed, total) == (0, 0, len(files)), got.stderr
    assert during == len(files)


def test_a_name_extracted_twice_is_answered_with_its_last_copy(tmp_path: Path) -> None:
    archive = tmp_path / "dup.tar"
    files = _archive(archive, duplicate=True)
    r, _ = _extract(tmp_path, archive)
    assert r.returncode == 0, r.stderr
    assert parse_hashes(r.stdout)["d/sp ace"] == hashlib.sha256(b"the second copy wins\n").hexdigest()
    assert parse_hashes(r.stdout) == _expected(files)


def _no_python_path(tmp_path: Path) -> str:
    """A PATH with what the script needs but python3."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("sh", "tar", "rm", "mkdir", "find", "xargs", "openssl", "sha256sum", "mktemp", "cat", "grep"):
        found = shutil.which(tool)
        assert found, tool
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_without_python3_the_tree_is_hashed_once_tar_is_done(tmp_path: Path) -> None:
    """A target without python3 gets the same answer from tar x and HASH_CWD."""
    archive = tmp_path / "a.tar"
    files = _archive(archive)
    r, _ = _extract(tmp_path, archive, path_env=_no_python_path(tmp_path))
    assert r.returncode == 0, r.stderr
    assert parse_hashes(r.stdout) == _expected(files)


def test_a_broken_stream_fails_with_tars_status_and_the_hashes_of_what_it_left(tmp_path: Path) -> None:
    """tar's failure is the script's status, with python3 and without; the tree tar left is
    hashed all the same (apply decides from tar's messages whether it may stand: a device
    node a login that is not root cannot make is the one case that may)."""
    archive = tmp_path / "a.tar"
    files = _archive(archive)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[: (2 << 20) + 700])  # ends inside the big file
    for path_env in (None, _no_python_path(tmp_path)):
        r, stage = _extract(tmp_path, cut, path_env=path_env)
        assert r.returncode == 2 and b"Unexpected EOF" in r.stderr, (path_env, r.returncode, r.stderr)
        got = parse_hashes(r.stdout)
        assert b"\x01" in r.stdout and got["d/sp ace"] == _expected(files)["d/sp ace"], (path_env, r.stdout[-200:])
        assert got["big/blob.bin"] != _expected(files)["big/blob.bin"]  # the part that landed
