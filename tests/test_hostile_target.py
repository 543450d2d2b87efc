"""The target is hostile ground (issue 13), on the real sshd whose login is an ordinary
user: pre-existing symlinks at every level relocate writes to are refused (exit 6,
naming the link) and nothing lands outside target.root; a link the user allows is
written through; a symlink to a single file is replaced; an item that can never be
written fails as exit 4 (not 5, not after retries); the staging dir goes away."""

from __future__ import annotations

import io
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from helpers import aws_client, cli, make_config, stop_app
from relocate.cli import render
from relocate.execute.verify import VerifyReport

SECRET = "s3cr3t-value-Zq81"


def _owned(path: Path, like: Path) -> None:
    """Files the test (root) makes inside the target belong to the login user, as if it had made them."""
    st = like.stat()
    os.lchown(path, st.st_uid, st.st_gid)


def _root(sshd: Any) -> Path:
    root = sshd.root / f"h-{secrets.token_hex(4)}"
    root.mkdir()
    _owned(root, sshd.root)
    return root


def _outside(sshd: Any) -> Path:
    """A directory the login user could write to, outside the root: where a followed link leads."""
    out = sshd.root.parent / f"outside-{secrets.token_hex(4)}"
    out.mkdir()
    _owned(out, sshd.root)
    return out


def _mkdirs(root: Path, rel: str) -> Path:
    p = root
    for seg in rel.split("/"):
        p = p / seg
        if not p.exists():
            p.mkdir()
            _owned(p, root)
    return p


def _link(root: Path, rel: str, to: Path) -> Path:
    link = root / rel
    _mkdirs(root, rel.rsplit("/", 1)[0]) if "/" in rel else None
    link.symlink_to(to)
    _owned(link, root)
    return link


def _seed(moto: str) -> None:
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="media")
    for key, body in {"a.txt": b"a", "sub/b.txt": b"b", "sub/deeper/c.txt": b"c"}.items():
        s3.put_object(Bucket="media", Key=key, Body=body)
    aws_client("ssm", moto).put_parameter(Name="/townsquare/prod/api_key", Value=SECRET, Type="SecureString")


def _config(tmp_path: Path, moto: str, sshd: Any, root: Path, **extra: Any) -> Path:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "media", "to": "data/media"}],
                      parameters=[{"path": "/townsquare/prod/", "to": "shared/app.env"}])
    if extra:
        doc = yaml.safe_load(cfg.read_text())
        doc["target"].update(extra)
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


def _refused(run: Any, link: Path, where: Path) -> None:
    assert run.exit_code == 6, (run.exit_code, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("relocate")]
    assert len(lines) == 1 and lines[0].startswith("relocate: error: "), run.stderr
    assert f"symlink {link} -> {where}" in lines[0], lines[0]


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.mark.parametrize("level, receiver", [
    ("data", "python"),
    ("data/media", "python"),
    ("data/media/sub", "python"),
    ("data/media/sub/deeper", "python"),
    ("data/media", "sh"),
    ("data/media/sub", "sh"),
    ("shared", "python"),
    (".relocate", "python"),
    (".relocate/buckets", "python"),
    (".relocate/receipts", "python"),
    (".relocate/receipts/data__media", "python"),
])
def test_a_symlinked_directory_at_any_level_is_refused(tmp_path: Path, moto: str, sshd: Any, level: str,
                                                     receiver: str) -> None:
    _seed(moto)
    root, outside = _root(sshd), _outside(sshd)
    if level.startswith("data/media/"):
        _mkdirs(root, level.rsplit("/", 1)[0])
    link = _link(root, level, outside)
    cfg = _config(tmp_path, moto, sshd, root)
    run = cli("move", "-f", str(cfg), "--yes", env={"RELOCATE_RECEIVER": receiver, "RELOCATE_RETRY_BACKOFF": "0.01"})
    _refused(run, link, outside)
    assert _files(outside) == [], "something was written through the link"
    assert SECRET not in run.stdout + run.stderr


