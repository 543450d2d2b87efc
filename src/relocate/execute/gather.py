"""Read what a plan is built from: the source inventory, the target's facts, and
which objects are already on the target (journal + a size listing on the target)."""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from relocate import pathrules
from relocate.config import Config
from relocate.execute.envfiles import SPLIT_RULE
from relocate.snapshot import receipts
from relocate.snapshot.journal import DoneObject, Journal
from relocate.snapshot.manifest import ObjectEntry
from relocate.sources.aws import Aws
from relocate.sources.inventory import Inventory, ObjectInfo, take_inventory
from relocate.targets import files, layout, shell
from relocate.targets.facts import Probing, TargetFacts
from relocate.ssh.connection import Connection

log = logging.getLogger(__name__)  # --debug's log file only


def target_id(config: Config, conn: Connection) -> str:
    return f"{conn.endpoint}{config.root}"


def journal_for(config: Config, readonly: bool = False) -> Journal:
    return Journal(config.snapshot_dir / "journal.sqlite", readonly)


@dataclass
class Gathered:
    inventory: Inventory
    facts: TargetFacts
    done: dict[str, dict[str, DoneObject]]  # step id -> key -> record, present and intact
    env_record: dict[str, Any] = field(default_factory=dict)  # the target's ENV_RECORD
    env_same: set[str] = field(default_factory=set)  # env files the target holds as this move would write them
    # step id -> key -> record, for destinations with receipts (snapshot/receipts.py): the
    # objects in `done` only a receipt records; kinds/objects.py journals them and folds
    # the receipts into the sidecar
    receipted: dict[str, dict[str, DoneObject]] = field(default_factory=dict)
    env_dirs: dict[str, int] = field(default_factory=dict)  # env file -> its directory's wrong mode (EnvOnTarget.dirs)
    # each source.s3 `to:` -> {path under it: size} of the files the probe found there (none
    # when the listing failed): kinds/objects.py names the keys whose directory is a file
    files_under: dict[str, dict[str, int]] = field(default_factory=dict)

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

# Then per env file: its mode and sha256 ('-' when absent), and its directory's mode when
# the login owns that directory ('-' otherwise: relocate never changes another user's
# directory). The directory's mode rides in this same command, so a wrong one
# (target.env_dir_mode) is a change the plan shows, at no extra round trip.
# A directory's mode when the login owns it, else "-": relocate sets only the modes of
# its own directories (files.private_dir), so only those can be "wrong" (kinds/env.py's
# verify asks the same).
OWNED_MODE_FN = r"""
relocate_owned_mode() { if [ -d "$1" ] && [ -O "$1" ]; then stat -L -c %a -- "$1"; else echo -; fi; }
"""
_ENV_RECORD_HEAD = r"""
cat -- "$1" 2>/dev/null || true
printf '\0'
"""
# each env file (files.over_items: the paths on stdin, after the record's path)
_ENV_ON_TARGET = OWNED_MODE_FN + r"""
shift
for f in "$@"; do
  o=$(relocate_owned_mode "${f%/*}")
  if [ -f "$f" ]; then printf '%s\t%s\t%s\t%s\0' "$(stat -c %a -- "$f")" "$(sha256sum < "$f" | cut -c1-64)" "$o" "$f"
  else printf '%s\t%s\t%s\t%s\0' - - "$o" "$f"; fi
done
exit 0
"""


def env_digests(config: Config, inventory: Inventory) -> dict[str, str]:
    """{env file: digest of its sources' names and versions}, in relocate.yaml's order."""
    parts: dict[str, list[Any]] = {}
    for p in inventory.parameters:
        parts.setdefault(p.spec.to, []).append(["ssm", p.spec.path, [[i.name, i.version] for i in p.items]])
    for s in inventory.secrets:
        # with the JSON splitting rule: a file written under an older rule is not "the same"
        parts.setdefault(s.spec.to, []).append(["secret", s.spec.name, s.item.version, SPLIT_RULE])
    return {path: hashlib.sha256(json.dumps(v).encode()).hexdigest() for path, v in parts.items()}


@dataclass
class EnvOnTarget:
    record: dict[str, Any] = field(default_factory=dict)  # the target's ENV_RECORD
    same: set[str] = field(default_factory=set)  # env files held as this move would write them
    # env file -> its directory's mode, where the login owns that directory (below the
    # root) and its mode is not target.env_dir_mode: the move sets it (files.private_dir)
    dirs: dict[str, int] = field(default_factory=dict)


