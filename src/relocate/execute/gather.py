"""Read what a plan is built from: the source inventory, the target's facts, and
which objects are already on the target (journal + a size listing on the target)."""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from relocate import pathrules
from relocate.config import Config
from relocate.snapshot.journal import DoneObject, Journal
from relocate.sources.aws import Aws
from relocate.sources.inventory import Inventory, take_inventory, version_key
from relocate.targets import files, layout, shell
from relocate.targets.facts import TargetFacts, probe
from relocate.ssh.connection import Connection


def target_id(config: Config, conn: Connection) -> str:
    return f"{conn.endpoint}{config.root}"


def journal_for(config: Config) -> Journal:
    return Journal(config.snapshot_dir / "journal.sqlite")


@dataclass
class Gathered:
    inventory: Inventory
    facts: TargetFacts
    done: dict[str, dict[str, DoneObject]]  # step id -> key -> record, present and intact
    env_record: dict[str, Any] = field(default_factory=dict)  # the target's ENV_RECORD
    env_same: set[str] = field(default_factory=set)  # env files the target holds as this move would write them

    def done_keys(self) -> dict[str, set[str]]:
        return {sid: set(d) for sid, d in self.done.items()}


# Per env file: a digest of what it is made from (parameter and secret names with their
# versions, never values) and the sha256 of the file written from them. A rerun whose
# sources have the same versions, onto a file with that sha256 and mode 0600, has
# nothing to write, and the plan says so without reading a value.
ENV_RECORD = "env.json"

_ENV_ON_TARGET = r"""
record=$1; shift
cat -- "$record" 2>/dev/null || true
printf '\0'
for f in "$@"; do
  if [ -f "$f" ]; then printf '%s\t%s\t%s\0' "$(stat -c %a -- "$f")" "$(sha256sum < "$f" | cut -c1-64)" "$f"; fi
done
"""


def env_digests(config: Config, inventory: Inventory) -> dict[str, str]:
    """{env file: digest of its sources' names and versions}, in relocate.yaml's order."""
    parts: dict[str, list[Any]] = {}
    for p in inventory.parameters:
        parts.setdefault(p.spec.to, []).append(["ssm", p.spec.path, [[i.name, i.version] for i in p.items]])
    for s in inventory.secrets:
        parts.setdefault(s.spec.to, []).append(["secret", s.spec.name, s.item.version])
    return {path: hashlib.sha256(json.dumps(v).encode()).hexdigest() for path, v in parts.items()}


def env_on_target(config: Config, conn: Connection, inventory: Inventory) -> tuple[dict[str, Any], set[str]]:
    """(the target's record, env files it holds unchanged since a move from the same versions)."""
    digests = env_digests(config, inventory)
    if not digests:
        return {}, set()
    remote = {posixpath.join(config.root, path): path for path in digests}
    cmd, stdin = shell.script(_ENV_ON_TARGET, posixpath.join(layout.state_dir(config.root), ENV_RECORD), *remote)
    raw, _, rest = conn.run(cmd, stdin, timeout=120).stdout.partition(b"\0")
    try:
        record = json.loads(raw) if raw.strip() else {}
    except ValueError:
        record = {}
    record = record if isinstance(record, dict) else {}
    same: set[str] = set()
    for item in rest.split(b"\0"):
        if item.count(b"\t") < 2:
            continue
        mode, digest, name = item.decode("utf-8", "surrogateescape").split("\t", 2)
        path = remote.get(name)
        if path is None:
            continue
        rec = record.get(path)
        if isinstance(rec, dict) and rec.get("sources") == digests[path] and rec.get("sha256") == digest \
                and not int(mode or "0", 8) & 0o077:
            same.add(path)
    return record, same


def already_on_target(config: Config, conn: Connection, journal: Journal, inventory: Inventory,
                      checksum: bool = False) -> dict[str, dict[str, DoneObject]]:
    """Objects the journal says were delivered, unchanged at the source since, and still
    on the target with the right size (verify re-hashes; this only has to be cheap), or
    with `checksum` the right sha256, hashed on the target now."""
    tid = target_id(config, conn)
    result: dict[str, dict[str, DoneObject]] = {}
    for listing in inventory.buckets:
        sid = listing.step_id
        recorded = (journal.done(tid, listing.journal_bucket)
                    or sidecar_records(conn, config.root, listing.journal_bucket, listing.dest, listing.spec.bucket))
        if not recorded:
            result[sid] = {}
            continue
        where = posixpath.join(config.root, listing.dest)
        found = files.tree_facts(conn, where, hashes=checksum)
        ok: dict[str, DoneObject] = {}
        for o in listing.objects:
            rec = recorded.get(o.key)
            if rec and rec.etag == o.etag and rec.size == o.size:
                rel = posixpath.relpath(rec.path, listing.dest)
                if found.get(rel) == (rec.sha256 if checksum else o.size):
                    ok[o.key] = rec
        result[sid] = ok
    return result


def sidecar_records(conn: Connection, root: str, bucket: str, dest: str, name: str | None = None) -> dict[str, DoneObject]:
    """What an earlier move recorded on the target itself: lets a fresh machine (a CI
    runner without the journal) resume instead of re-sending everything. Each record
    was hashed by the target when it landed; sizes are re-checked by the caller.
    `bucket` is the journal's name (`<bucket>#versions` for older versions), `name` the
    bucket's own as the sidecar says it."""
    found = files.read_file(conn, layout.sidecar_path(root, dest))
    if found is None:
        return {}
    try:
        doc = json.loads(found[0])
        if doc.get("bucket") != (name or bucket):
            return {}
        out: dict[str, DoneObject] = {}
        for o in doc.get("objects", []):
            key = version_key(o["key"], o["version_id"]) if "version_id" in o else o["key"]
            out[key] = DoneObject(bucket, key, o["etag"], int(o["size"]), o["path"], o["sha256"],
                                  o.get("content_type"), dict(o.get("metadata") or {}))
        return out
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
    exists = facts.existing == config.root or facts.existing.startswith(config.root)
    try:
        done = already_on_target(config, conn, journal, inventory, checksum) if exists else {}
    finally:
        journal.close()
    record, same = env_on_target(config, conn, inventory) if exists else ({}, set())
    return Gathered(inventory, facts, done, record, same)
