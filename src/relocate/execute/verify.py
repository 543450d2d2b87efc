"""Compare the target with a snapshot manifest, like `rclone check`: every file's
sha256 is computed on the target; env files are compared after decrypting the
snapshot's copy (when the key is at hand)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from relocate.kinds import Check, Context, Kind
from relocate.kinds.env import verify_env
from relocate.kinds.objects import forget_bad, verify_objects
from relocate.snapshot.manifest import entries_as_read
from relocate.snapshot.store import Snapshot
from relocate.ssh.connection import Connection

if TYPE_CHECKING:
    import pyrage


@dataclass
class VerifyReport:
    # the snapshot's id compared against (None: a sharded verify on a machine without the
    # final phase's): in the report itself, so `verify --json` and `move --json`'s
    # `result.verify` are one document (docs/json.md)
    snapshot: str | None = None
    matched: int = 0
    checked_on_arrival: int = 0  # of matched: hashed by the target as they landed (this move or an earlier one), here only sized
    missing: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    # objects the move could never write ({path, error}; the manifest's `failed`): not on the
    # target, so never an OK, and named with why
    failed: list[dict[str, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # path -> ok | differs | missing | bad-mode | not-compared
    checks: list[Check] = field(default_factory=list)  # from components (databases, dns, ...)
    # objects at the source that no source.s3 prefix covered when the snapshot was taken:
    # not a difference (relocate.yaml chose them out), but never to go unsaid
    left_out: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.missing and not self.differing and not self.failed and all(v in ("ok", "not-compared") for v in self.env.values())
                and all(c.ok for c in self.checks))

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "ok": self.ok, "matched": self.matched, "checked_on_arrival": self.checked_on_arrival, "missing": len(self.missing), "differing": len(self.differing),
                "missing_paths": self.missing[:100], "differing_paths": self.differing[:100],
                "failed": len(self.failed), "failed_items": self.failed[:100], "env_files": self.env,
                "checks": [{"label": c.label, "ok": c.ok, "detail": c.detail} for c in self.checks],
                "left_out": self.left_out}


def verify_snapshot(conn: Connection, root: str, snap: Snapshot, identity: pyrage.x25519.Identity | None, *,
                    kinds: Sequence[Kind] = (), ctx: Context | None = None,
                    landed: dict[str, set[str]] | None = None) -> VerifyReport:
    manifest = snap.manifest(object_hook=entries_as_read)
    report = VerifyReport(snapshot=snap.id, left_out=list(manifest.get("left_out") or []))
    forget_bad(snap, manifest, verify_objects(conn, root, manifest, report, landed))
    verify_env(conn, root, snap, manifest, identity, report)
    if ctx is not None:
        ctx.identity = identity
        ctx.snapshot_dir = snap.path
        named = {k.name: k for k in kinds}
        for name, part in (manifest.get("components") or {}).items():
            if name in named:
                report.checks.extend(named[name].verify(ctx, part))
            else:
                report.checks.append(Check(f"{name}", False, "recorded in the snapshot, but relocate.yaml no longer configures it"))
            # What a component's move could never write, filed in its step's record as
            # `failed` ({path, error}: host files the source login could not read): listed
            # like an object's, a difference until a move writes them
            report.failed.extend({"path": str(f["path"]), "error": str(f.get("error", ""))}
                                 for rec in part.values() if isinstance(rec, dict)
                                 for f in (rec.get("failed") or []) if isinstance(f, dict) and "path" in f)
    return report
