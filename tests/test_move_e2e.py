"""plan / move / verify end to end, against real servers: S3 from moto AND SeaweedFS,
SSM parameters and Secrets Manager from moto, the target a real OpenSSH sshd.

Assertions are on what the target ends up holding (read straight from sshd's
file system), not on what relocate says it did.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from helpers import aws_client, cli, make_config, subprocess_cli, s3_endpoint
from relocate.snapshot import store
from relocate.snapshot.keymap import map_keys

MIB = 1024 * 1024

HOSTILE = {
    "../../etc/relocate-escape": b"escape attempt",
    "/abs": b"absolute",
    "a//b": b"double slash",
    ".": b"dot",
    "..": b"dotdot",
    "n" * 300: b"long name",
    "long/" + "m" * 240 + ".bin": b"long segment",
    "new\nline": b"newline key",
    "tab\tkey": b"tab key",
    "a": b"a file beside a dir",
    "a/b": b"inside a",
    "$(touch /tmp/relocate-pwned)": b"shell",
}


@dataclass
class Source:
    """The seeded source: where it is, and what relocate should find there."""

    name: str  # moto | seaweedfs
    endpoint: str | None  # what relocate.yaml says (None: from AWS_ENDPOINT_URL_* env)
    s3: Any
    ssm: Any
    sm: Any

    def bucket(self, server: Any, prefix: str = "b") -> str:
        return server.new_bucket(prefix)


@pytest.fixture
def source(s3_server, moto: str, monkeypatch: pytest.MonkeyPatch) -> Source:
    """S3 from the parametrized server; SSM and Secrets Manager always from moto.

    With SeaweedFS, relocate.yaml has no endpoint_url and boto3's per-service
    endpoint variables route S3 to SeaweedFS and the rest to moto (moto accepts
    any credentials, so SeaweedFS's serve both)."""
    endpoint = s3_endpoint(s3_server, moto, monkeypatch)
    return Source(s3_server.name, endpoint, s3_server.client(), aws_client("ssm", moto), aws_client("secretsmanager", moto))


def _seed_env(src: Source, tag: str) -> dict[str, str]:
    """Parameters and a JSON secret; returns the expected env file variables."""
    src.ssm.put_parameter(Name=f"/{tag}/prod/db_password", Value="pw-with 'quote' and $dollar", Type="SecureString")
    src.ssm.put_parameter(Name=f"/{tag}/prod/mode", Value="production", Type="String")
    src.ssm.put_parameter(Name=f"/{tag}/prod/nested/api-url", Value="https://x.example/api", Type="String")
    src.sm.create_secret(Name=f"{tag}/prod/api", SecretString=json.dumps({"token": "tok-123", "signing_key": "sk-456"}))
    return {"DB_PASSWORD": "pw-with 'quote' and $dollar", "MODE": "production", "NESTED_API_URL": "https://x.example/api",
            "TOKEN": "tok-123", "SIGNING_KEY": "sk-456"}


def _sq(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _tree(root: Path) -> dict[str, os.stat_result]:
    """Every regular file below root (relative path -> stat), symlinks not followed."""
    out: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = p.lstat()
    return out


def _outside(base: Path, root: Path) -> dict[Path, int | None]:
    """Every path below base but outside root: files with their mtime, dirs as None."""
    found: dict[Path, int | None] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if Path(dirpath) / d != root]
        for name in dirnames:
            found[Path(dirpath) / name] = None
        for name in filenames:
            p = Path(dirpath) / name
            found[p] = p.lstat().st_mtime_ns
    return found


@dataclass
class Setup:
    cfg: Path
    root: Path
    media: str
    other: str
    objects: dict[str, bytes]
    env: dict[str, str]


def _setup(tmp_path: Path, sshd: Any, src: Source, s3_server: Any, *, big: bool = True) -> Setup:
    tag = "app" + secrets.token_hex(3)
    media = src.bucket(s3_server, "media")
    other = src.bucket(s3_server, "other")
    objects: dict[str, bytes] = {}
    for i in range(12):
        key = f"photos/2021/{i:02d}.jpg"
        objects[key] = os.urandom(100 + i * 37)
        src.s3.put_object(Bucket=media, Key=key, Body=objects[key], ContentType="image/jpeg",
                          Metadata={"uploader": f"user{i}", "checksum-note": "x"})
    for key, body in HOSTILE.items():
        # Each server refuses or normalises some of these (moto: a newline; SeaweedFS:
        # `..` segments, 300-char keys, `//`): what it then lists is the truth.
        try:
            src.s3.put_object(Bucket=media, Key=key, Body=body)
        except ClientError:
            pass
    src.s3.put_object(Bucket=media, Key="empty.txt", Body=b"", ContentType="text/plain")
    if big:
        # above the streamed-object threshold (8 MiB)
        src.s3.put_object(Bucket=media, Key="video/big.bin", Body=os.urandom(9 * MIB + 12345), ContentType="video/mp4")
    listed = [o["Key"] for page in src.s3.get_paginator("list_objects_v2").paginate(Bucket=media) for o in page.get("Contents", [])]
    objects = {k: src.s3.get_object(Bucket=media, Key=k)["Body"].read() for k in listed}
    hostile_stored = [k for k in objects if k not in ("empty.txt", "video/big.bin") and not k.startswith("photos/")]
    assert len(hostile_stored) >= 6, hostile_stored  # enough of them got through to matter
    for key in ("keep/1.txt", "keep/sub/2.txt", "skip/3.txt", "keeper.txt"):
        src.s3.put_object(Bucket=other, Key=key, Body=key.encode())
    env = _seed_env(src, tag)
    root = sshd.root / f"t-{secrets.token_hex(4)}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=src.endpoint, sshd=sshd, root=str(root),
                      buckets=[{"bucket": media, "to": "data/media"}, {"bucket": other, "prefix": "keep/", "to": "data/other"}],
                      parameters=[{"path": f"/{tag}/prod/", "to": "shared/app.env"}],
                      secrets=[{"name": f"{tag}/prod/api", "to": "shared/app.env"}])
    return Setup(cfg, root, media, other, objects, env)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_plan_move_verify_repair(tmp_path: Path, sshd, s3_server, source: Source) -> None:
    s = _setup(tmp_path, sshd, source, s3_server)
    outside_before = _outside(sshd.root.parent, s.root)
    mapped = map_keys(list(s.objects))

    # --- plan: read-only, right counts and bytes
    run = cli("plan", "-f", str(s.cfg), "--json")
    assert run.exit_code == 0, run.stderr
    plan = run.json()
    assert plan["format_version"] == 1 and plan["ready"] is True
    steps = {st["id"]: st for st in plan["steps"]}
    media = steps[f"s3:{s.media}/"]
    assert (media["count"], media["bytes"]) == (len(s.objects), sum(map(len, s.objects.values())))
    assert (media["todo_count"], media["todo_bytes"]) == (media["count"], media["bytes"])
    other = steps[f"s3:{s.other}/keep/"]
    assert (other["count"], other["bytes"]) == (2, len(b"keep/1.txt") + len(b"keep/sub/2.txt"))
    assert steps["env:shared/app.env"]["count"] == 4  # 3 parameters + 1 secret
    assert not s.root.exists(), "plan must not write to the target"

    # --- move
    run = cli("move", "-f", str(s.cfg), "--yes")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert f"moved {len(s.objects) + 2} objects" in run.stdout
    assert "OK: the target matches the snapshot." in run.stdout

    # every object byte-equal at its mapped path, and nothing else in the bucket dir
    bucket_dir = s.root / "data" / "media"
    on_disk = _tree(bucket_dir)
    assert set(on_disk) == set(mapped.values())
    for key, body in s.objects.items():
        assert (bucket_dir / mapped[key]).read_bytes() == body, key
    # hostile keys stayed inside the bucket dir; nothing was written outside the root
    assert _outside(sshd.root.parent, s.root) == outside_before, "something was written outside target.root"
    assert not Path("/etc/relocate-escape").exists() and not Path("/tmp/relocate-pwned").exists()
    assert not (s.root / "etc").exists()

    # prefix filter honoured
    assert set(_tree(s.root / "data" / "other")) == {"keep/1.txt", "keep/sub/2.txt"}

    # sidecar: content type and user metadata per object
    sidecar = json.loads((s.root / ".relocate" / "buckets" / "data__media.json").read_text())
    assert sidecar["bucket"] == s.media and sidecar["to"] == "data/media"
    by_key = {o["key"]: o for o in sidecar["objects"]}
    assert set(by_key) == set(s.objects)
    assert by_key["photos/2021/03.jpg"]["content_type"] == "image/jpeg"
    assert by_key["photos/2021/03.jpg"]["metadata"] == {"uploader": "user3", "checksum-note": "x"}
    assert by_key["video/big.bin"]["content_type"] == "video/mp4"
    long_keys = [k for k in s.objects if len(k) > 200]
    assert long_keys, "no key long enough to be cut was stored"
    for k in long_keys:  # cut and tagged names map back through the sidecar
        assert "%%" in mapped[k] and by_key[k]["path"] == "data/media/" + mapped[k]
    assert (s.root / ".relocate" / "buckets" / "data__other.json").exists()

    # env file: 0600, one KEY='value' line per variable
    env_path = s.root / "shared" / "app.env"
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    lines = [ln for ln in env_path.read_text().splitlines() if ln and not ln.startswith("#")]
    assert sorted(lines) == sorted(f"{k}={_sq(v)}" for k, v in s.env.items())

    # local snapshot: manifest with sha256 per object; secrets encrypted at rest
    snap = store.latest(tmp_path / "snapshots")
    assert snap is not None
    manifest = json.loads(snap.manifest_path.read_text())
    objs = {o["key"]: o for b in manifest["buckets"] for o in b["objects"] if b["bucket"] == s.media}
    assert {k: (o["size"], o["sha256"]) for k, o in objs.items()} == {k: (len(v), _sha(v)) for k, v in s.objects.items()}
    assert stat.S_IMODE(snap.secrets_path.stat().st_mode) == 0o600
    sealed = snap.secrets_path.read_bytes()
    assert sealed.startswith(b"age-encryption.org/")
    for value in s.env.values():
        assert value.encode() not in sealed
    assert b"tok-123" not in snap.manifest_path.read_bytes()

    # --- a second move transfers nothing and touches nothing
    # (an append-only audit log of runs, if any, is the one file allowed to grow)
    before = {p: (st.st_ino, st.st_mtime_ns, st.st_size) for p, st in _tree(s.root).items() if "audit" not in p}
    run = cli("move", "-f", str(s.cfg), "--yes")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert f"nothing to do: {len(s.objects) + 2} objects already on the target and verified" in run.stdout
    after = {p: (st.st_ino, st.st_mtime_ns, st.st_size) for p, st in _tree(s.root).items() if "audit" not in p}
    assert after == before
    assert store.latest(tmp_path / "snapshots").id == snap.id  # no new snapshot for an empty move

    # --- verify
    run = cli("verify", "-f", str(s.cfg))
    assert run.exit_code == 0, run.stdout + run.stderr
    assert f"{len(s.objects) + 2} matching, 0 missing, 0 differing" in run.stdout

    # --- damage the target: flip a byte (same size), delete a file
    flipped = bucket_dir / mapped["photos/2021/05.jpg"]
    data = bytearray(flipped.read_bytes())
    data[10] ^= 0xFF
    flipped.write_bytes(bytes(data))
    gone = bucket_dir / mapped["a/b"]
    gone.unlink()
    run = cli("verify", "-f", str(s.cfg), "--json")
    assert run.exit_code == 4, run.stdout + run.stderr
    report = run.json()
    assert report["ok"] is False
    assert report["differing_paths"] == ["data/media/photos/2021/05.jpg"]
    assert report["missing_paths"] == ["data/media/" + mapped["a/b"]]
    run = cli("verify", "-f", str(s.cfg))
    assert run.exit_code == 4
    assert "differing data/media/photos/2021/05.jpg" in run.stdout and "missing" in run.stdout

    # --- the next move re-sends the deleted file (the journal's size check fails).
    # A same-size corruption passes that check; move must then at least not claim
    # success: either it repairs the file (exit 0) or its verification names it (exit 4).
    run = cli("move", "-f", str(s.cfg), "--yes", "--json")
    result = run.json()["result"]
    assert result["objects_sent"] >= 1, result
    assert gone.read_bytes() == s.objects["a/b"]
    if flipped.read_bytes() == s.objects["photos/2021/05.jpg"]:
        assert run.exit_code == 0 and result["verify"]["ok"], result
    else:
        assert run.exit_code == 4, result
        assert result["verify"]["differing_paths"] == ["data/media/photos/2021/05.jpg"]
        assert result["verify"]["missing"] == 0
    # once the bad copy is gone, the next move puts it back and verify passes
    flipped.unlink()
    run = cli("move", "-f", str(s.cfg), "--yes")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert flipped.read_bytes() == s.objects["photos/2021/05.jpg"]
    run = cli("verify", "-f", str(s.cfg))
    assert run.exit_code == 0, run.stdout


