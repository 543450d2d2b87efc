"""Table tests for the planner (issue 17), in the manner of pyinfra's operation tests:
gathered facts in (listings, what is already on the target, target facts), steps, their
order, how each changes the target, and blockers out. One row per situation. Pure: no
server, no clock (the time is an argument)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relocate.config import BucketSpec, ParamSpec, SecretSpec, parse_config
from relocate.kinds.env import plan_env
from relocate.kinds.objects import plan_objects
from relocate.plan.build import build_plan
from relocate.plan.model import Finding, PlanPart, Step
from relocate.sources.inventory import BucketListing, Inventory, NamedVersion, ObjectInfo, ParamListing, SecretListing
from relocate.targets.facts import TargetFacts

NOW = 1_800_000_000.0
CONFIG = parse_config("version: 1\ntarget: {ssh: {host: h}, root: /srv/a}\n", Path("r.yaml"), env={})


def _bucket(name: str, keys: int, priority: str = "normal", to: str | None = None) -> BucketListing:
    objs = [ObjectInfo(f"k{i}", 1000, f"e{i}", 0.0) for i in range(keys)]
    return BucketListing(BucketSpec(name, "", to or f"data/{name}", priority=priority), objs)


def _facts(**kw) -> TargetFacts:
    base = dict(os="Linux", user="u", existing="/srv/a", writable=True, free_bytes=10**12, tools={"tar": True})
    return TargetFacts(**{**base, **kw})


def _plan(inventory: Inventory, facts: TargetFacts | None = None, done: dict[str, set[str]] | None = None,
          env_same: frozenset[str] = frozenset(), extra: tuple[PlanPart, ...] = ()):
    parts = (plan_env(inventory, env_same), plan_objects(inventory, done or {}), *extra)
    return build_plan(CONFIG, inventory, facts or _facts(), target="t", parts=parts, now=NOW)


ENV = Inventory(parameters=[ParamListing(ParamSpec("/app/", "shared/app.env"), [NamedVersion("/app/A", "1"), NamedVersion("/app/B", "2")])],
                secrets=[SecretListing(SecretSpec("db", "shared/app.env"), NamedVersion("db", "v1"))])

ROWS = [
    # (situation, inventory, done keys, env files unchanged, target facts,
    #  expected step ids in order, expected changes, expected blocker codes)
    ("two buckets: critical first, bulk last, whatever relocate.yaml says",
     Inventory(buckets=[_bucket("bulk", 2, "bulk"), _bucket("norm", 1), _bucket("crit", 1, "critical")]), {}, frozenset(), _facts(),
     ["s3:crit/", "s3:norm/", "s3:bulk/", "verify"],
     ["write 1 file(s) (1000 B) under data/crit", "write 1 file(s) (1000 B) under data/norm",
      "write 2 file(s) (2.0 KiB) under data/bulk"], []),
    ("everything already on the target: nothing changes, nothing to ask",
     Inventory(buckets=[_bucket("m", 2)]), {"s3:m/": {"k0", "k1"}}, frozenset(), _facts(),
     ["s3:m/", "verify"], [], []),
    ("half there: only the rest is written",
     Inventory(buckets=[_bucket("m", 3)]), {"s3:m/": {"k0"}}, frozenset(), _facts(),
     ["s3:m/", "verify"], ["write 2 file(s) (2.0 KiB) under data/m"], []),
    ("env files go before any object",
     Inventory(buckets=[_bucket("m", 1)], parameters=ENV.parameters, secrets=ENV.secrets), {}, frozenset(), _facts(),
     ["env:shared/app.env", "s3:m/", "verify"],
     ["write env file shared/app.env (0600, from 2 parameter(s) and 1 secret(s))", "write 1 file(s) (1000 B) under data/m"], []),
    ("an env file the target holds as it would be written: no change",
     ENV, {}, frozenset({"shared/app.env"}), _facts(),
     ["env:shared/app.env", "verify"], [], []),
    ("a full disk blocks",
     Inventory(buckets=[_bucket("m", 1)]), {}, frozenset(), _facts(free_bytes=1000),
     ["s3:m/", "verify"], ["write 1 file(s) (1000 B) under data/m"], ["disk"]),
    ("an unwritable root and a missing tool block",
     Inventory(buckets=[_bucket("m", 1)]), {}, frozenset(), _facts(writable=False, tools={"tar": False}),
     ["s3:m/", "verify"], ["write 1 file(s) (1000 B) under data/m"], ["tools", "writable"]),
    ("a symlinked directory where the move writes blocks",
     Inventory(buckets=[_bucket("m", 1)]), {}, frozenset(), _facts(links=["/srv/a/data -> /etc"]),
     ["s3:m/", "verify"], ["write 1 file(s) (1000 B) under data/m"], ["symlink"]),
]


@pytest.mark.parametrize("situation, inventory, done, env_same, facts, ids, changes, blockers", ROWS, ids=[r[0] for r in ROWS])
def test_planner_table(situation, inventory, done, env_same, facts, ids, changes, blockers) -> None:
    plan = _plan(inventory, facts, done, env_same)
    assert [s.id for s in plan.steps] == ids
    assert plan.changes == changes
    assert sorted(b.code for b in plan.blockers) == blockers
    assert plan.ready == (not blockers)
    assert plan.created_at == "2027-01-15T08:00:00Z"  # the time given, not the clock's


def test_deadline_bound_is_decided_by_the_plan() -> None:
    plan = _plan(Inventory(buckets=[_bucket("c", 1, "critical"), _bucket("n", 1), _bucket("b", 1, "bulk")]))
    assert {s.id: s.deadline_bound for s in plan.steps} == {"s3:c/": False, "s3:n/": True, "s3:b/": True, "verify": False}


def test_a_plan_over_many_objects_says_what_a_plain_move_holds_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MEMORY_WARN_OBJECTS listed objects (counted over every bucket, done or not: the
    listing is held either way) the plan warns, with the memory a plain move needs; it
    never blocks. (The threshold is lowered here so the inventory stays small.)"""
    from relocate.plan import build

    monkeypatch.setattr(build, "MEMORY_WARN_OBJECTS", 5)
    small = _plan(Inventory(buckets=[_bucket("a", 3), _bucket("b", 2)]), done={"s3:a/": {"k0", "k1", "k2"}})
    assert [w.code for w in small.warnings] == []
    big = _plan(Inventory(buckets=[_bucket("a", 4), _bucket("b", 2)]), done={"s3:a/": {"k0", "k1", "k2", "k3"}})
    memory = [w.message for w in big.warnings if w.code == "memory"]
    assert memory and memory[0].startswith("6 objects:") and "--shards" in memory[0]
    assert f"{build._h(6 * build.MOVE_BYTES_PER_OBJECT)} of memory" in memory[0]  # all six, done or not
    assert big.ready
    parts = (plan_objects(Inventory(buckets=[_bucket("a", 4), _bucket("b", 2)]), {}),)
    sharded = build_plan(CONFIG, Inventory(buckets=[_bucket("a", 4), _bucket("b", 2)]), _facts(), target="t",
                         parts=parts, now=NOW, sharded=True)
    assert [w.code for w in sharded.warnings if w.code == "memory"] == []  # shard workers stream their ranges


