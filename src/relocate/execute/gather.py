"""Read what a plan is built from: the source inventory, the target's facts, and
which objects are already on the target (journal + a size listing on the target)."""

from __future__ import annotations

import hashlib
import json
import posixpath
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from relocate import pathrules
from relocate.config import Config
from relocate.snapshot.journal import DoneObject, Journal
from relocate.snapshot.manifest import ObjectEntry
from relocate.sources.aws import Aws
from relocate.sources.inventory import Inventory, take_inventory
from relocate.targets import files, layout, shell
from relocate.targets.facts import Probing, TargetFacts
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

    def objects_todo(self) -> int:
        """How many listed objects are not on the target yet."""
        return sum(len(b.objects) - len(self.done.get(b.step_id, {})) for b in self.inventory.buckets)


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


# (journal bucket, destination) -> (what the journal or sidecar records, sizes or hashes on the target)
Ahead = dict[tuple[str, str], tuple[dict[str, DoneObject], dict[str, Any]]]


def on_target(config: Config, conn: Connection, journal: Journal, bucket: str, dest: str, name: str,
              checksum: bool, recorded: dict[str, DoneObject] | None = None,
              listed: dict[str, int] | None = None) -> tuple[dict[str, DoneObject], dict[str, Any]]:
    """What the journal (or else the target's sidecar) records for one destination, and
    the sizes (or with `checksum` the sha256s, hashed there now) of the files under it.
    `recorded`, `listed`: the journal's records and those sizes, when already read."""
    recorded = recorded or journal.done(target_id(config, conn), bucket) or sidecar_records(conn, config.root, bucket, dest, name)
    if not recorded:
        return {}, {}
    return recorded, listed if listed is not None else files.tree_facts(conn, posixpath.join(config.root, dest), hashes=checksum)


def look_ahead(config: Config, conn: Connection, journal: Journal, checksum: bool) -> tuple[TargetFacts, Ahead]:
    """The target's facts, and on_target for each source.s3 entry's destination, known
    from relocate.yaml alone: taken while the bucket is still being listed (older
    versions' destinations are asked after the listing, by already_on_target). The facts
    and the sizes under every destination come in one remote command (with `checksum`,
    hashes instead, each its own), and the journal is read while the target answers (issue 18)."""
    dests = list(dict.fromkeys((spec.bucket, spec.to) for spec in config.s3))
    sizes = [] if checksum else [posixpath.join(config.root, to) for _, to in dests]
    probing = Probing(conn, config.root, write_dirs(config), config.allowed_links, sizes)
    tid = target_id(config, conn)
    journaled = {(bucket, to): journal.done(tid, bucket) for bucket, to in dests}
    facts, listed = probing.result()
    if not _under_root(facts, config.root):
        return facts, {}
    found: dict[tuple[str, str], dict[str, int] | None] = dict(zip(dests, listed))
    return facts, {(bucket, to): on_target(config, conn, journal, bucket, to, bucket, checksum, journaled[bucket, to],
                                           found.get((bucket, to)))
                   for bucket, to in dests}


def _under_root(facts: TargetFacts, root: str) -> bool:
    """target.root exists (else nothing is on the target yet)."""
    return facts.existing == root or facts.existing.startswith(root)


def already_on_target(config: Config, conn: Connection, journal: Journal, inventory: Inventory,
                      checksum: bool = False, ahead: Ahead | None = None) -> dict[str, dict[str, DoneObject]]:
    """Objects the journal says were delivered, unchanged at the source since, and still
    on the target with the right size (verify re-hashes; this only has to be cheap), or
    with `checksum` the right sha256, hashed on the target now. `ahead`: look_ahead's
    answers, taken while the source was listed."""
    result: dict[str, dict[str, DoneObject]] = {}
    for listing in inventory.buckets:
        sid = listing.step_id
        pre = (ahead or {}).get((listing.journal_bucket, listing.dest))
        recorded, found = pre if pre is not None else on_target(
            config, conn, journal, listing.journal_bucket, listing.dest, listing.spec.bucket, checksum)
        if not recorded:
            result[sid] = {}
            continue
        ok: dict[str, DoneObject] = {}
        for o in listing.objects:
            rec = recorded.get(o.key)
            if rec and rec.etag == o.etag and rec.size == o.size:
                rel = layout.under(rec.path, listing.dest)
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
        entries = (ObjectEntry.from_dict(o) for o in doc.get("objects", []))
        return {e.journal_key: e.done(bucket) for e in entries}
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


def list_source(config: Config, aws: Aws) -> Future[Inventory]:
    """take_inventory on a thread of its own, started before the target's SSH login: the
    source's listing (its S3 client's creation, its requests and their parsing) overlaps
    the login, the probe and the journal read, and a rerun waits for the longer of the
    two, not for both (issue 18). A daemon thread: a login that fails is reported at once,
    not after a long listing."""
    listed: Future[Inventory] = Future()

    def run() -> None:
        try:
            listed.set_result(take_inventory(config, aws))
        except BaseException as exc:  # noqa: BLE001 - raised again by listed.result(), on the caller's thread
            listed.set_exception(exc)

    threading.Thread(target=run, name="inventory", daemon=True).start()
    return listed


def gather(config: Config, aws: Aws, conn: Connection, checksum: bool = False,
           listed: Future[Inventory] | None = None) -> Gathered:
    """`listed`: list_source's, when the caller started the listing already. The target
    connection stays on this thread."""
    listed = listed or list_source(config, aws)
    journal = journal_for(config)
    try:
        facts, ahead = look_ahead(config, conn, journal, checksum)
        exists = _under_root(facts, config.root)
        inventory = listed.result()
        done = already_on_target(config, conn, journal, inventory, checksum, ahead) if exists else {}
    finally:
        journal.close()
    record, same = env_on_target(config, conn, inventory) if exists else ({}, set())
    return Gathered(inventory, facts, done, record, same)
