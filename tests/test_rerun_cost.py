"""What a second `move` costs (issue 18): the mechanism, not the time (that is
bench/bench_rerun.py's).

- A rerun with nothing to do sends no object, logs in to the target once (no bulk
  `ssh` login), runs at most MAX_COMMANDS remote commands, and imports neither the
  transfer engine nor the kinds relocate.yaml does not configure: checked in a fresh
  interpreter, as a user runs it.
- paramiko's `invoke` is imported only when ~/.ssh/config has a `Match exec`, which
  still works.
- A resume (part of the bucket on the target already, as after a kill -9) does not
  hash again on the target what the journal records as hashed on arrival; only
  `--checksum` does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import aws_client, cli, fresh_cli, make_config
from relocate.errors import TargetError
from relocate.targets import files

# Remote commands: the gather's probe with the sizes under the bucket's directory (one),
# the lock with the move-start line and the staging dir (one), the staging dir's removal
# with the move-end line and the unlock (one). They were 8 separate ones; a rerun also
# used to start as many `ssh` logins again for the bulk lanes and throw them away.
MAX_COMMANDS = 3

# Loaded only when objects move: the transfer engine and its S3 readers.
ENGINE = ("relocate.execute.objects", "relocate.execute.wire", "relocate.sources.s3data", "relocate.sources.s3gets",
          "obstore", "pycurl")
# Loaded only when relocate.yaml configures them.
OTHER_KINDS = ("relocate.kinds.dns", "relocate.kinds.databases", "relocate.kinds.deploy", "relocate.kinds.hostfiles",
               "dns", "relocate.execute.pg", "relocate.execute.mysql",
               # the terms checks: only with target.provider (settings.profile_dirs reads the env var)
               "relocate.policy.schema", "relocate.policy.profiles", "relocate.policy.engine")
# paramiko's `invoke` (ssh/deferred.py): only for a `Match exec` in ~/.ssh/config.
DEFERRED = ("invoke.context",)

# Run before relocate's entry point (helpers.fresh_cli): counts what a move asks of the target.
_COUNT = """
from relocate.ssh.connection import Connection
from relocate.ssh.openssh import OpenSsh
seen.update(commands=[], connects=0, ssh_logins=0)
start, connect, master = Connection.start, Connection.connect, OpenSsh.master
def count_start(self, command, *a, **kw):
    seen["commands"].append(command)
    return start(self, command, *a, **kw)
def count_connect(self, *a, **kw):
    seen["connects"] += 1
    return connect(self, *a, **kw)
def count_master(self, *a, **kw):
    seen["ssh_logins"] += 1
    return master(self, *a, **kw)