def test_other_kinds_steps_take_their_place_in_the_order() -> None:
    """Steps from the other kinds (packages, databases, deploy) slot in by class: packages
    before everything, databases before objects, deploy after them."""
    extra = PlanPart(steps=[Step("deploy", "deploy", "r.tgz", "releases/", change="switch"),
                            Step("db:app", "databases", "pg", "pg", change="replace database app"),
                            Step("prepare", "prepare", "pkgs", "/", change="install 1 package(s) as root: tar")],
                     blockers=[Finding("prepare", "no sudo")])
    plan = _plan(Inventory(buckets=[_bucket("m", 1)]), extra=(extra,))
    assert [s.id for s in plan.steps] == ["prepare", "db:app", "s3:m/", "deploy", "verify"]
    assert plan.changes[0] == "install 1 package(s) as root: tar" and plan.changes[-1] == "switch"
    assert [b.code for b in plan.blockers] == ["prepare"]


def test_plan_renders_its_changes_on_a_captured_console() -> None:
    from rich.console import Console

    from relocate.cli import render

    console = Console(record=True, width=200)
    render.plan(console, _plan(Inventory(buckets=[_bucket("m", 2)])))
    text = console.export_text()
    assert "s3:m/" in text or "s3://m/" in text
    assert "Ready" in text