def test_saved_plan_and_drift(tmp_path: Path, sshd, s3_server, source: Source) -> None:
    s = _setup(tmp_path, sshd, source, s3_server, big=False)
    plan_file = tmp_path / "plan.json"
    run = cli("plan", "-f", str(s.cfg), "-o", str(plan_file))
    assert run.exit_code == 0, run.stderr
    saved = json.loads(plan_file.read_text())
    assert saved["format_version"] == 1 and saved["fingerprint_digest"]
    run = cli("move", str(plan_file), "--yes")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert (s.root / "data" / "media" / "photos/2021/00.jpg").read_bytes() == s.objects["photos/2021/00.jpg"]

    # a fresh plan, then the source changes: the saved plan is stale
    run = cli("plan", "-f", str(s.cfg), "-o", str(plan_file))
    assert run.exit_code == 0
    source.s3.put_object(Bucket=s.media, Key="photos/2021/00.jpg", Body=b"changed at the source")
    run = cli("move", str(plan_file), "--yes")
    assert run.exit_code == 6, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert f"the source changed since the plan was saved (bucket {s.media}/)" in run.stderr
    assert "--allow-drift" in run.stderr
    assert (s.root / "data" / "media" / "photos/2021/00.jpg").read_bytes() == s.objects["photos/2021/00.jpg"]

    run = cli("move", str(plan_file), "--yes", "--allow-drift")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert (s.root / "data" / "media" / "photos/2021/00.jpg").read_bytes() == b"changed at the source"


