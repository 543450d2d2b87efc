#!/usr/bin/env python3
"""Host files benchmark (issue 5): relocate's source-tar -> target-tar relay vs OpenSSH.

Starts two sshd (tests/servers.py): the source host and the target. Fills a tree on the
source (1 x BIG MiB + N x 128 KiB), then times, in the same run, each into a fresh dir:

  peer     ssh source tar c | ssh target tar x        (OpenSSH client, two processes)
  relocate `relocate move` with only source.hosts     (tar c stream relayed by paramiko,
           teed into the snapshot, staged then renamed, then verify hashes every file
           on the target and re-reads the snapshot tar)

    python bench/bench_hostfiles.py --big 256 --files 2000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import servers  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", type=int, default=256, help="MiB in the one big file")
    ap.add_argument("--files", type=int, default=2000, help="number of 128 KiB files")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-hostfiles-"))
    src, dst = servers.start_sshd(work / "src"), servers.start_sshd(work / "dst")
    moto = servers.start_moto()
    try:
        tree = src.root / "tree"
        (tree / "small").mkdir(parents=True)
        with open(tree / "big.bin", "wb") as fh:
            for _ in range(args.big):
                fh.write(os.urandom(1 << 20))
        for i in range(args.files):
            (tree / "small" / f"{i:05d}.dat").write_bytes(os.urandom(128 << 10))
        subprocess.run(["chown", "-R", f"{src.root.stat().st_uid}:{src.root.stat().st_gid}", str(tree)], check=True)
        total = args.big * (1 << 20) + args.files * (128 << 10)

        def ssh(server: servers.Sshd) -> list[str]:
            kh = work / "kh"
            kh.write_text(src.known_hosts_line() + "\n" + dst.known_hosts_line() + "\n")
            return ["ssh", "-o", f"UserKnownHostsFile={kh}", "-o", "BatchMode=yes", "-i", str(server.identity_file),
                    "-p", str(server.port), f"{server.user}@{server.host}"]

        peer_dest = dst.root / "peer"
        t = time.monotonic()
        subprocess.run(" ".join([*ssh(src), "tar", "c", "-C", "/", str(tree).lstrip("/"), "|", *ssh(dst),
                                 "'mkdir -p", str(peer_dest), "&& tar x -C", str(peer_dest) + "'"]), shell=True, check=True)
        peer = time.monotonic() - t

        import yaml
        cfg = work / "relocate.yaml"
        ssh_map = lambda s: {"host": s.host, "port": s.port, "user": s.user, "identity_file": str(s.identity_file),  # noqa: E731
                             "host_key": s.host_key_fingerprint}
        cfg.write_text(yaml.safe_dump({
            "version": 1, "app": {"name": "bench"},
            "source": {"aws": {"endpoint_url": moto.endpoint_url}, "hosts": [{"ssh": ssh_map(src), "paths": [str(tree)], "to": "host"}]},
            "target": {"ssh": ssh_map(dst), "root": str(dst.root / "reloc")},
            "snapshot": {"dir": str(work / "snaps"), "key_file": str(work / "age.key")},
        }))
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "HOME": str(work)}
        t = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes"], env=env, capture_output=True, text=True)
        reloc = time.monotonic() - t
        if r.returncode != 0:
            raise SystemExit(f"relocate move failed ({r.returncode}): {r.stderr[-2000:]}")
        t = time.monotonic()
        v = subprocess.run([sys.executable, "-m", "relocate", "verify", "-f", str(cfg)], env=env, capture_output=True, text=True)
        verify = time.monotonic() - t
        if v.returncode != 0:
            raise SystemExit(f"relocate verify failed ({v.returncode}): {v.stdout[-2000:]}")
        mib = total / (1 << 20)
        print(f"corpus {mib:.0f} MiB ({args.files} x 128 KiB + {args.big} MiB)")
        print(f"  OpenSSH tar c | ssh tar x : {peer:6.2f} s  {mib / peer:6.1f} MiB/s")
        print(f"  relocate move (+verify)   : {reloc:6.2f} s  {mib / reloc:6.1f} MiB/s   ratio {reloc / peer:.2f}x")
        print(f"  of which verify (alone)   : {verify:6.2f} s  -> copy without verify ~{reloc - verify:.2f} s, ratio {(reloc - verify) / peer:.2f}x")
    finally:
        for s in (src, dst):
            s.stop()
        moto.stop()


if __name__ == "__main__":
    main()
