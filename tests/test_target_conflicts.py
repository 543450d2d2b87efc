"""What stands in the way on the target, seen by the plan and met by the move, on the real
sshd (login `relocatetest`; the tests run as root, so they can hand a directory to root):

- a plain file where a destination's directory must go (an env file's directory, a
  bucket's `to:`) is a plan blocker (exit 3) naming it; a file where only some keys'
  directory must go is a plan warning naming how many and one of them (those keys fail
  alone, exit 4, as the move has always done);
- a directory the login cannot write (the nearest existing one on the way to a
  destination) is a plan blocker naming it and its owner;
- met by a move anyway (made after the plan): an item that can never be written fails
  that step alone: named in `failed`, the other steps still run, one JSON document,
  exit 4, a snapshot; Permission denied is such an item, never retried as transient, and
  leaves no staging or receipts behind;
- the probe takes any number of destinations of any length (they travel on stdin, not
  on the remote command line), still in one remote command.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from helpers import aws_client, cli, make_config
from test_hostile_target import _mkdirs, _owned, _root

SECRET = "s3cr3t-value-Kq42"


def _file(root: Path, rel: str, body: bytes = b"a plain file in the way\n") -> Path:
    if "/" in rel:
        _mkdirs(root, rel.rsplit("/", 1)[0])
    f = root / rel
    f.write_bytes(body)
    _owned(f, root)
    return f


def _seed(moto: str, bucket: str = "media", keys: tuple[str, ...] = ("a.txt", "sub/b.txt", "sub/deeper/c.txt")) -> None:
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket=bucket)
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    aws_client("ssm", moto).put_parameter(Name="/townsquare/prod/api_key", Value=SECRET, Type="SecureString",
                                         Overwrite=True)


def _config(tmp_path: Path, moto: str, sshd: Any, root: Path, bucket: str = "media") -> Path:
    return make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                       buckets=[{"bucket": bucket, "to": "data/media"}],
                       parameters=[{"path": "/townsquare/prod/", "to": "shared/app.env"}])


def _after_the_plan(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Run `change` once the move's plan is built and approved, right before its first
    step: what a neighbour does on the target between the plan and the write."""
    from relocate.execute import gate

    require = gate.require

    def late(*args: Any, **kw: Any) -> Any:
        change()
        return require(*args, **kw)

    monkeypatch.setattr(gate, "require", late)


def _leftovers(root: Path) -> list[str]:
    """Staging, receipts and temporaries a move must not leave behind."""
    state = root / ".relocate"
    left = [p for p in (state / "staging").rglob("*")] if (state / "staging").exists() else []
    left += [p for p in (state / "receipts").rglob("*")] if (state / "receipts").exists() else []
    left += list(root.rglob("*relocate-tmp*"))
    return sorted(str(p.relative_to(root)) for p in left)


# --- 1. an env file's directory is a plain file --------------------------------------------

def test_an_env_files_directory_that_is_a_file_blocks_the_plan(tmp_path: Path, moto: str, sshd: Any) -> None:
    _seed(moto)
    root = _root(sshd)
    blocker = _file(root, "shared")
    cfg = _config(tmp_path, moto, sshd, root)
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 3, (run.exit_code, run.stdout, run.stderr)
    found = [b for b in run.json()["blockers"] if b["code"] == "in-the-way"]
    assert len(found) == 1 and f"{root}/shared" in found[0]["message"] and "file" in found[0]["message"], found
    text = cli("plan", "-f", str(cfg))
    assert text.exit_code == 3 and f"{root}/shared" in text.stdout
    move = cli("move", "-f", str(cfg), "--yes")
    assert move.exit_code == 3, (move.exit_code, move.stdout, move.stderr)
    assert not (root / "data").exists() and blocker.read_bytes().startswith(b"a plain file")
    # under --json the refusal is still one document on stdout: the plan, its blockers, no result
    saved = tmp_path / "plan-before.json"
    blocker.unlink()
    assert cli("plan", "-f", str(cfg), "-o", str(saved)).exit_code == 0
    blocker = _file(root, "shared")  # appeared after the plan was saved
    move = cli("move", str(saved), "--yes", "--json")
    assert move.exit_code == 3, (move.exit_code, move.stdout, move.stderr)
    doc = move.json()
    assert doc["result"] is None and [b["code"] for b in doc["plan"]["blockers"]] == ["in-the-way"], doc["plan"]["blockers"]
    assert not (root / "data").exists()


