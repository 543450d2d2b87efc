"""Host files as the target holds them after a move, against a real source sshd and target sshd.

- A rerun sends a tree again when the target no longer holds what was put there (a byte,
  a mode, a link target, a removed directory, the whole tree), seen by the tree's stat
  fingerprint; when `verify` found a difference the fingerprint cannot show (bit rot);
  and with `move --checksum`, which hashes the target's copy.
- Names and link targets that are not UTF-8 move, are kept exactly in the snapshot's
  manifest, verify and rerun.
- A fifo moves as a fifo and its check passes.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import in_ci
from helpers import cli, make_config
from test_hostfiles import _seed_source, _ssh

BAD = os.fsdecode(b"bad\xfename2.txt")  # a name that is not UTF-8 (surrogateescape in Python)
BAD_LINK = os.fsdecode(b"tgt\xff")


def _source(base: Path, owner: Path) -> Path:
    """_seed_source's tree plus an empty directory, an excluded cache and a fifo, all the
    sshd login user's, older than the source's racy window."""
    src = _seed_source(base, owner)
    (src / "empty").mkdir()
    (src / "cache").mkdir()
    (src / "cache" / "tmp.bin").write_bytes(b"scratch")
    os.mkfifo(src / "myfifo", 0o644)
    os.chmod(src / "myfifo", 0o644)
    if os.geteuid() == 0:
        for p in (src / "empty", src / "cache", src / "cache" / "tmp.bin", src / "myfifo"):
            os.lchown(p, owner.stat().st_uid, owner.stat().st_gid)
    return src


def _config(tmp_path: Path, moto: str, sshd: Any, sshd2: Any, src: Path, root: Path) -> Path:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["hosts"] = [{"ssh": _ssh(sshd2), "paths": [str(src)], "exclude": ["*.log", "cache/*"], "to": "data/host"}]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


def _move(cfg: Path, *extra: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the move's host-files plan step, its result), the move having exited 0."""
    r = cli("move", "-f", str(cfg), "--yes", "--json", *extra)
    assert r.exit_code == 0, r.stdout[-3000:] + r.stderr
    doc = r.json()
    return next(s for s in doc["plan"]["steps"] if s["kind"] == "hostfiles"), doc["result"]


def _sent(cfg: Path, *extra: str, why: str) -> None:
    """A move sends the tree again (saying `why` in the plan) and its check passes."""
    step, result = _move(cfg, *extra)
    assert step["todo_count"] == 1 and why in step["detail"], step
    assert not result["nothing_to_do"] and result["verify"]["ok"], result


def _nothing(cfg: Path, *extra: str) -> None:
    step, result = _move(cfg, *extra)
    assert step["todo_count"] == 0 and step["detail"].startswith("nothing to do"), step
    assert result["nothing_to_do"], result


def _state(tree: Path) -> dict[str, tuple[Any, ...]]:
    """What the tree is: per entry, its type, mode, link target, content and mtime."""
    out = {}
    for p in sorted(tree.rglob("*")):
        st = p.lstat()
        content = p.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(p) if p.is_symlink() else None
        out[str(p.relative_to(tree))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), content,
                                         None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns)
    return out


def _refingerprint(cfg: Path) -> None:
    """Make the target's record of the placed tree's fingerprint match the tree as it now
    is: a change no stat field shows (bit rot), which only hashing can find."""
    from relocate.config import load_config
    from relocate.kinds import hostfiles
    from relocate.ssh.connection import session
    from relocate.settings import Login

    config = load_config(cfg)
    dest = os.path.join(config.root, "data/host")
    with session(config.ssh, Login()) as conn:
        records, trees = hostfiles.read_records(conn, config.root, [dest])
    (key, rec), = records.items()
    rec["tree_sha256"] = trees[dest]
    Path(config.root, hostfiles.RECORD).write_text(json.dumps({key: rec}))