def test_an_allowed_link_is_written_through(tmp_path: Path, moto: str, sshd: Any) -> None:
    _seed(moto)
    root, outside = _root(sshd), _outside(sshd)
    _link(root, "data/media", outside)
    cfg = _config(tmp_path, moto, sshd, root, allow_symlinks=["data/media"])
    run = cli("move", "-f", str(cfg), "--yes")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert (outside / "sub" / "deeper" / "c.txt").read_bytes() == b"c"
    assert (root / "data" / "media").is_symlink()
    assert cli("verify", "-f", str(cfg)).exit_code == 0
    # ... and only that link: the same tree one level down is still refused
    sub_out = _outside(sshd)
    (outside / "sub" / "deeper" / "c.txt").unlink()
    (outside / "sub" / "deeper").rmdir()
    _link(root, "data/media/sub/deeper", sub_out)
    run = cli("move", "-f", str(cfg), "--yes", "--checksum")
    _refused(run, root / "data/media/sub/deeper", sub_out)
    assert _files(sub_out) == []


def test_a_symlink_to_a_file_is_replaced_not_followed(tmp_path: Path, moto: str, sshd: Any) -> None:
    _seed(moto)
    root, outside = _root(sshd), _outside(sshd)
    victim = outside / "victim.txt"
    victim.write_bytes(b"untouched\n")
    _owned(victim, root)
    _link(root, "shared/app.env", victim)
    _link(root, "data/media/a.txt", victim)
    run = cli("move", "-f", str(cfg := _config(tmp_path, moto, sshd, root)), "--yes")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert victim.read_bytes() == b"untouched\n"
    env = root / "shared" / "app.env"
    assert not env.is_symlink() and (env.stat().st_mode & 0o777) == 0o600 and SECRET in env.read_text()
    assert not (root / "data/media/a.txt").is_symlink() and (root / "data/media/a.txt").read_bytes() == b"a"
    # the env file's directory is private, and the staging dir is gone (docs/transfer.md)
    assert (root / "shared").stat().st_mode & 0o777 == 0o700
    assert not (root / ".relocate" / "staging").exists()
    assert cli("verify", "-f", str(cfg)).exit_code == 0


def test_env_dir_mode_is_the_users_choice(tmp_path: Path, moto: str, sshd: Any) -> None:
    _seed(moto)
    root = _root(sshd)
    run = cli("move", "-f", str(_config(tmp_path, moto, sshd, root, env_dir_mode="0750")), "--yes")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert (root / "shared").stat().st_mode & 0o777 == 0o750
    assert (root / "shared" / "app.env").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("receiver", ["python", "sh"])