def env_on_target(config: Config, conn: Connection, inventory: Inventory) -> EnvOnTarget:
    """The target's record, the env files it holds unchanged since a move from the same
    versions, and the env directories whose mode the move must set, in one command."""
    digests = env_digests(config, inventory)
    if not digests:
        return EnvOnTarget()
    remote = {posixpath.join(config.root, path): path for path in digests}
    cmd, stdin = files.over_items(_ENV_RECORD_HEAD, _ENV_ON_TARGET, [posixpath.join(layout.state_dir(config.root), ENV_RECORD)],
                                  remote)
    raw, _, rest = conn.run(cmd, stdin, timeout=120).stdout.partition(b"\0")
    try:
        record = json.loads(raw) if raw.strip() else {}
    except ValueError:
        record = {}
    found = EnvOnTarget(record if isinstance(record, dict) else {})
    top = config.root.rstrip("/") or "/"
    for item in rest.split(b"\0"):
        if item.count(b"\t") < 3:
            continue
        mode, digest, dir_mode, name = item.decode("utf-8", "surrogateescape").split("\t", 3)
        path = remote.get(name)
        if path is None:
            continue
        # the root's own mode is never changed (README, target.env_dir_mode)
        if dir_mode.isdigit() and posixpath.dirname(name) != top and int(dir_mode, 8) != config.env_dir_mode:
            found.dirs[path] = int(dir_mode, 8)
        rec = found.record.get(path)
        if mode != "-" and isinstance(rec, dict) and rec.get("sources") == digests[path] and rec.get("sha256") == digest \
                and not int(mode or "0", 8) & 0o077:
            found.same.add(path)
    return found


@dataclass
class Recorded:
    """What is known of one destination before sending: the journal's (or else the
    target's sidecar's) records, the target's receipts (snapshot/receipts.py: files an
    earlier, killed run placed; as read, parsed only for objects no record covers), and
    the sizes (or with `checksum` the sha256s, hashed there now) of the files under it."""

    records: dict[str, DoneObject]
    receipts: bytes
    found: dict[str, Any]


# (journal bucket, destination) -> what is recorded and found there
Ahead = dict[tuple[str, str], Recorded]

# All a destination's records on the target in one command, for what the probe did not
# read (older versions' destinations, a fresh machine's sidecar): its receipts, its
# sidecar ($2, '' when the local journal has records), then the sizes under the
# destination when $4 is `yes`, or `if` anything was recorded (a `!` record when that
# listing failed). \001 separates them (JSON and the receipts' ASCII lines never hold
# one). A newline after each receipt ends a line a kill tore.
_RECORDED = files.SIZES_FN + r"""
list=$4
for f in "$1"/*.r; do
  if [ -f "$f" ]; then cat -- "$f"; echo; [ "$list" = if ] && list=yes; fi
done
printf '\001'
if [ -n "$2" ] && [ -f "$2" ]; then cat -- "$2"; [ "$list" = if ] && list=yes; fi
printf '\001'
if [ "$list" = yes ]; then relocate_sizes "$3" 2>/dev/null || printf '!\0'; fi
exit 0
"""


def on_target(config: Config, conn: Connection, journal: Journal, bucket: str, dest: str, name: str,
              checksum: bool, records: dict[str, DoneObject] | None = None, taken: bytes | None = None,
              listed: dict[str, int] | None = None) -> Recorded:
    """What the journal (or else the target's sidecar) and the target's receipts record
    for one destination, and what is under it. `records`, `taken`, `listed`: the journal's
    records, the receipts and the sizes, when already read (look_ahead: the probe brought
    them); what is missing is read in one remote command, plus the hashing with
    `checksum`. `bucket` is the journal's name (`<bucket>#versions` for older versions),
    `name` the bucket's own as the sidecar says it."""
    if records is None:  # look_ahead read the journal while the probe ran: not again
        records = journal.done(target_id(config, conn), bucket)
    directory = posixpath.join(config.root, dest)
    if taken is None or not records or (listed is None and not checksum):
        cmd, stdin = shell.script(_RECORDED, layout.receipts_dir(config.root, dest),
                                  "" if records else layout.sidecar_path(config.root, dest), directory,
                                  "no" if checksum else "yes" if records else "if")
        raw, _, rest = conn.run(cmd, stdin, timeout=3600).stdout.partition(b"\001")
        side, _, sizes = rest.partition(b"\001")
        records = records or parse_sidecar(side, bucket, name)
        taken = raw if raw.strip() else b""
        records_out = sizes.split(b"\0")
        if checksum:
            listed = None
        elif b"!" in records_out:  # the listing failed (an unreadable subdirectory): list_sizes says why
            listed = files.list_sizes(conn, directory)
        else:
            listed = files.parse_sizes(records_out)
    if not records and not taken:
        return Recorded({}, b"", {})
    found = files.hash_tree(conn, directory) if checksum else listed or {}
    return Recorded(records, taken, found)