def test_what_the_target_lost_is_sent_again(tmp_path: Path, moto: str, sshd, sshd2) -> None:
    src = _source(sshd2.root / "hft1", sshd2.root)
    time.sleep(2.2)  # older than the source's racy window: the cheap rerun path is the one tested
    root = sshd.root / "hft1"
    cfg = _config(tmp_path, moto, sshd, sshd2, src, root)
    landed = root / "data" / "host" / str(src).lstrip("/")
    _sent(cfg, why="")
    want = _state(landed)
    assert "cache" in want and "cache/tmp.bin" not in want and "debug.log" not in want  # excluded
    _nothing(cfg)

    def flip() -> None:  # one byte, same size, the mtime put back: only the ctime shows it
        st = (landed / "app.conf").stat()
        with open(landed / "app.conf", "r+b") as fh:
            fh.write(b"L" if fh.read(1) != b"L" else b"l")
        os.utime(landed / "app.conf", ns=(st.st_atime_ns, st.st_mtime_ns))

    def relink() -> None:
        (landed / "current.conf").unlink()
        (landed / "current.conf").symlink_to("run.sh")

    damages = [flip, lambda: os.chmod(landed / "run.sh", 0o600), relink, lambda: (landed / "empty").rmdir(),
               lambda: shutil.rmtree(root / "data" / "host" / "home")]
    for damage in damages:
        damage()
        assert not landed.exists() or _state(landed) != want
        plan = cli("plan", "-f", str(cfg), "--json")
        assert plan.exit_code == 0, plan.stderr
        step = next(s for s in plan.json()["steps"] if s["kind"] == "hostfiles")
        assert step["todo_count"] == 1 and "data/host changed since it was put in place" in step["detail"], step
        _sent(cfg, why="changed since it was put in place")
        assert _state(landed) == want
        _nothing(cfg)

    shutil.rmtree(root / "data" / "host")
    _sent(cfg, why="data/host is gone from the target")
    assert _state(landed) == want


def test_a_difference_verify_found_is_sent_again_and_checksum_finds_it(tmp_path: Path, moto: str, sshd, sshd2) -> None:
    src = _source(sshd2.root / "hft2", sshd2.root)
    time.sleep(2.2)
    root = sshd.root / "hft2"
    cfg = _config(tmp_path, moto, sshd, sshd2, src, root)
    landed = root / "data" / "host" / str(src).lstrip("/")
    _sent(cfg, why="")
    want = _state(landed)

    (landed / "conf.d" / "db.conf").write_bytes(b"HOST=db\n")  # same size
    _refingerprint(cfg)
    _nothing(cfg)  # a change no stat field shows: the cheap rerun cannot see it...
    v = cli("verify", "-f", str(cfg), "--json")
    assert v.exit_code == 4 and "db.conf" in json.dumps(v.json()["checks"]), v.stdout
    _sent(cfg, why="a check found the target's copy differing")  # ...but once verify has, it is sent again
    assert _state(landed) == want
    assert cli("verify", "-f", str(cfg)).exit_code == 0
    _nothing(cfg)

    (landed / "conf.d" / "db.conf").write_bytes(b"HOST=db\n")
    _refingerprint(cfg)
    _sent(cfg, "--checksum", why="--checksum: 1 entry differ on the target, first ")
    assert _state(landed) == want
    _nothing(cfg, "--checksum")  # hashed, and equal


def test_names_that_are_not_utf8_move_verify_and_rerun(tmp_path: Path, moto: str, sshd, sshd2) -> None:
    src = _source(sshd2.root / "hft3", sshd2.root)
    (src / BAD).write_bytes(b"latin-1 name\n")
    (src / "lnk").symlink_to(BAD_LINK)
    (src / os.fsdecode(b"dir\xe9")).mkdir()
    (src / os.fsdecode(b"dir\xe9") / "inner.txt").write_text("inside\n")
    if os.geteuid() == 0:
        for p in (src / BAD, src / "lnk", src / os.fsdecode(b"dir\xe9"), src / os.fsdecode(b"dir\xe9") / "inner.txt"):
            os.lchown(p, sshd2.root.stat().st_uid, sshd2.root.stat().st_gid)
    time.sleep(2.2)
    root = sshd.root / "hft3"
    cfg = _config(tmp_path, moto, sshd, sshd2, src, root)
    landed = root / "data" / "host" / str(src).lstrip("/")
    _sent(cfg, why="")
    assert (landed / BAD).read_bytes() == b"latin-1 name\n" and os.readlink(landed / "lnk") == BAD_LINK
    assert b"bad\xfename2.txt" in os.listdir(bytes(landed))

    manifest = next((tmp_path / "snapshots").glob("*/manifest.json"))
    text = manifest.read_bytes().decode("utf-8")  # valid UTF-8: the bytes are JSON escapes
    assert "bad\\udcfename2.txt" in text and "tgt\\udcff" in text
    entries = next(iter(json.loads(text)["components"]["hostfiles"].values()))["entries"]
    prefix = str(src).lstrip("/")
    assert entries[f"{prefix}/{BAD}"][0] == "f" and entries[f"{prefix}/lnk"][4] == BAD_LINK  # read back exactly

    assert cli("verify", "-f", str(cfg)).exit_code == 0
    _nothing(cfg)

    (landed / BAD).write_bytes(b"damaged\n")
    v = cli("verify", "-f", str(cfg))
    assert v.exit_code == 4 and "bad\\xfename2.txt" in v.stdout, v.stdout  # named, printable
    vj = cli("verify", "-f", str(cfg), "--json")
    assert vj.exit_code == 4 and any("bad\\xfename2.txt: " in c["detail"] for c in vj.json()["checks"]), vj.stdout
    _sent(cfg, why="changed since it was put in place")
    assert (landed / BAD).read_bytes() == b"latin-1 name\n"
    assert cli("verify", "-f", str(cfg)).exit_code == 0