def test_a_file_where_the_buckets_directory_must_go_blocks_the_plan(tmp_path: Path, moto: str, sshd: Any, receiver: str) -> None:
    """The plan sees it (a plain file at the bucket's `to:`): exit 3 before anything is
    written, never retries. The same file appearing after the plan is a failed item of the
    move instead (tests/test_target_conflicts.py)."""
    _seed(moto)
    root = _root(sshd)
    blocker = _mkdirs(root, "data") / "media"
    blocker.write_bytes(b"a file where the bucket's directory must go\n")
    _owned(blocker, root)
    cfg = _config(tmp_path, moto, sshd, root)
    run = cli("move", "-f", str(cfg), "--yes", env={"RELOCATE_RECEIVER": receiver, "RELOCATE_RETRY_BACKOFF": "1"})
    assert run.exit_code == 3, (run.exit_code, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and "retrying the batch" not in run.stderr
    assert "data/media" in run.stdout + run.stderr
    assert not (root / "shared" / "app.env").exists()  # a blocked plan writes nothing
    assert blocker.read_bytes().startswith(b"a file")


def _journalled(tmp_path: Path, bucket: str) -> set[str]:
    """The keys the local journal records as moved (snapshot.dir/journal.sqlite)."""
    import sqlite3

    db = sqlite3.connect(tmp_path / "snapshots" / "journal.sqlite")
    try:
        return {k for (k,) in db.execute("SELECT key FROM objects WHERE bucket = ?", (bucket,))}
    finally:
        db.close()


@pytest.mark.parametrize("receiver", ["python", "sh"])
def test_keys_under_a_file_in_the_way_fail_alone_and_the_rest_moves_in_one_run(tmp_path: Path, moto: str, sshd: Any,
                                                                             receiver: str) -> None:
    """A plain file at <root>/data/all/legal where the directory of some keys must go: in
    ONE move, in batches of 2 over 2 lanes, every other object lands (content checked) and
    is journalled, each legal/ key is named in `failed` (exit 4); the final check and
    `verify` say which were never written (exit 4), not OK; once the file is gone, the
    next move sends exactly those."""
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="acc-media")
    keys = ([f"a/{i}.txt" for i in range(2)] + ["docs/x.txt", "index.html"]  # sort before legal/
            + [f"legal/{i:02d}.pdf" for i in range(40)] + ["legal/sub/deep.pdf", "legal/sub/z.pdf", "legal/zz.txt"]
            + ["media/late.bin", "z.txt"])  # and after
    bodies = {k: f"{k}:{secrets.token_hex(8)}\n".encode() for k in keys}
    for key, body in bodies.items():
        s3.put_object(Bucket="acc-media", Key=key, Body=body)
    legal = {k for k in keys if k.startswith("legal/")}
    assert len(keys) == 49 and len(legal) == 43
    root = _root(sshd)
    blocker = _mkdirs(root, "data/all") / "legal"
    blocker.write_bytes(b"a file where the legal/ keys' directory must go\n")
    _owned(blocker, root)
    cfg = make_config(tmp_path / "k5.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "acc-media", "to": "data/all"}])
    env = {"RELOCATE_RECEIVER": receiver, "RELOCATE_BATCH_OBJECTS": "2", "RELOCATE_RETRY_BACKOFF": "1"}

    run = cli("move", "-f", str(cfg), "--yes", "--json", "--lanes", "2", env=env)
    assert run.exit_code == 4, (run.exit_code, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and "retrying" not in run.stderr  # never retried as transient
    result = run.json()["result"]
    assert result["objects_sent"] == len(keys) - len(legal)
    # each refused key named once, on a line of its own, with why; nothing else failed
    named = {line.split(": ")[1] for line in result["failed"]}
    assert named == legal and len(result["failed"]) == len(legal), result["failed"]
    # why: the python3 receiver names the file in the way; the tar path names the directory
    # its mkdir could not make, and why ("File exists" for legal/x, "Not a directory" for legal/sub/x)
    why = (f": cannot write {root}/data/all/legal: Not a directory" if receiver == "python"
           else ": the target cannot store an object: cannot create the directory ./legal: a file is in the way (")
    assert all(line.startswith("s3:acc-media/: legal/") and why in line for line in result["failed"]), result["failed"]
    base = root / "data" / "all"
    for key in set(keys) - legal:
        assert (base / key).read_bytes() == bodies[key], key
    assert blocker.read_bytes().startswith(b"a file")
    assert _journalled(tmp_path, "acc-media") == set(keys) - legal
    assert not [p for p in (root / ".relocate").rglob("*") if p.is_file() and "staging" in p.parts]
    assert not list(root.rglob("*relocate-tmp*"))
    # the move's own final check counts them: never an OK while they are not there
    check = result["verify"]
    want = {f"data/all/{k}" for k in legal}
    assert check["ok"] is False and check["failed"] == len(legal) and check["matched"] == len(keys) - len(legal)
    assert {f["path"] for f in check["failed_items"]} == want

    ver = cli("verify", "-f", str(cfg), "--json")
    assert ver.exit_code == 4, (ver.exit_code, ver.stdout, ver.stderr)
    doc = ver.json()
    assert doc["ok"] is False and doc["failed"] == len(legal) and doc["matched"] == len(keys) - len(legal)
    assert {f["path"] for f in doc["failed_items"]} == want and all(f["error"] for f in doc["failed_items"])
    text = cli("verify", "-f", str(cfg))
    assert text.exit_code == 4 and "  failed    data/all/legal/00.pdf: " in text.stdout and "OK" not in text.stdout

    blocker.unlink()
    again = cli("move", "-f", str(cfg), "--yes", "--json", "--lanes", "2", env=env)
    assert again.exit_code == 0, (again.exit_code, again.stdout, again.stderr)
    result = again.json()["result"]
    assert result["failed"] == [] and result["objects_sent"] == len(legal) and result["objects_skipped"] == len(keys) - len(legal)
    for key in keys:
        assert (base / key).read_bytes() == bodies[key], key
    assert _journalled(tmp_path, "acc-media") == set(keys)
    ver = cli("verify", "-f", str(cfg), "--json")
    assert ver.exit_code == 0 and ver.json()["matched"] == len(keys) and ver.json()["failed"] == 0


@pytest.mark.parametrize("to, why", [
    (".relocate", "state directory"),
    (".relocate/buckets", "state directory"),
    ("shared/app.env", "overlaps"),
    ("shared", "overlaps"),
    ("data/m\0x", "U+0000"),
    ("data/" + "n" * 300, "255"),
])
def test_to_values_that_can_never_work_are_exit_2_at_load(tmp_path: Path, moto: str, sshd: Any, to: str, why: str) -> None:
    root = _root(sshd)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "media", "to": to}],
                      parameters=[{"path": "/townsquare/prod/", "to": "shared/app.env"}])
    run = cli("plan", "-f", str(cfg))
    assert run.exit_code == 2, (run.exit_code, run.stderr)
    assert why in run.stderr and "source.s3[0].to" in run.stderr and "Traceback" not in run.stderr
    assert not (root / ".relocate").exists()


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example", "exa\u202emple.com", "soft\u00adhyphen.example"])
def test_malformed_host_names_are_exit_2_naming_the_field(tmp_path: Path, moto: str, sshd: Any, host: str) -> None:
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(sshd.root / "never"))
    doc = yaml.safe_load(cfg.read_text())
    doc["target"]["ssh"]["host"] = host
    cfg.write_text(yaml.safe_dump(doc, allow_unicode=True))
    run = cli("plan", "-f", str(cfg))
    assert run.exit_code == 2, (run.exit_code, run.stderr)
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("relocate")]
    assert len(lines) == 1 and "target.ssh.host" in lines[0] and "Traceback" not in run.stderr


