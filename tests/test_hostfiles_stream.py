"""Host files, the mechanism behind the speed (issue 18): the tar stream is read once,
and the target's tree once (hashed as it lands, before it is put in place).

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

from relocate.kinds.hostfiles import _TarLister, listing_from_tar, tar_command


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


def _spy(monkeypatch) -> list[str]:
    """Every command relocate runs anywhere: over paramiko, and through the `ssh` binary."""
    import subprocess as sp

    from relocate.ssh.connection import Connection

    seen: list[str] = []
    real_start, real_popen = Connection.start, sp.Popen

    def start(self, command, *a, **kw):
        seen.append(command)
        return real_start(self, command, *a, **kw)

    class Popen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, argv, *a, **kw):
            if isinstance(argv, list) and argv and os.path.basename(str(argv[0])) == "ssh" and "--" in argv:
                seen.append("ssh: " + " ".join(map(str, argv[argv.index("--") + 2:])))
            super().__init__(argv, *a, **kw)

    monkeypatch.setattr(Connection, "start", start)
    monkeypatch.setattr(sp, "Popen", Popen)
    return seen


def _hash_spy(monkeypatch) -> list[str]:
    """The directories hashed on the target by a separate command (files.hash_tree)."""
    from relocate.targets import files

    hashed: list[str] = []
    real = files.hash_tree
    monkeypatch.setattr(files, "hash_tree", lambda conn, d, timeout=None: hashed.append(d) or real(conn, d, timeout))
    return hashed


def test_what_lands_damaged_is_never_put_in_place(tmp_path: Path, moto: str, sshd, sshd2, monkeypatch) -> None:
    """The target's hashes of what tar x wrote are compared with the stream's before the
    tree replaces `to:`: a difference (here the stream's hash of one file is made wrong,
    as a corrupted delivery would look) leaves the old tree, exit 5, and a rerun fixes it."""
    import yaml

    import relocate.kinds.hostfiles as hostfiles
    from helpers import cli, make_config
    from test_hostfiles import _seed_source, _ssh

    src = _seed_source(sshd2.root / "hfd", sshd2.root)
    root = sshd.root / "hfd"
    landed = root / "data" / "host" / str(src).lstrip("/")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["hosts"] = [{"ssh": _ssh(sshd2), "paths": [str(src)], "to": "data/host"}]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    landed.mkdir(parents=True)
    (landed / "app.conf").write_text("the old tree\n")
    if os.geteuid() == 0:  # the target's login user owns its root, as on a real host
        for path in [root, *root.rglob("*")]:
            os.lchown(path, sshd.root.stat().st_uid, sshd.root.stat().st_gid)

    real_end = hostfiles._TarLister._end

    def end(self) -> None:
        if self.row is not None and self.path.endswith("/app.conf"):
            self.sink.update(b"not what was sent")
        real_end(self)

    monkeypatch.setattr(hostfiles._TarLister, "_end", end)
    r = cli("move", "-f", str(cfg), "--yes")
    assert r.exit_code == 5, r.stdout + r.stderr
    assert "app.conf: differs" in r.stderr and "nothing was put in place" in r.stderr, r.stderr
    assert (landed / "app.conf").read_text() == "the old tree\n" and not (landed / "run.sh").exists()
    assert not (root / ".relocate" / "hosts.json").exists()  # no record: the next move copies again

    monkeypatch.setattr(hostfiles._TarLister, "_end", real_end)
    again = cli("move", "-f", str(cfg), "--yes")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert (landed / "app.conf").read_text() == "listen 8080\n"


def test_first_move_reads_the_tree_once_and_a_rerun_not_at_all(tmp_path: Path, moto: str, sshd, sshd2, monkeypatch) -> None:
    import time

    import yaml

    import relocate.kinds.hostfiles as hostfiles
    from helpers import cli, make_config
    from test_hostfiles import _seed_source, _ssh

    src = _seed_source(sshd2.root / "hfs", sshd2.root)
    (src / "bulk.bin").write_bytes(os.urandom(3 << 20))
    if os.geteuid() == 0:
        os.lchown(src / "bulk.bin", sshd2.root.stat().st_uid, sshd2.root.stat().st_gid)
    time.sleep(3.2)  # older than the racy window (2 s after whole seconds): the fingerprint is taken
    root = sshd.root / "hfs"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["hosts"] = [{"ssh": _ssh(sshd2), "paths": [str(src)], "to": "data/host"}]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    reread: list[Path] = []
    real_listing = hostfiles.listing_from_tar
    monkeypatch.setattr(hostfiles, "listing_from_tar", lambda p: reread.append(p) or real_listing(p))

    seen = _spy(monkeypatch)
    hashed = _hash_spy(monkeypatch)
    first = cli("move", "-f", str(cfg), "--yes", "--json")
    assert first.exit_code == 0, first.stdout + first.stderr
    # One `tar c` on the source (no digest pass before a first move), streamed by `ssh` at
    # both ends into one `tar x`; the snapshot tar was never read back for the listing.
    tar_c = [c for c in seen if "-c -f - -C /" in c]  # the stream, or the digest pass (`sh -s -- -c -f - ...`)
    assert len(tar_c) == 1 and tar_c[0].startswith("ssh: tar -c -f -"), seen
    assert len([c for c in seen if "tar -x -p -f -" in c and c.startswith("ssh: ")]) == 1, seen
    assert reread == []
    checks = [c for c in first.json()["result"]["verify"]["checks"] if c["label"].startswith("host files")]
    assert checks and all(c["ok"] for c in checks), checks
    assert (root / "data" / "host" / str(src).lstrip("/") / "bulk.bin").read_bytes() == (src / "bulk.bin").read_bytes()
    record = (root / ".relocate" / "hosts.json").read_text()
    assert '"stat_sha256"' in record and len([s for s in (tmp_path / "snapshots").iterdir() if s.is_dir()]) == 1
    # The target hashed the tree in the extracting command itself; the move's check only
    # listed it (sizes). `relocate verify` reads every file there again.
    assert hashed == [] and "hashed on arrival" in checks[0]["detail"], (hashed, checks)
    v = cli("verify", "-f", str(cfg), "--json")
    assert v.exit_code == 0 and len(hashed) == 1, v.stdout + v.stderr
    assert "hashed on arrival" not in str(v.json())
    hashed.clear()

    seen.clear()
    again = cli("move", "-f", str(cfg), "--yes")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert "no new snapshot" in again.stdout and "hosts:0:" in again.stdout, again.stdout
    # Nothing to do: no tar anywhere, not even to hash it; no `ssh` stream; a few commands.
    assert not any("-c -f - -C /" in c or "tar -x" in c or c.startswith("ssh: ") for c in seen), seen
    assert len(seen) <= 12, seen

    # Not blind: a changed file (same size, same mtime put back) is copied again.
    st = (src / "bulk.bin").stat()
    with open(src / "bulk.bin", "r+b") as fh:
        fh.write(b"X")
    os.utime(src / "bulk.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    time.sleep(3.2)
    third = cli("move", "-f", str(cfg), "--yes")
    assert third.exit_code == 0, third.stdout + third.stderr
    assert (root / "data" / "host" / str(src).lstrip("/") / "bulk.bin").read_bytes()[:1] == b"X"