def test_a_fifo_moves_as_a_fifo_and_checks_clean(tmp_path: Path, moto: str, sshd, sshd2) -> None:
    src = _source(sshd2.root / "hft4", sshd2.root)
    time.sleep(2.2)
    root = sshd.root / "hft4"
    cfg = _config(tmp_path, moto, sshd, sshd2, src, root)
    step, result = _move(cfg)
    checks = [c for c in result["verify"]["checks"] if c["label"].startswith("host files")]
    assert checks and all(c["ok"] for c in checks), checks
    fifo = (root / "data" / "host" / str(src).lstrip("/") / "myfifo").lstat()
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o644
    assert cli("verify", "-f", str(cfg)).exit_code == 0
    _nothing(cfg)


def _mknod_or_skip(path: Path) -> None:
    try:
        os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        if in_ci():
            pytest.fail("making a device node needs root (CAP_MKNOD); CI runs as root")
        pytest.skip("making a device node needs root (CAP_MKNOD) here")


def test_tar_member_types_are_the_letters_find_gives(tmp_path: Path) -> None:
    """What verify compares: the type the stream's listing (and tarfile's) gives each member
    is the one `find -printf %y` gives what tar x makes of it, fifos and devices included."""
    import subprocess

    from relocate.kinds.hostfiles import _TarLister, listing_from_tar, tar_command

    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "f").write_text("x")
    (tree / "l").symlink_to("f")
    os.mkfifo(tree / "p")
    _mknod_or_skip(tree / "c")
    tar = tmp_path / "t.tar"
    argv = tar_command([str(tree)], [])
    argv[argv.index("-f") + 1] = str(tar)
    subprocess.run(argv, check=True)
    lister = _TarLister()
    lister.feed(tar.read_bytes())
    assert lister.done and lister.entries == listing_from_tar(tar)
    found = subprocess.run(["find", str(tree), "-printf", "%P\t%y\n"], capture_output=True, text=True, check=True).stdout
    by_find = dict(line.split("\t") for line in found.splitlines() if line.split("\t")[0])
    prefix = str(tree).lstrip("/") + "/"
    assert {k[len(prefix):]: v[0] for k, v in lister.entries.items() if k.startswith(prefix)} == by_find
    assert by_find["p"] == "p" and by_find["c"] == "c"


def test_a_device_node_the_target_login_cannot_make_fails_alone(tmp_path: Path, moto: str, sshd, sshd2) -> None:
    """A device node needs a root login on the target (mknod): without one it is a failed
    item, named (exit 4), and the rest of the tree is put in place."""
    src = _source(sshd2.root / "hft5", sshd2.root)
    _mknod_or_skip(src / "null")
    time.sleep(2.2)
    root = sshd.root / "hft5"
    cfg = _config(tmp_path, moto, sshd, sshd2, src, root)
    r = cli("move", "-f", str(cfg), "--yes", "--json")
    assert r.exit_code == 4, r.stdout[-3000:] + r.stderr
    failed = r.json()["result"]["failed"]
    assert len(failed) == 1 and failed[0].endswith("/null: a device node, which only a root login on the target can make"), failed
    landed = root / "data" / "host" / str(src).lstrip("/")
    assert (landed / "app.conf").read_text() == "listen 8080\n" and stat.S_ISFIFO((landed / "myfifo").lstat().st_mode)
    assert not (landed / "null").exists()
    v = cli("verify", "-f", str(cfg))
    assert v.exit_code == 4 and "/null: missing" in v.stdout, v.stdout
    again = cli("move", "-f", str(cfg), "--yes")  # never "nothing to do" while the node is not there
    assert again.exit_code == 4 and "a device node" in again.stdout + again.stderr, again.stdout + again.stderr
