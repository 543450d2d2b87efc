"""Compare the target with a snapshot manifest, like `rclone check`: every file's
sha256 is computed on the target; env files are compared after decrypting the
snapshot's copy (when the key is at hand)."""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any, Sequence

from relocate.components import Check, Component, Context

from relocate.snapshot import crypto
from relocate.snapshot.journal import Journal
from relocate.snapshot.store import Snapshot
from relocate.sources.inventory import version_key
from relocate.targets import files, layout
from relocate.targets.ssh import Connection


@dataclass
class VerifyReport:
    matched: int = 0
    checked_on_arrival: int = 0  # of matched: hashed by the target as they landed in this move, here only sized
    missing: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # path -> ok | differs | missing | bad-mode | not-compared
    checks: list[Check] = field(default_factory=list)  # from components (databases, dns, ...)
    # objects at the source that no source.s3 prefix covered when the snapshot was taken:
    # not a difference (relocate.yaml chose them out), but never to go unsaid
    left_out: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.missing and not self.differing and all(v in ("ok", "not-compared") for v in self.env.values())
                and all(c.ok for c in self.checks))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "matched": self.matched, "checked_on_arrival": self.checked_on_arrival, "missing": len(self.missing), "differing": len(self.differing),
                "missing_paths": self.missing[:100], "differing_paths": self.differing[:100], "env_files": self.env,
                "checks": [{"label": c.label, "ok": c.ok, "detail": c.detail} for c in self.checks],
                "left_out": self.left_out}


def verify_objects(conn: Connection, root: str, manifest: dict[str, Any], report: VerifyReport,
                   landed: dict[str, set[str]] | None = None) -> dict[str, list[str]]:
    """Compare hashes; returns {bucket: keys missing or differing} for the journal.

    `landed` ({destination: keys}) names objects `move` just delivered, each of which the
    target hashed as it was written and matched against the sha256 computed while
    streaming. When every object of a destination is one of those, re-reading the
    whole tree would hash the same bytes a second time within seconds, so `move` checks
    that each is there with its size instead; `relocate verify`, and any destination
    holding objects from an earlier run, re-hash everything."""
    bad: dict[str, list[str]] = {}
    for bucket in manifest.get("buckets", []):
        dest = bucket["to"]
        fresh = (landed or {}).get(dest, set())
        by_size = bool(bucket["objects"]) and all(_key(obj) in fresh for obj in bucket["objects"])
        on_target = files.tree_facts(conn, posixpath.join(root, dest), hashes=not by_size)
        for obj in bucket["objects"]:
            rel = posixpath.relpath(obj["path"], dest)
            got = on_target.get(rel)
            if got is None:
                report.missing.append(obj["path"])
            elif got != (obj["size"] if by_size else obj["sha256"]):
                report.differing.append(obj["path"])
            else:
                report.matched += 1
                report.checked_on_arrival += by_size
                continue
            bad.setdefault(bucket.get("journal_bucket") or bucket["bucket"], []).append(_key(obj))
        if "delete_markers" in bucket:
            report.checks.append(_markers_check(conn, root, bucket))
    return bad


def _key(obj: dict[str, Any]) -> str:
    """The journal's key for a manifest entry (older versions: version_key)."""
    return version_key(obj["key"], obj["version_id"]) if "version_id" in obj else obj["key"]


def _markers_check(conn: Connection, root: str, bucket: dict[str, Any]) -> Check:
    """Older versions: the delete markers the snapshot recorded are in the target's sidecar."""
    label = f"delete markers of s3://{bucket['bucket']}/{bucket['prefix']} in {bucket['to']}"
    found = files.read_file(conn, layout.sidecar_path(root, bucket["to"]))
    try:
        held = json.loads(found[0]).get("delete_markers") if found else None
    except ValueError:
        held = None
    want = bucket["delete_markers"]
    if held is None and not want:
        return Check(label, True, "none")
    return Check(label, held == want, f"{len(want)} recorded" if held == want else
                 f"the target's sidecar holds {len(held) if held is not None else 'none'}, the snapshot {len(want)}")


def forget_bad(snap: Snapshot, manifest: dict[str, Any], bad: dict[str, list[str]]) -> None:
    """A file verify found missing or damaged leaves the journal, so the next `move`
    sends it again instead of trusting journal + size (issue 6: a flipped byte keeps
    the size). The journal sits beside the snapshots (execute/gather.journal_for)."""
    if not bad or not manifest.get("target"):
        return
    journal = Journal(snap.path.parent / "journal.sqlite")
    try:
        for bucket, keys in bad.items():
            journal.forget(manifest["target"], bucket, keys)
    finally:
        journal.close()


def verify_env(conn: Connection, root: str, snap: Snapshot, manifest: dict[str, Any], identity, report: VerifyReport) -> None:
    expected: dict[str, str] = {}
    if identity is not None and snap.secrets_path.exists():
        expected = json.loads(crypto.decrypt(snap.secrets_path.read_bytes(), identity))
    for env in manifest.get("env_files", []):
        path = env["path"]
        got = files.read_file(conn, posixpath.join(root, path))
        if got is None:
            report.env[path] = "missing"
        elif got[1] & 0o077:
            report.env[path] = "bad-mode"
        elif path not in expected:
            report.env[path] = "not-compared"
        else:
            same = hashlib.sha256(got[0]).digest() == hashlib.sha256(expected[path].encode()).digest()
            report.env[path] = "ok" if same else "differs"


def verify_snapshot(conn: Connection, root: str, snap: Snapshot, identity, *,
                    components: Sequence[Component] = (), ctx: Context | None = None,
                    landed: dict[str, set[str]] | None = None) -> VerifyReport:
    manifest = snap.manifest()
    report = VerifyReport(left_out=list(manifest.get("left_out") or []))
    forget_bad(snap, manifest, verify_objects(conn, root, manifest, report, landed))
    verify_env(conn, root, snap, manifest, identity, report)
    if ctx is not None:
        ctx.identity = identity
        ctx.snapshot_dir = snap.path
        named = {c.name: c for c in components}
        for name, part in (manifest.get("components") or {}).items():
            if name in named:
                report.checks.extend(named[name].verify(ctx, part))
            else:
                report.checks.append(Check(f"{name}", False, "recorded in the snapshot, but relocate.yaml no longer configures it"))
    return report