def test_verify_prints_long_paths_whole() -> None:
    path = "data/media/" + "/".join(f"segment-{i:02d}-of-a-very-long-key" for i in range(12)) + "/file.txt"
    out = io.StringIO()
    why = "cannot write /srv/x/data/media/segment-00-of-a-very-long-key: Not a directory"
    render.verify(Console(file=out, width=60, highlight=False),
                  VerifyReport(matched=1, missing=[path], differing=[path], failed=[{"path": path, "error": why}]))
    lines = out.getvalue().splitlines()
    assert f"  missing   {path}" in lines and f"  differing {path}" in lines and f"  failed    {path}: {why}" in lines
    assert "1 never written" in lines[0] and lines[-1] == "Differences found."


def test_move_names_a_failed_key_as_it_is() -> None:
    """A `failed` line names an object's key: printed whole, never read as markup."""
    from relocate.execute.runner import MoveReport

    line = "s3:media/: legal/[draft] " + "x" * 80 + ".pdf: cannot write /srv/x/data/media/legal: Not a directory"
    out = io.StringIO()
    render.move(Console(file=out, width=60, highlight=False), MoveReport(objects_sent=1, failed=[line]))
    assert f"failed: {line}" in out.getvalue().splitlines()


def _deploy_config(tmp_path: Path, moto: str, sshd: Any, root: Path, port: int) -> Path:
    from test_deploy import APP, _release

    cfg = _config(tmp_path, moto, sshd, root)
    doc = yaml.safe_load(cfg.read_text())
    doc["deploy"] = {"runtime": "command", "release": "./build1", "command": f"exec python3 app.py {port}",
                     "health": {"url": f"http://127.0.0.1:{port}/healthz", "timeout_s": 8}}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    _release(tmp_path, "build1", APP.format(version="v1"))
    return cfg