def test_move_without_yes_and_without_a_terminal_refuses(tmp_path: Path, sshd, moto: str) -> None:
    s3 = aws_client("s3", moto)
    s3.create_bucket(Bucket="media")
    s3.put_object(Bucket="media", Key="k", Body=b"v")
    root = sshd.root / f"t-{secrets.token_hex(4)}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": "media", "to": "data"}])
    run = subprocess_cli("move", "-f", str(cfg), stdin="", cwd=tmp_path)
    assert run.exit_code == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    err = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("relocate: error: refusing to move without confirmation"), err
    assert "--yes" in err[0]
    assert not (root / "data").exists()

    # the installed entry point, as a real process: plan --json
    run = subprocess_cli("plan", "-f", str(cfg), "--json", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["format_version"] == 1 and doc["steps"][0]["count"] == 1
    run = subprocess_cli("move", "-f", str(cfg), "--json", cwd=tmp_path, env={"RELOCATE_YES": "1"})
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["result"]["objects_sent"] == 1
    assert (root / "data" / "k").read_bytes() == b"v"
    # the NDJSON events on stderr (docs/json.md): each one versioned, each a documented type
    events = [json.loads(ln) for ln in run.stderr.splitlines() if ln.startswith("{")]
    assert {e["event"] for e in events} >= {"phase", "item", "progress"}
    assert all(e["format_version"] == 1 and e["event"] in ("phase", "progress", "item", "warning") for e in events)


def test_prefixes_left_out_nested_entries_and_strip_prefix(tmp_path: Path, sshd, s3_server, source: Source) -> None:
    """Issue 15 items 7, 8, 13: what the listed prefixes leave out is said by plan and
    verify; a bucket-wide entry plus a more specific prefix moves each key once (the
    longest prefix wins); `strip_prefix: true` lands `legal/x` at `<to>/x`."""
    bucket = source.bucket(s3_server, "split")
    objects = {"robots.txt": b"User-agent: *\n", "legacy.txt": b"not under legal/", "uploads/a.jpg": b"a" * 300,
               "uploads/b/c.jpg": b"c" * 70, "legal/terms.pdf": b"%PDF terms", "legal/2021/privacy.pdf": b"%PDF privacy"}
    for key, body in objects.items():
        source.s3.put_object(Bucket=bucket, Key=key, Body=body)
    root = sshd.root / f"t-{secrets.token_hex(4)}"
    # --- split into uploads/ and legal/ only: robots.txt and legacy.txt are left out, and said so
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=source.endpoint, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "prefix": "uploads/", "to": "data/uploads"},
                               {"bucket": bucket, "prefix": "legal/", "to": "data/legal", "strip_prefix": True}])
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    plan = run.json()
    left = [w["message"] for w in plan["warnings"] if w["code"] == "s3-left-out"]
    out_bytes = len(objects["robots.txt"]) + len(objects["legacy.txt"])
    assert len(left) == 1 and f"s3://{bucket}: 2 object(s), {out_bytes} B outside the listed prefixes" in left[0], left
    assert "'robots.txt'" in left[0] and "'legacy.txt'" in left[0]
    assert plan["left_out"] == [{"bucket": bucket, "prefixes": ["uploads/", "legal/"], "count": 2, "bytes": out_bytes,
                                 "examples": ["legacy.txt", "robots.txt"]}]
    text = cli("plan", "-f", str(cfg))
    assert "outside the listed prefixes" in text.stdout and "NOT moved" in text.stdout
    run = cli("move", "-f", str(cfg), "--yes")
    assert run.exit_code == 0, run.stdout + run.stderr
    # strip_prefix: legal/terms.pdf -> data/legal/terms.pdf; the default keeps the key whole
    assert _tree(root / "data" / "legal").keys() == {"terms.pdf", "2021/privacy.pdf"}
    assert (root / "data" / "legal" / "terms.pdf").read_bytes() == objects["legal/terms.pdf"]
    assert _tree(root / "data" / "uploads").keys() == {"uploads/a.jpg", "uploads/b/c.jpg"}
    run = cli("verify", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert [(o["bucket"], o["count"], o["bytes"]) for o in run.json()["left_out"]] == [(bucket, 2, out_bytes)]
    run = cli("verify", "-f", str(cfg))
    assert run.exit_code == 0 and f"not moved: s3://{bucket}: 2 object(s)" in run.stdout, run.stdout

    # --- the starter's way: the bucket whole, and legal/ again with its own priority and `to:`
    root2 = sshd.root / f"t-{secrets.token_hex(4)}"
    cfg2 = make_config(tmp_path / "nested.yaml", endpoint=source.endpoint, sshd=sshd, root=str(root2),
                       buckets=[{"bucket": bucket, "to": "data/all", "priority": "bulk"},
                                {"bucket": bucket, "prefix": "legal/", "to": "data/legal", "priority": "critical"}])
    run = cli("plan", "-f", str(cfg2), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    steps = {s["id"]: s for s in run.json()["steps"]}
    assert steps[f"s3:{bucket}/"]["count"] == 4 and steps[f"s3:{bucket}/legal/"]["count"] == 2
    assert steps[f"s3:{bucket}/legal/"]["priority"] == "critical"
    assert run.json()["left_out"] == [] and not [w for w in run.json()["warnings"] if w["code"] == "s3-left-out"]
    run = cli("move", "-f", str(cfg2), "--yes", "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert run.json()["result"]["objects_sent"] == len(objects)  # each key once
    assert _tree(root2 / "data" / "all").keys() == {"robots.txt", "legacy.txt", "uploads/a.jpg", "uploads/b/c.jpg"}
    assert _tree(root2 / "data" / "legal").keys() == {"legal/terms.pdf", "legal/2021/privacy.pdf"}
    run = cli("move", "-f", str(cfg2), "--yes")
    assert run.exit_code == 0 and f"nothing to do: {len(objects)} objects already on the target" in run.stdout, run.stdout


def test_versioned_bucket_older_versions_and_delete_markers(tmp_path: Path, sshd, s3_server, source: Source) -> None:
    """Issue 15 item 9: the plan shows older versions and delete markers; `versions: all`
    moves them to <to>/%%versions/<key path>/%%v=<version id>, records the delete markers
    in the sidecar, and verify checks both."""
    from relocate.sources.aws import is_read_operation

    assert is_read_operation("ListObjectVersions") and is_read_operation("GetBucketVersioning")
    s3 = source.s3
    ver = source.bucket(s3_server, "ver")
    s3.put_bucket_versioning(Bucket=ver, VersioningConfiguration={"Status": "Enabled"})
    vids = [s3.put_object(Bucket=ver, Key="doc.txt", Body=f"draft {i}".encode())["VersionId"] for i in range(3)]
    gone = s3.put_object(Bucket=ver, Key="gone.txt", Body=b"deleted later")["VersionId"]
    marker = s3.delete_object(Bucket=ver, Key="gone.txt")["VersionId"]
    s3.put_object(Bucket=ver, Key="%%versions/doc.txt/%%v=" + vids[0], Body=b"a key that looks like the layout")
    root = sshd.root / f"t-{secrets.token_hex(4)}"
    entry = {"bucket": ver, "to": "data/ver"}
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=source.endpoint, sshd=sshd, root=str(root), buckets=[entry])
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    older = len(b"draft 0") + len(b"draft 1") + len(b"deleted later")
    warn = [w["message"] for w in run.json()["warnings"] if w["code"] == "s3-versions"]
    assert len(warn) == 1 and f"versioning Enabled: 3 older version(s), {older} B, and 1 delete marker(s) are NOT moved" in warn[0], warn
    assert run.json()["versions_left"][0]["versions"] == 3

    cfg = make_config(tmp_path / "relocate.yaml", endpoint=source.endpoint, sshd=sshd, root=str(root), buckets=[{**entry, "versions": "all"}])
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    step = {s["id"]: s for s in run.json()["steps"]}[f"s3:{ver}/#versions"]
    assert (step["count"], step["bytes"], step["dest"]) == (3, older, "data/ver/%%versions")
    assert not [w for w in run.json()["warnings"] if w["code"] == "s3-versions"]
    run = cli("move", "-f", str(cfg), "--yes")
    assert run.exit_code == 0, run.stdout + run.stderr
    base = root / "data" / "ver"
    assert (base / "doc.txt").read_bytes() == b"draft 2"  # the current object, where it always goes
    assert not (base / "gone.txt").exists()  # deleted at the source: only its older version moves
    for i, vid in enumerate(vids[:2]):
        assert (base / "%%versions" / "doc.txt" / f"%%v={vid}").read_bytes() == f"draft {i}".encode()
    assert (base / "%%versions" / "gone.txt" / f"%%v={gone}").read_bytes() == b"deleted later"
    assert not (base / "%%versions" / "doc.txt" / f"%%v={vids[2]}").exists()  # the current version is not doubled
    # the look-alike key is escaped like any key: it cannot land in the versions tree
    assert (base / "%25%25versions" / "doc.txt" / f"%25%25v={vids[0]}").read_bytes() == b"a key that looks like the layout"
    sidecar = json.loads((root / ".relocate" / "buckets" / "data__ver__%%versions.json").read_text())
    assert [(m["key"], m["version_id"], m["latest"]) for m in sidecar["delete_markers"]] == [("gone.txt", marker, True)]
    assert {(o["key"], o["version_id"]) for o in sidecar["objects"]} == {("doc.txt", vids[0]), ("doc.txt", vids[1]), ("gone.txt", gone)}

    run = cli("verify", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    checks = {c["label"]: c for c in run.json()["checks"]}
    assert checks[f"delete markers of s3://{ver}/ in data/ver/%%versions"]["ok"] is True
    again = cli("move", "-f", str(cfg), "--yes")
    assert again.exit_code == 0 and "nothing to do: 5 objects already on the target" in again.stdout, again.stdout
    (base / "%%versions" / "doc.txt" / f"%%v={vids[0]}").write_bytes(b"draft X")
    run = cli("verify", "-f", str(cfg), "--json")
    assert run.exit_code == 4 and run.json()["differing_paths"] == [f"data/ver/%%versions/doc.txt/%%v={vids[0]}"], run.stdout
