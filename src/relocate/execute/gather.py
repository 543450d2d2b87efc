"""Read what a plan is built from: the source inventory, the target's facts, and
which objects are already on the target (journal + a size listing on the target)."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

from relocate import pathrules
from relocate.config import Config
from relocate.plan.build import s3_step_id
from relocate.snapshot.journal import DoneObject, Journal
from relocate.sources.aws import Aws
from relocate.sources.inventory import Inventory, take_inventory
from relocate.targets import files, layout
from relocate.targets.facts import TargetFacts, probe
from relocate.targets.ssh import Connection


def target_id(config: Config, conn: Connection) -> str:
    return f"{conn.endpoint}{config.root}"


def journal_for(config: Config) -> Journal:
    return Journal(config.snapshot_dir / "journal.sqlite")


@dataclass
class Gathered:
    inventory: Inventory
    facts: TargetFacts
    done: dict[str, dict[str, DoneObject]]  # step id -> key -> record, present and intact

    def done_keys(self) -> dict[str, set[str]]:
        return {sid: set(d) for sid, d in self.done.items()}


def already_on_target(config: Config, conn: Connection, journal: Journal, inventory: Inventory,
                      checksum: bool = False) -> dict[str, dict[str, DoneObject]]:
    """Objects the journal says were delivered, unchanged at the source since, and still
    on the target with the right size (verify re-hashes; this only has to be cheap), or
    with `checksum` the right sha256, hashed on the target now."""
    tid = target_id(config, conn)
    result: dict[str, dict[str, DoneObject]] = {}
    for listing in inventory.buckets:
        sid = s3_step_id(listing.spec.bucket, listing.spec.prefix)
        recorded = journal.done(tid, listing.spec.bucket) or sidecar_records(conn, config.root, listing.spec.bucket, listing.spec.to)
        if not recorded:
            result[sid] = {}
            continue
        where = posixpath.join(config.root, listing.spec.to)
        found = files.tree_facts(conn, where, hashes=checksum)
        ok: dict[str, DoneObject] = {}
        for o in listing.objects:
            rec = recorded.get(o.key)
            if rec and rec.etag == o.etag and rec.size == o.size:
                rel = posixpath.relpath(rec.path, listing.spec.to)
                if found.get(rel) == (rec.sha256 if checksum else o.size):
                    ok[o.key] = rec
        result[sid] = ok
    return result


def sidecar_records(conn: Connection, root: str, bucket: str, dest: str) -> dict[str, DoneObject]:
    """What an earlier move recorded on the target itself: lets a fresh machine (a CI
    runner without the journal) resume instead of re-sending everything. Each record
    was hashed by the target when it landed; sizes are re-checked by the caller."""
    found = files.read_file(conn, layout.sidecar_path(root, dest))
    if found is None:
        return {}
    try:
        doc = json.loads(found[0])
        if doc.get("bucket") != bucket:
            return {}
        return {o["key"]: DoneObject(bucket, o["key"], o["etag"], int(o["size"]), o["path"], o["sha256"],
                                     o.get("content_type"), dict(o.get("metadata") or {}))
                for o in doc.get("objects", [])}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}  # a damaged sidecar only costs a re-send


def write_dirs(config: Config) -> list[str]:
    """Every directory under the root the move writes into (checked by the plan for links)."""
    rels = [".relocate/lock", ".relocate/buckets", ".relocate/staging"]
    for d in pathrules.destinations(config.data):
        rels.append(d.rel if d.kind == "dir" else posixpath.dirname(d.rel))
    if config.data.get("deploy"):
        rels += ["shared", "shared/run", "shared/log"]  # the command runtime's pid file and log
    return [posixpath.join(config.root, r) for r in dict.fromkeys(rels) if r]


def gather(config: Config, aws: Aws, conn: Connection, checksum: bool = False) -> Gathered:
    inventory = take_inventory(config, aws)
    facts = probe(conn, config.root, write_dirs(config), config.allowed_links)
    journal = journal_for(config)
    try:
        done = already_on_target(config, conn, journal, inventory, checksum) if facts.existing == config.root or facts.existing.startswith(config.root) else {}
    finally:
        journal.close()
    return Gathered(inventory, facts, done)