def test_a_symlinked_releases_dir_is_refused(tmp_path: Path, moto: str, sshd: Any) -> None:
    import servers

    _seed(moto)
    root, outside = _root(sshd), _outside(sshd)
    link = _link(root, "releases", outside)
    cfg = _deploy_config(tmp_path, moto, sshd, root, servers.free_port())
    try:
        _refused(cli("move", "-f", str(cfg), "--yes"), link, outside)
        assert _files(outside) == []
    finally:
        stop_app(root)


def test_current_pointing_outside_is_replaced_never_written_through(tmp_path: Path, moto: str, sshd: Any) -> None:
    import servers

    _seed(moto)
    root, outside = _root(sshd), _outside(sshd)
    _link(root, "current", outside)
    cfg = _deploy_config(tmp_path, moto, sshd, root, servers.free_port())
    try:
        run = cli("move", "-f", str(cfg), "--yes", "--json")
        assert run.exit_code == 0, run.stdout + run.stderr
        release = run.json()["result"]["release"]
        assert os.readlink(root / "current") == f"releases/{release}"
        assert not (root / "releases" / release).is_symlink()
        assert _files(outside) == []
    finally:
        stop_app(root)


@pytest.mark.parametrize("level", ["data", "data/host", ".relocate/staging"])
def test_host_files_never_land_through_a_symlink(tmp_path: Path, moto: str, sshd: Any, sshd2: Any, level: str) -> None:
    from test_hostfiles import _seed_source, _ssh

    src = _seed_source(sshd2.root / f"hf-{secrets.token_hex(4)}", sshd2.root)
    root, outside = _root(sshd), _outside(sshd)
    link = _link(root, level, outside)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["hosts"] = [{"ssh": _ssh(sshd2), "paths": [str(src)], "to": "data/host"}]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    _refused(cli("move", "-f", str(cfg), "--yes"), link, outside)
    assert _files(outside) == []


def test_parameters_into_the_state_dir_are_exit_2(tmp_path: Path, moto: str, sshd: Any) -> None:
    root = _root(sshd)
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      parameters=[{"path": "/townsquare/prod/", "to": ".relocate/buckets"}])
    run = cli("plan", "-f", str(cfg))
    assert run.exit_code == 2 and "source.parameters[0].to" in run.stderr and "state directory" in run.stderr, run.stderr