def look_ahead(config: Config, conn: Connection, journal: Journal,
               checksum: bool) -> tuple[TargetFacts, Ahead, dict[str, dict[str, int]]]:
    """The target's facts, and on_target for each source.s3 entry's destination, known
    from relocate.yaml alone: taken while the bucket is still being listed (older
    versions' destinations are asked after the listing, by already_on_target). The facts,
    the receipts and the sizes under every destination come in one remote command (with
    `checksum`, hashes too, each its own; without a journal, the sidecar too, each its
    own), and the journal is read while the target answers (issue 18). Last, each
    destination's sizes as listed (Gathered.files_under)."""
    dests = list(dict.fromkeys((spec.bucket, spec.to) for spec in config.s3))
    sizes = [posixpath.join(config.root, to) for _, to in dests]
    probing = Probing(conn, config.root, write_dirs(config), config.allowed_links, sizes,
                      [layout.receipts_dir(config.root, to) for _, to in dests], write_files(config))
    tid = target_id(config, conn)
    journaled = {(bucket, to): journal.done(tid, bucket) for bucket, to in dests}
    facts, listed, taken = probing.result()
    if not _under_root(facts, config.root):
        return facts, {}, {}
    found: dict[tuple[str, str], dict[str, int] | None] = dict(zip(dests, listed))
    under = {to: sizes for (_, to), sizes in found.items() if sizes}
    return facts, {dest: on_target(config, conn, journal, dest[0], dest[1], dest[0], checksum, journaled[dest], raw,
                                   found.get(dest))
                   for dest, raw in zip(dests, taken)}, under


def _nothing_moved(config: Config, ahead: Ahead, exists: bool) -> bool:
    """No destination has a record, a receipt or (the root missing) anything at all; the
    older versions' destinations are only asked after the listing, so not with them."""
    if not config.s3 or any(spec.versions == "all" for spec in config.s3):
        return False
    return not exists or all(not r.records and not r.receipts for r in ahead.values())


def _under_root(facts: TargetFacts, root: str) -> bool:
    """target.root exists (else nothing is on the target yet)."""
    return facts.existing == root or facts.existing.startswith(root)


Done = dict[str, dict[str, DoneObject]]  # step id -> key -> record


def already_on_target(config: Config, conn: Connection, journal: Journal, inventory: Inventory,
                      checksum: bool = False, ahead: Ahead | None = None) -> tuple[Done, Done]:
    """Objects the journal (or a receipt) says were delivered, unchanged at the source
    since, and still on the target with the right size (verify re-hashes; this only has
    to be cheap), or with `checksum` the right sha256, hashed on the target now; and,
    apart, those of them only a receipt records, per step id of a destination that has
    receipts (kinds/objects.py journals them and folds the receipts into the sidecar).
    `ahead`: look_ahead's answers, taken while the source was listed."""
    result: Done = {}
    receipted: Done = {}
    for listing in inventory.buckets:
        sid = listing.step_id
        pre = (ahead or {}).get((listing.journal_bucket, listing.dest))
        known = pre if pre is not None else on_target(
            config, conn, journal, listing.journal_bucket, listing.dest, listing.spec.bucket, checksum)
        ok: dict[str, DoneObject] = {}
        result[sid] = ok
        missed = []
        for o in listing.objects:
            rec = known.records.get(o.key)
            if rec and _intact(rec, o, listing.dest, known.found, checksum):
                ok[o.key] = rec
            else:
                missed.append(o)
        if known.receipts:  # what the journal misses, a run killed before it journalled it may have placed
            receipted[sid] = {}
            taken = receipts.parse(known.receipts, listing.journal_bucket) if missed else {}
            for o in missed:
                rec = taken.get(o.key)
                if rec and _intact(rec, o, listing.dest, known.found, checksum):
                    ok[o.key] = receipted[sid][o.key] = rec
    return result, receipted