def test_an_item_error_in_one_step_fails_that_step_alone(tmp_path: Path, moto: str, sshd: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The file appears after the plan: the env step fails (named in `failed`), the objects
    still move in the same run, `move --json` prints its one document, exit 4, a snapshot
    is written, and `verify` names the env file as failed."""
    _seed(moto)
    root = _root(sshd)
    cfg = _config(tmp_path, moto, sshd, root)
    _after_the_plan(monkeypatch, lambda: _file(root, "shared"))
    run = cli("move", "-f", str(cfg), "--yes", "--json")
    assert run.exit_code == 4, (run.exit_code, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    result = run.json()["result"]
    assert len(result["failed"]) == 1, result["failed"]
    assert result["failed"][0].startswith("env:shared/app.env: ") and f"{root}/shared" in result["failed"][0]
    assert result["objects_sent"] == 3 and result["snapshot"], result
    for key in ("a.txt", "sub/b.txt", "sub/deeper/c.txt"):
        assert (root / "data" / "media" / key).read_bytes() == key.encode()
    assert result["verify"]["ok"] is False
    assert [f["path"] for f in result["verify"]["failed_items"]] == ["shared/app.env"], result["verify"]
    assert _leftovers(root) == []
    assert SECRET not in run.stdout + run.stderr
    ver = cli("verify", "-f", str(cfg), "--json")
    assert ver.exit_code == 4, (ver.exit_code, ver.stdout, ver.stderr)
    assert [f["path"] for f in ver.json()["failed_items"]] == ["shared/app.env"]
    # the file gone, the next move writes the env file and finds the objects there
    (root / "shared").unlink()
    monkeypatch.undo()
    again = cli("move", "-f", str(cfg), "--yes", "--json")
    assert again.exit_code == 0, (again.exit_code, again.stdout, again.stderr)
    assert again.json()["result"]["env_written"] == ["shared/app.env"] and again.json()["result"]["objects_sent"] == 0
    assert (root / "shared" / "app.env").stat().st_mode & 0o777 == 0o600


def _in_the_way(tmp_path: Path, moto: str, sshd: Any, root: Path) -> list[dict[str, Any]]:
    """A plan of the standard config into `root`: blocked (exit 3); its in-the-way blockers."""
    run = cli("plan", "-f", str(_config(tmp_path, moto, sshd, root)), "--json")
    assert run.exit_code == 3, (run.exit_code, run.stdout, run.stderr)
    return [b for b in run.json()["blockers"] if b["code"] == "in-the-way"]


def test_a_directory_where_an_env_file_must_go_blocks_the_plan(tmp_path: Path, moto: str, sshd: Any) -> None:
    _seed(moto)
    root = _root(sshd)
    _mkdirs(root, "shared/app.env")
    found = _in_the_way(tmp_path, moto, sshd, root)
    assert len(found) == 1 and f"{root}/shared/app.env" in found[0]["message"] and "directory" in found[0]["message"]


# --- 2. a directory the login cannot write -------------------------------------------------

@pytest.mark.parametrize("rel", ["data", "data/media", ".relocate", "shared"])
def test_an_unwritable_directory_on_the_way_blocks_the_plan_naming_its_owner(tmp_path: Path, moto: str, sshd: Any,
                                                                            rel: str) -> None:
    _seed(moto)
    root = _root(sshd)
    locked = _mkdirs(root, rel)
    os.chown(locked, 0, 0)
    os.chmod(locked, 0o755)
    cfg = _config(tmp_path, moto, sshd, root)
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 3, (run.exit_code, run.stdout, run.stderr)
    found = [b for b in run.json()["blockers"] if b["code"] == "writable"]
    assert len(found) == 1, run.json()["blockers"]
    assert f"{locked} (owner root)" in found[0]["message"] and sshd.user in found[0]["message"], found
    move = cli("move", "-f", str(cfg), "--yes")
    assert move.exit_code == 3, (move.exit_code, move.stdout, move.stderr)
    assert not (root / ".relocate" / "staging").exists()


@pytest.mark.parametrize("receiver", ["python", "sh"])
def test_permission_denied_in_the_move_is_a_failed_item_not_a_retry(tmp_path: Path, moto: str, sshd: Any,
                                                                    monkeypatch: pytest.MonkeyPatch, receiver: str) -> None:
    """`data` handed to root after the plan: every object of the bucket fails, named, at
    once (retries would take 1+2+4+8 s with this backoff, and exit 5); the env file is
    written; exit 4; no staging dir, no receipts left."""
    _seed(moto)
    root = _root(sshd)
    data = _mkdirs(root, "data")
    cfg = _config(tmp_path, moto, sshd, root)

    def lock() -> None:
        os.chown(data, 0, 0)
        os.chmod(data, 0o755)

    _after_the_plan(monkeypatch, lock)
    started = time.monotonic()
    run = cli("move", "-f", str(cfg), "--yes", "--json",
              env={"RELOCATE_RECEIVER": receiver, "RELOCATE_RETRY_BACKOFF": "1", "RELOCATE_BATCH_OBJECTS": "2"})
    took = time.monotonic() - started
    assert run.exit_code == 4, (run.exit_code, run.stdout, run.stderr)
    assert "retrying" not in run.stderr and "Traceback" not in run.stderr
    assert took < 12, took
    result = run.json()["result"]
    named = sorted(line.split(": ")[1] for line in result["failed"])
    assert named == ["a.txt", "sub/b.txt", "sub/deeper/c.txt"], result["failed"]
    assert all(line.startswith("s3:media/: ") and "Permission denied" in line for line in result["failed"]), result["failed"]
    assert result["env_written"] == ["shared/app.env"] and result["objects_sent"] == 0
    assert list(data.iterdir()) == []
    assert _leftovers(root) == []


# --- 3. a bucket's `to:`, or a key's directory, is a plain file ----------------------------

def test_a_buckets_to_that_is_a_file_blocks_the_plan(tmp_path: Path, moto: str, sshd: Any) -> None:
    _seed(moto)
    root = _root(sshd)
    _file(root, "data/media")
    found = _in_the_way(tmp_path, moto, sshd, root)
    assert len(found) == 1 and f"{root}/data/media" in found[0]["message"], found


@pytest.mark.parametrize("receiver", ["python", "sh"])
def test_a_to_made_a_file_after_the_plan_fails_that_bucket_alone(tmp_path: Path, moto: str, sshd: Any,
                                                                 monkeypatch: pytest.MonkeyPatch, receiver: str) -> None:
    """What the plan could not see (the file came after it) is still a failed item, exit 4,
    never retried, with the env file written in the same run."""
    _seed(moto)
    root = _root(sshd)
    cfg = _config(tmp_path, moto, sshd, root)
    blocker: list[Path] = []
    _after_the_plan(monkeypatch, lambda: blocker.append(_file(root, "data/media")))
    run = cli("move", "-f", str(cfg), "--yes", "--json", env={"RELOCATE_RECEIVER": receiver, "RELOCATE_RETRY_BACKOFF": "1"})
    assert run.exit_code == 4, (run.exit_code, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and "retrying" not in run.stderr
    result = run.json()["result"]
    assert sorted(line.split(": ")[1] for line in result["failed"]) == ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]
    assert result["env_written"] == ["shared/app.env"] and (root / "shared" / "app.env").exists()
    assert blocker[0].read_bytes().startswith(b"a plain file")
    assert _leftovers(root) == []


def test_keys_whose_directory_is_a_file_are_a_plan_warning(tmp_path: Path, moto: str, sshd: Any) -> None:
    keys = ("a.txt", "uploads/u1.jpg", "uploads/u2.jpg", "uploads/deep/u3.jpg", "uploadsx/ok.txt")
    _seed(moto, "pics", keys)
    root = _root(sshd)
    _file(root, "data/media/uploads")
    cfg = _config(tmp_path, moto, sshd, root, bucket="pics")
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 0, (run.exit_code, run.stdout, run.stderr)
    found = [w for w in run.json()["warnings"] if w["code"] == "in-the-way"]
    assert len(found) == 1, run.json()["warnings"]
    msg = found[0]["message"]
    assert "3 object(s)" in msg and "'uploads/deep/u3.jpg'" in msg and f"{root}/data/media/uploads" in msg, msg
    text = cli("plan", "-f", str(cfg))
    assert "3 object(s)" in text.stdout
    # the move does what the warning said: those three fail alone, the rest lands
    move = cli("move", "-f", str(cfg), "--yes", "--json")
    assert move.exit_code == 4, (move.exit_code, move.stdout, move.stderr)
    assert sorted(line.split(": ")[1] for line in move.json()["result"]["failed"]) == \
        ["uploads/deep/u3.jpg", "uploads/u1.jpg", "uploads/u2.jpg"]
    assert move.json()["result"]["objects_sent"] == 2


# --- 4. any number of destinations, of any length ------------------------------------------

@pytest.mark.parametrize("count, seglen", [(140, 240), (900, 8)])
def test_the_probe_takes_many_and_long_destinations(tmp_path: Path, moto: str, sshd: Any, count: int,
                                                    seglen: int) -> None:
    """130 entries with ~970-byte `to:` paths reset the connection, 900 short ones were
    `Argument list too long`: the paths now travel on the probe's stdin."""
    bucket = f"many-{secrets.token_hex(3)}"
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket=bucket)
    for i in (0, count - 1):
        s3.put_object(Bucket=bucket, Key=f"p{i:04d}/x.txt", Body=b"x")
    root = _root(sshd)
    entries = []
    for i in range(count):
        segs = [f"{i:04d}" + "d" * (seglen - 4) for _ in range(4)]
        entries.append({"bucket": bucket, "prefix": f"p{i:04d}/", "to": "/".join(["data", *segs])})
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root), buckets=entries)
    blocker = _file(root, "data/" + entries[-1]["to"].split("/")[1])  # a file in the way of the last one
    doc = yaml.safe_load(cfg.read_text())
    assert len(doc["source"]["s3"]) == count
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 3, (run.exit_code, run.stdout[-2000:], run.stderr)
    found = [b for b in run.json()["blockers"] if b["code"] == "in-the-way"]
    assert len(found) == 1 and entries[-1]["to"].split("/")[1] in found[0]["message"], run.json()["blockers"]
    if count > 200:
        return  # the move itself: once, with the long paths (its lock's audit line names every step)
    blocker.unlink()
    move = cli("move", "-f", str(cfg), "--yes", "--json")
    assert move.exit_code == 0, (move.exit_code, move.stdout[-2000:], move.stderr)
    assert move.json()["result"]["objects_sent"] == 2
    audit = (root / ".relocate" / "audit.log").read_text().splitlines()
    assert len(json.loads(audit[0])["steps"]) == count + 1  # every bucket step and verify: on stdin, whole


def test_a_long_to_gets_a_sidecar_name_the_file_system_takes() -> None:
    """A `to:` of ~1,000 bytes is one sidecar, receipts and shard directory name of at
    most NAME_MAX bytes: the same every run, different for another `to:` (the move above
    wrote its sidecar under it: ENAMETOOLONG was "Bad message", exit 5)."""
    from relocate.targets.layout import NAME_MAX, flat_name

    long_a = "/".join(["data", *["é" * 120] * 4])
    long_b = long_a[:-1] + "x"
    assert flat_name("data/media") == "data__media"
    for name in (flat_name(long_a), flat_name(long_b)):
        assert len(name.encode()) <= NAME_MAX and "/" not in name
    assert flat_name(long_a) == flat_name(long_a) != flat_name(long_b)