def test_runner_side_secrets_are_0600_from_creation_whatever_the_umask(tmp_path: Path) -> None:
    from relocate.snapshot import crypto

    old = os.umask(0)
    try:
        identity = crypto.load_identity(tmp_path / "keys" / "age.key", create=True)
        crypto.write_private(tmp_path / "secrets.age", crypto.encrypt(b'{"a": "b"}', identity))
    finally:
        os.umask(old)
    assert (tmp_path / "keys" / "age.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "secrets.age").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):  # never through an existing file or link
        crypto.write_private(tmp_path / "secrets.age", b"x")


# ----------------------------------------------------------------- the writers' own checks
# The CLI cases above are refused as soon as the plan probes the target (a "symlink"
# blocker: `plan` exit 3, `move` exit 6). A link made after that probe meets the check each
# writer makes itself, right before it writes: shown here by calling the writers directly.

def _conn(sshd: Any) -> Any:
    from relocate.ssh.via import SshSpec
    from relocate.ssh.connection import Connection

    return Connection(SshSpec(host=sshd.host, port=sshd.port, user=sshd.user, identity_file=str(sshd.identity_file),
                              host_key=sshd.host_key_fingerprint))


@pytest.mark.parametrize("receiver, big", [("python", False), ("sh", False), ("sh", True)])
@pytest.mark.parametrize("level", ["data", "data/sub", ".relocate"])
def test_the_receivers_refuse_a_link_themselves(sshd: Any, monkeypatch: pytest.MonkeyPatch, receiver: str, big: bool,
                                                level: str) -> None:
    from relocate.errors import SafetyError
    from relocate.execute.objects import BucketPusher
    from relocate.settings import Transfer
    from relocate.sources.inventory import ObjectInfo
    from test_receiver import _MemReader

    root, outside = _root(sshd), _outside(sshd)
    if level == "data/sub":
        _mkdirs(root, "data")
    link = _link(root, level, outside)
    bodies = {"sub/x.bin": os.urandom(9 * 1024 * 1024 if big else 1000)}
    objs = [ObjectInfo(k, len(v), "", 1_600_000_000) for k, v in bodies.items()]
    with _conn(sshd) as conn:
        pusher = BucketPusher(_MemReader(bodies), conn, bucket="mem", root=str(root), dest="data",
                              paths={k: k for k in bodies}, staging=str(root / ".relocate" / "staging" / "b"),
                              opts=Transfer(transfers=2, lanes=1, engine="paramiko", receiver=receiver, backoff_s=0.01))
        with pytest.raises(SafetyError) as err:
            pusher.run(objs, lambda done: None)
    assert f"symlink {link} -> {outside}" in err.value.message
    assert _files(outside) == []


def test_sftp_lock_and_audit_writers_refuse_a_link_themselves(sshd: Any) -> None:
    from relocate.errors import SafetyError
    from relocate.execute.lock import TargetLock, audit
    from relocate.targets import files, layout

    root, outside = _root(sshd), _outside(sshd)
    _link(root, "shared", outside)
    _link(root, ".relocate", outside)
    with _conn(sshd) as conn:
        for write in (lambda: files.write_file_atomic(conn, str(root / "shared" / "app.env"), b"K='v'\n", root=str(root)),
                      lambda: files.private_dir(conn, str(root), str(root / "shared"), 0o700),
                      lambda: files.write_file_atomic(conn, layout.sidecar_path(str(root), "data/media"), b"{}", root=str(root)),
                      lambda: TargetLock(conn, str(root)).__enter__(),
                      lambda: audit(conn, str(root), "move-start")):
            with pytest.raises(SafetyError) as err:
                write()
            assert "symlink" in err.value.message and str(outside) in err.value.message
    assert _files(outside) == []


def test_deploy_writers_refuse_a_link_themselves(sshd: Any, tmp_path: Path) -> None:
    from relocate.kinds import deploy
    from relocate.errors import SafetyError
    from relocate.targets import releases

    root, outside = _root(sshd), _outside(sshd)
    build = tmp_path / "build"
    build.mkdir()
    (build / "app.py").write_text("print('hi')\n")
    with _conn(sshd) as conn:
        _link(root, "releases", outside)
        with pytest.raises(SafetyError) as err:
            deploy.upload(conn, str(root), "20210110T000000Z-abc", build)
        assert f"{root}/releases -> {outside}" in err.value.message
        (root / "releases").unlink()
        _mkdirs(root, "releases")
        _link(root, "releases/20210110T000000Z-abc", outside)  # what `current` would point at
        with pytest.raises(SafetyError):
            releases.switch(conn, str(root), "20210110T000000Z-abc")
    assert _files(outside) == [] and not (root / "current").exists()


def test_plan_lists_a_symlinked_destination_as_a_blocker(tmp_path: Path, moto: str, sshd: Any) -> None:
    _seed(moto)
    root, outside = _root(sshd), _outside(sshd)
    _link(root, "data/media", outside)
    run = cli("plan", "-f", str(_config(tmp_path, moto, sshd, root)), "--json")
    assert run.exit_code == 3, run.stdout + run.stderr
    blockers = run.json()["blockers"]
    assert any(b["code"] == "symlink" and f"{root}/data/media -> {outside}" in b["message"] for b in blockers), blockers


def test_a_name_too_long_is_a_failed_item_not_transient(tmp_path: Path) -> None:
    """ENAMETOOLONG at the receiver (a key path the file system cannot hold): that file is
    answered as refused (" x why") and the session goes on with the next one; the sender
    reads it as a failed item, never a difference to retry."""
    import hashlib

    from relocate.execute.wire import AgentWire
    from relocate.ssh.connection import Result
    from test_receiver import _record, _run_agent

    long = b"d/" + b"n" * 300
    proc, stage, final = _run_agent(tmp_path, b"RLC1" + _record(long, b"data") + _record(b"d/ok", b"fine") + b"E")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0].startswith(f"0 {hashlib.sha256(b'data').hexdigest()} x cannot write ") and \
        lines[0].endswith("n" * 300 + ": File name too long"), lines
    assert lines[1:] == [f"1 {hashlib.sha256(b'fine').hexdigest()}", "end"]
    assert (final / "d" / "ok").read_bytes() == b"fine" and [p.name for p in (final / "d").iterdir()] == ["ok"]
    assert not stage.exists()
    answer = AgentWire().answer(Result(0, proc.stdout, b""), [long.decode(), "d/ok"])
    assert list(answer.failed) == [long.decode()] and "File name too long" in answer.failed[long.decode()]


