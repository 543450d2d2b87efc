"""A fresh machine (a CI runner without the local journal) resumes from the sidecar
manifest the previous move left on the target, instead of re-sending everything."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from helpers import aws_client, cli, make_config


def test_move_without_journal_resumes_from_target_sidecar(moto: str, sshd, tmp_path: Path) -> None:
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="media")
    for i in range(40):
        s3.put_object(Bucket="media", Key=f"p/{i}.bin", Body=os.urandom(1000 + i))
    root = str(sshd.root / f"sidecar-{secrets.token_hex(4)}")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=root,
                      buckets=[{"bucket": "media", "to": "data/media"}])
    first = cli("move", "-f", str(cfg), "--yes", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.json()["result"]["objects_sent"] == 40

    # The runner is new: no journal, no snapshots. The target still has the files.
    for p in (tmp_path / "snapshots").glob("journal.sqlite*"):
        p.unlink()
    inode_before = os.stat(Path(root) / "data/media/p/7.bin").st_ino

    s3.put_object(Bucket="media", Key="p/new.bin", Body=b"added later")
    second = cli("move", "-f", str(cfg), "--yes", "--json")
    assert second.exit_code == 0, second.stderr
    result = second.json()["result"]
    assert result["objects_sent"] == 1, "only the new object is sent"
    assert result["objects_skipped"] == 40
    assert os.stat(Path(root) / "data/media/p/7.bin").st_ino == inode_before
    assert (Path(root) / "data/media/p/new.bin").read_bytes() == b"added later"
    assert result["verify"]["ok"] and result["verify"]["matched"] == 41
