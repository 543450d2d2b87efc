"""Read what a plan is built from: the source inventory, the target's facts, and
which objects are already on the target (journal + a size listing on the target)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from relocate.config import Config
from relocate.plan.build import s3_step_id
from relocate.snapshot.journal import DoneObject, Journal
from relocate.sources.aws import Aws
from relocate.sources.inventory import Inventory, take_inventory
from relocate.targets import files
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


def already_on_target(config: Config, conn: Connection, journal: Journal, inventory: Inventory) -> dict[str, dict[str, DoneObject]]:
    """Objects the journal says were delivered, unchanged at the source since, and still
    on the target with the right size. verify re-hashes; this only has to be cheap."""
    tid = target_id(config, conn)
    result: dict[str, dict[str, DoneObject]] = {}
    for listing in inventory.buckets:
        sid = s3_step_id(listing.spec.bucket, listing.spec.prefix)
        recorded = journal.done(tid, listing.spec.bucket)
        if not recorded:
            result[sid] = {}
            continue
        sizes = files.list_sizes(conn, posixpath.join(config.root, listing.spec.to))
        ok: dict[str, DoneObject] = {}
        for o in listing.objects:
            rec = recorded.get(o.key)
            if rec and rec.etag == o.etag and rec.size == o.size:
                rel = posixpath.relpath(rec.path, listing.spec.to)
                if sizes.get(rel) == o.size:
                    ok[o.key] = rec
        result[sid] = ok
    return result


def gather(config: Config, aws: Aws, conn: Connection) -> Gathered:
    inventory = take_inventory(config, aws)
    facts = probe(conn, config.root)
    journal = journal_for(config)
    try:
        done = already_on_target(config, conn, journal, inventory) if facts.existing == config.root or facts.existing.startswith(config.root) else {}
    finally:
        journal.close()
    return Gathered(inventory, facts, done)