def test_an_unwritable_staging_dir_ends_the_receivers_session_as_an_item(tmp_path: Path) -> None:
    """The same errors outside one file's own path (here the staging dir, under a file) are
    the session's: exit 4 from the receiver, read by the sender as ItemError (exit 4),
    never retried as transient."""
    from relocate.errors import ItemError
    from relocate.execute.wire import receiver_error
    from test_receiver import _record, _run_agent

    (tmp_path / "stage").write_bytes(b"a file where the staging dir must go\n")
    proc, _, final = _run_agent(tmp_path, b"RLC1" + _record(b"d/x", b"data") + b"E")
    assert proc.returncode == 4 and b"Not a directory" in proc.stderr, proc.stderr
    assert not final.exists()
    err = receiver_error(proc.returncode, proc.stderr, "")
    assert isinstance(err, ItemError) and err.exit_code == 4 and str(tmp_path / "stage") in err.message


@pytest.mark.parametrize("link", ["shared/log", "shared/run", "shared/log/townsquare.log"])
def test_the_command_runtime_never_writes_its_log_or_pid_through_a_link(sshd: Any, link: str) -> None:
    """The spawn script appends the app's log and writes its pid file with the shell's own
    redirections, which follow links: it checks them itself right before, as every writer does
    (`plan` lists such a link as a blocker too, but the target may change after the plan).
    A link listed in target.allow_symlinks is written through."""
    from relocate.errors import SafetyError
    from relocate.ssh.connection import Connection
    from relocate.ssh.via import SshSpec
    from relocate.targets.runtimes import DeploySettings, runtime_for

    root, outside = _root(sshd), _outside(sshd)
    _mkdirs(root, "current")
    if link.endswith(".log"):
        _mkdirs(root, "shared/log")
        victim = outside / "victim"
        victim.write_text("keep\n")
        _owned(victim, root)
        _link(root, link, victim)
    else:
        _link(root, link, outside)
    spec = SshSpec(host=sshd.host, port=sshd.port, user=sshd.user, identity_file=str(sshd.identity_file),
                   host_key=sshd.host_key_fingerprint)
    settings = DeploySettings(runtime="command", root=str(root), service="townsquare", command="exec sleep 30",
                              log_file="shared/log/townsquare.log")
    try:
        with Connection(spec) as conn:
            with pytest.raises(SafetyError, match="refusing to write through the symlink"):
                runtime_for(settings).start(conn, "r1")
            assert [p.name for p in outside.iterdir()] == (["victim"] if link.endswith(".log") else [])
            if link.endswith(".log"):
                assert (outside / "victim").read_text() == "keep\n"
                return
            allowed = DeploySettings(**{**settings.__dict__, "allow": (str(root / link),)})
            runtime_for(allowed).start(conn, "r1")  # listed: written through
            assert _files(outside), "the allowed link was not written through"
    finally:
        stop_app(root)