Connection.start, Connection.connect, OpenSsh.master = count_start, count_connect, count_master
"""

def _seed(moto: str, n: int) -> tuple[Any, str]:
    bucket = "rerun" + secrets.token_hex(3)
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket=bucket)
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"d/{i:03d}.bin", Body=os.urandom(512 + i))
    return s3, bucket


def test_a_rerun_with_nothing_to_do_is_one_listing_one_login_and_few_commands(moto: str, sshd, tmp_path: Path) -> None:
    _, bucket = _seed(moto, 30)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / bucket),
                      buckets=[{"bucket": bucket, "to": "data"}])
    first = cli("move", "-f", str(cfg), "--yes", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.json()["result"]["objects_sent"] == 30

    run = fresh_cli("move", "-f", str(cfg), "--yes", "--json", watch=ENGINE + OTHER_KINDS + DEFERRED, prelude=_COUNT)
    assert run["code"] == 0, run["out"][-2000:]
    result = json.loads(run["out"])["result"]
    assert result["nothing_to_do"] and result["objects_sent"] == 0 and result["objects_skipped"] == 30
    assert run["connects"] == 1, "one SSH connection to the target"
    assert run["ssh_logins"] == 0, "no bulk lane logs in when no object is sent"
    assert run["loaded"] == [], f"a rerun with nothing to do imported {run['loaded']}"
    assert len(run["commands"]) <= MAX_COMMANDS, "\n".join(c[:120] for c in run["commands"])
    # nothing on the target hashed: sizes only (a `find`), never sha256sum or openssl over the data
    assert not any("sha256" in c or "openssl" in c for c in run["commands"])


def test_a_resume_does_not_hash_again_what_was_verified_before(moto: str, sshd, tmp_path: Path, monkeypatch) -> None:
    s3, bucket = _seed(moto, 20)
    root = sshd.root / bucket
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data"}])
    assert cli("move", "-f", str(cfg), "--yes").exit_code == 0
    # As after a kill -9 part-way: some objects are on the target and in the journal, some not.
    for i in range(20, 25):
        s3.put_object(Bucket=bucket, Key=f"d/{i:03d}.bin", Body=os.urandom(700))
    hashed: list[str] = []
    real = files.hash_tree

    def hash_tree(conn: Any, directory: str, timeout: float | None = None) -> dict[str, str]:
        hashed.append(directory)
        return real(conn, directory, timeout)

    monkeypatch.setattr(files, "hash_tree", hash_tree)
    r = cli("move", "-f", str(cfg), "--yes", "--json")
    assert r.exit_code == 0, r.stderr
    result = r.json()["result"]
    assert result["objects_sent"] == 5 and result["objects_skipped"] == 20
    assert hashed == [], "the 20 objects verified on arrival by the first move were hashed again"
    assert result["verify"]["ok"] and result["verify"]["matched"] == 25 and result["verify"]["checked_on_arrival"] == 25

    # --checksum asks for it: what is already there is hashed on the target (once, before sending).
    r = cli("move", "-f", str(cfg), "--yes", "--json", "--checksum")
    assert r.exit_code == 0, r.stderr
    assert hashed == [str(root / "data")]
    assert r.json()["result"]["nothing_to_do"]
    # and `relocate verify` re-hashes everything
    assert cli("verify", "-f", str(cfg)).exit_code == 0
    assert hashed == [str(root / "data")] * 2


def test_invoke_is_imported_only_for_a_match_exec(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text('Match exec "test -n x"\n  User matched\nHost *\n  Port 2222\n')
    # relocate.ssh first, as relocate imports paramiko (a paramiko imported before it keeps the real invoke)
    probe = ("import sys\n"
             "import relocate.ssh.connection\n"
             "import paramiko\n"
             "before = 'invoke.context' in sys.modules\n"
             "found = paramiko.SSHConfig.from_path(sys.argv[1]).lookup('example.org')\n"
             "print(before, found.get('user'), found.get('port'), 'invoke.context' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "matched", "2222", "True"]


def test_the_probe_lists_sizes_in_the_same_command(sshd) -> None:
    """targets/facts.Probing: the facts and, per directory, what files.list_sizes says, in
    one remote command; a listing that fails (an unreadable subdirectory) is None, so the
    caller asks list_sizes itself and reports its error as before."""
    from relocate.ssh.connection import Connection
    from relocate.ssh.via import SshSpec
    from relocate.targets import facts, files

    root = sshd.root / f"probe-{secrets.token_hex(3)}"
    good, locked = root / "data", root / "locked"
    for d in (good / "a b", locked / "inner"):
        d.mkdir(parents=True)
    (good / "a b" / "x\ty\nz").write_bytes(b"12345")
    (good / "top").write_bytes(b"")
    (locked / "inner" / "f").write_bytes(b"1")
    receipts = root / "receipts"
    receipts.mkdir()
    (receipts / "1-1.r").write_bytes(b'{"k": 1}\n{"k": 2}\n')
    (receipts / "2-2.r").write_bytes(b'{"k": 3}')
    (receipts / "other.txt").write_bytes(b"not a receipt")
    for d in (root, good, good / "a b", locked):
        shutil.chown(d, sshd.user, sshd.user)
    os.chmod(locked / "inner", 0)  # root's, unreadable by the login user
    conn = Connection(SshSpec(host=sshd.host, port=sshd.port, user=sshd.user, identity_file=str(sshd.identity_file),
                              host_key=sshd.host_key_fingerprint))
    with conn:
        conn.connect()
        seen: list[str] = []
        start = conn.start
        conn.start = lambda command, *a, **kw: (seen.append(command), start(command, *a, **kw))[1]  # type: ignore[method-assign]
        got, listings, taken = facts.Probing(conn, str(root), [str(good)], (),
                                             [str(good), str(root / "missing"), str(locked), str(good)],
                                             [str(receipts), str(root / "none")]).result()
        assert len(seen) == 1
        assert listings == [{"a b/x\ty\nz": 5, "top": 0}, {}, None, {"a b/x\ty\nz": 5, "top": 0}]
        # each receipt file's lines, a newline after each file (a torn last line stays torn); none: b""
        assert taken == [b'{"k": 1}\n{"k": 2}\n\n{"k": 3}\n', b""]
        alone = facts.probe(conn, str(root), [str(good)])
        assert got.free_bytes and alone.free_bytes  # the disk's free space moves under other tests' writes
        assert dataclasses.replace(got, free_bytes=None) == dataclasses.replace(alone, free_bytes=None)
        assert got.writable and got.existing == str(root) and got.user == sshd.user
        assert files.list_sizes(conn, str(good)) == listings[0]
        with pytest.raises(TargetError):
            files.list_sizes(conn, str(locked))


def test_a_first_move_starts_the_bulk_logins_while_the_source_is_still_listed(moto: str, sshd, tmp_path: Path) -> None:
    # gather's `first_move` (workflow.prepare starts the lanes' ssh logins there) runs as
    # soon as the target and the journal show nothing was moved, before the listing is
    # waited for; once something was moved it is not called (a rerun logs in only when
    # the comparison finds work, as above).
    import threading
    from concurrent.futures import Future

    from relocate.config import load_config
    from relocate.execute.gather import gather
    from relocate.settings import Login
    from relocate.sources.aws import Aws
    from relocate.sources.inventory import take_inventory
    from relocate.ssh.connection import session

    _, bucket = _seed(moto, 5)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / bucket),
                      buckets=[{"bucket": bucket, "to": "data"}])
    config = load_config(cfg)
    aws = Aws(config.aws)
    inventory = take_inventory(config, aws)

    def gather_once(listing_ends: float) -> list[bool]:
        listed: Future = Future()
        seen: list[bool] = []
        timer = threading.Timer(listing_ends, lambda: listed.done() or listed.set_result(inventory))
        timer.start()
        try:
            with session(config.ssh, Login()) as conn:
                def first_move() -> None:
                    seen.append(listed.done())
                    if not listed.done():
                        listed.set_result(inventory)
                got = gather(config, aws, conn, listed=listed, first_move=first_move)
        finally:
            timer.cancel()
        assert len(got.inventory.buckets[0].objects) == 5
        return seen

    # the listing "ends" after 20 s unless first_move is called before it is waited for
    assert gather_once(20) == [False], "called once, before the listing was waited for"
    assert cli("move", "-f", str(cfg), "--yes").exit_code == 0
    assert gather_once(0.1) == [], "something was moved: not a first move"