def _intact(rec: DoneObject, o: ObjectInfo, dest: str, found: dict[str, Any], checksum: bool) -> bool:
    """The record is of the object as listed now, and the target holds its file with that
    size (or with `checksum`, that sha256)."""
    return rec.etag == o.etag and rec.size == o.size \
        and found.get(layout.under(rec.path, dest)) == (rec.sha256 if checksum else o.size)


def parse_sidecar(raw: bytes, bucket: str, name: str) -> dict[str, DoneObject]:
    """What an earlier move recorded on the target itself: lets a fresh machine (a CI
    runner without the journal) resume instead of re-sending everything. Each record
    was hashed by the target when it landed; sizes are re-checked by the caller.
    `bucket` is the journal's name (`<bucket>#versions` for older versions), `name` the
    bucket's own as the sidecar says it."""
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
        if doc.get("bucket") != name:
            return {}
        entries = (ObjectEntry.from_dict(o) for o in doc.get("objects", []))
        return {e.journal_key: e.done(bucket) for e in entries}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}  # a damaged sidecar only costs a re-send


def write_dirs(config: Config) -> list[str]:
    """Every directory under the root the move writes into (checked by the plan for links)."""
    rels = [".relocate/lock", ".relocate/buckets", ".relocate/staging", ".relocate/receipts"]
    for d in pathrules.destinations(config.data):
        rels.append(d.rel if d.kind == "dir" else posixpath.dirname(d.rel))
    if config.data.get("deploy"):
        rels += ["shared", "shared/run", "shared/log"]  # the command runtime's pid file and log
    return [posixpath.join(config.root, r) for r in dict.fromkeys(rels) if r]


def write_files(config: Config) -> list[str]:
    """Every file under the root relocate.yaml makes the move write (env files, deploy's
    `current` and log file): the plan checks that no directory stands there."""
    return [posixpath.join(config.root, d.rel) for d in pathrules.destinations(config.data) if d.kind in ("env", "file")]


def list_source(config: Config, aws: Aws) -> Future[Inventory]:
    """take_inventory on a thread of its own, started before the target's SSH login: the
    source's listing (its S3 client's creation, its requests and their parsing) overlaps
    the login, the probe and the journal read, and a rerun waits for the longer of the
    two, not for both (issue 18). A daemon thread: a login that fails is reported at once,
    not after a long listing."""
    listed: Future[Inventory] = Future()

    def run() -> None:
        try:
            inventory = take_inventory(config, aws)
            for b in inventory.buckets if log.isEnabledFor(logging.DEBUG) else ():  # the sums cost a pass
                log.debug("listed s3://%s/%s (%s): %d object(s), %d byte(s)", b.spec.bucket, b.spec.prefix, b.kind,
                          len(b.objects), sum(o.size for o in b.objects))
            listed.set_result(inventory)
        except BaseException as exc:  # noqa: BLE001 - raised again by listed.result(), on the caller's thread
            listed.set_exception(exc)

    threading.Thread(target=run, name="inventory", daemon=True).start()
    return listed


def gather(config: Config, aws: Aws, conn: Connection, checksum: bool = False,
           listed: Future[Inventory] | None = None, first_move: Callable[[], None] | None = None) -> Gathered:
    """`listed`: list_source's, when the caller started the listing already. The target
    connection stays on this thread. `first_move` is called, on this thread, as soon as the
    target and the journal show that nothing of any bucket was moved yet (whatever the
    source lists is then all to send), while the listing may still run: `move` starts
    the bulk lanes' logins there, so they overlap the listing instead of following it."""
    listed = listed or list_source(config, aws)
    journal = journal_for(config, readonly=True)  # read only: the move's own writer checkpoints, once
    try:
        facts, ahead, under = look_ahead(config, conn, journal, checksum)
        exists = _under_root(facts, config.root)
        if first_move is not None and _nothing_moved(config, ahead, exists):
            first_move()
        inventory = listed.result()
        done, receipted = already_on_target(config, conn, journal, inventory, checksum, ahead) if exists else ({}, {})
    finally:
        journal.close()
    env = env_on_target(config, conn, inventory) if exists else EnvOnTarget()
    return Gathered(inventory, facts, done, env.record, env.same, receipted, env.dirs, under)
