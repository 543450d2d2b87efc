"""Issue 6 with real links: the path to the target crosses a veth pair into a network
namespace this test makes; the link is cut (`ip link set down`) and rate-limited
(`tc tbf`) while `relocate move` runs. Root only (CI runs as root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import in_ci
from faultproxy import FaultProxy
from test_transfer import _assert_complete, _config, _corpus, _env, _seed

HERE = Path(__file__).parent
HOST_IP, NS_IP = "198.18.0.1", "198.18.0.2"
KiB = 1024


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Link:
    """relocate -> NS_IP (inside the namespace) -> back over the veth to HOST_IP -> sshd."""

    def __init__(self, sshd) -> None:
        n = os.getpid() % 100000
        self.ns, self.veth = f"relo{n}", f"rvh{n}"
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.veth, "type", "veth", "peer", "name", f"rvn{n}")
        _ip("link", "set", f"rvn{n}", "netns", self.ns)
        _ip("addr", "add", f"{HOST_IP}/24", "dev", self.veth)
        _ip("link", "set", self.veth, "up")
        _ip("-n", self.ns, "addr", "add", f"{NS_IP}/24", "dev", f"rvn{n}")
        _ip("-n", self.ns, "link", "set", f"rvn{n}", "up")
        _ip("-n", self.ns, "link", "set", "lo", "up")
        self.back = FaultProxy((sshd.host, sshd.port), host=HOST_IP)  # host side: veth -> sshd
        self.inner = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, str(HERE / "faultproxy.py"),
                                       NS_IP, "0", HOST_IP, str(self.back.port)], stdout=subprocess.PIPE, text=True)
        assert self.inner.stdout is not None
        self.port = int(self.inner.stdout.readline())

    def set(self, up: bool) -> None:
        _ip("link", "set", self.veth, "up" if up else "down")

    def close(self) -> None:
        self.inner.kill()
        self.inner.wait()
        self.back.close()
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


@pytest.fixture
def link(sshd) -> Iterator[Link]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        msg = "network namespaces need root and iproute2"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    made = Link(sshd)
    try:
        yield made
    finally:
        made.close()


def test_link_cut_mid_transfer_then_restored(tmp_path: Path, seaweedfs, sshd, link: Link) -> None:
    from servers import S3Server

    server = S3Server("seaweedfs", seaweedfs.endpoint_url, seaweedfs.access_key, seaweedfs.secret_key)
    objects = _corpus(40, 256 * KiB)
    bucket = _seed(server, objects)
    root = sshd.root / f"netns-{bucket}"
    cfg = _config(tmp_path, server, sshd, bucket, root)
    doc = cfg.read_text().replace(f"host: {sshd.host}", f"host: {NS_IP}").replace(f"port: {sshd.port}", f"port: {link.port}")
    cfg.write_text(doc)
    # tbf: 40 Mbit/s on the veth keeps the move long enough to cut it in the middle.
    subprocess.run(["tc", "qdisc", "add", "dev", link.veth, "root", "tbf", "rate", "40mbit", "burst", "64kb",
                    "latency", "400ms"], check=True)
    # Default backoff (1, 2, 4, 8 s) outlasts the 5 s outage; the stall watchdog notices it after 3 s.
    env = {**os.environ, **_env(server), "RELOCATE_STALL_TIMEOUT": "3", "RELOCATE_RETRY_BACKOFF": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "relocate", "move", "-f", str(cfg), "--yes", "--json", "--lanes", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            ev = json.loads(line)
            events.append(ev)
            if ev["event"] == "progress" and ev["bytes"] > 0:
                link.set(False)  # the cable is pulled
                time.sleep(5)
                link.set(True)
                break
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    events += [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert proc.returncode == 0, err
    assert any(e["event"] == "warning" and "retrying" in e["message"] for e in events)
    assert json.loads(out)["result"]["verify"]["ok"]
    _assert_complete(root, objects)

