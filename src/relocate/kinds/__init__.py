"""Kinds: every kind of thing relocate moves (S3 objects, env files, packages, databases,
host files, DNS zones, a deploy) is one module here with one `Kind` subclass, and each
goes through the same four stages:

    gather (read-only: source and target facts) -> plan (pure: steps, blockers)
    -> apply (one step, called only by the runner, execute/runner.py) -> verify (re-checks)

A new kind is a new module listed in `MODULES` whose `KIND_CLASS` names its `Kind`
subclass; nothing else in relocate changes (docs/architecture.md walks through one).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from relocate.config import Config
from relocate.plan.build import Rates
from relocate.plan.model import Finding, PlanPart, Step
from relocate.settings import Login, Settings, Switches

__all__ = ["Check", "Context", "Finding", "Kind", "MODULES", "Outcome", "PlanPart", "Run", "by_name", "load_kinds"]

# The registry. Order is only the order kinds are gathered and planned in: the plan orders
# its steps itself (plan/deadline.py), and the runner walks the plan's order.
MODULES = ("env", "objects", "packages", "databases", "hostfiles", "dns", "deploy")

# The relocate.yaml sections that switch each kind on (its `enabled` reads them). A kind
# none of whose sections is set is not even imported: a move of objects alone does not
# pay for the DNS, database and deploy modules and their libraries (issue 18, a rerun in
# about a second). A kind missing here is always imported and asked.
SECTIONS = {"env": ("source.parameters", "source.secrets"), "objects": ("source.s3",), "packages": ("target.prepare",),
            "databases": ("source.databases",), "hostfiles": ("source.hosts",), "dns": ("source.dns",),
            "deploy": ("deploy",)}


@dataclass
class Run:
    """What the runner hands the kinds while a move runs (execute/runner.py)."""

    report: Any  # execute.runner.MoveReport: counts as they happen, so an error still has them
    opts: Settings  # the one settings value the CLI built
    snap: Any  # snapshot.store.Snapshot being written
    journal: Any  # snapshot.journal.Journal
    staging: str  # the target's staging directory for this move
    progress: Callable[[str, int, int], None]
    landed: dict[str, set[str]] = field(default_factory=dict)  # destination -> keys the target hashed on arrival (this run or one the journal records)
    secret_files: dict[str, bytes] = field(default_factory=dict)  # env path -> content, encrypted into the snapshot

    def event(self, event: dict[str, Any]) -> None:
        if self.opts.on_event is not None:
            self.opts.on_event(event)


@dataclass
class Context:
    """What a kind may use. `conn` is the target; `aws` reads the source."""

    config: Config
    aws: Any  # relocate.sources.aws.Aws
    conn: Any  # relocate.ssh.connection.Connection
    target_id: str
    login: Login = field(default_factory=Login)  # how to log in to source hosts and bastions
    snapshot_dir: Any = None  # pathlib.Path of the snapshot being written (apply) or read (verify)
    identity: Any = None  # age identity for secrets at rest (apply/verify)
    switches: Switches = field(default_factory=Switches)  # `move`'s switches kinds read (relocate.settings)
    checksum: bool = False  # `move --checksum`: what is already on the target is re-hashed there, not trusted by its listing
    gathered: Any = None  # execute.gather.Gathered: the S3 inventory, target facts, what is already there
    rates: Rates = field(default_factory=Rates)  # throughput assumptions for estimates (plan --probe measures them)
    run: Run | None = None  # set by the runner during a move


@dataclass
class Outcome:
    changed: bool  # something was written on the target
    manifest: dict[str, Any] = field(default_factory=dict)  # what Kind.record files in the snapshot manifest
    warnings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # items that did not make it: the move exits 4
    # What record() files instead of `manifest` when building it costs (the s3 kind: an entry
    # per object): called only when the run commits a snapshot, never by a rerun with nothing to do.
    build: Callable[[], dict[str, Any]] | None = None


@dataclass
class Check:
    label: str
    ok: bool
    detail: str = ""


class Kind(ABC):
    name: ClassVar[str]  # the kind of its steps (Step.kind)

    @abstractmethod
    def enabled(self, config: Config) -> bool:
        """Whether relocate.yaml asks for this kind at all."""

    @abstractmethod
    def gather(self, ctx: Context) -> Any:
        """Read-only look at source and target; the result feeds plan and apply."""

    @abstractmethod
    def plan(self, ctx: Context, gathered: Any) -> PlanPart:
        """Pure: steps (kind = self.name, each saying in `change` how it changes the
        target), blockers and warnings."""

    @abstractmethod
    def apply(self, ctx: Context, gathered: Any, step: Step) -> Outcome:
        """Carry out one planned step; safe to run again after an interruption. Only the
        runner calls this, after the gate approved the plan's changes."""

    def leave(self, ctx: Context, gathered: Any, step: Step) -> Outcome:
        """The step may not start (`move --deadline`): record what is already there."""
        return Outcome(False)

    def record(self, manifest: dict[str, Any], step: Step, outcome: Outcome) -> None:
        """File the outcome in the snapshot manifest (verify reads it back)."""
        manifest.setdefault("components", {}).setdefault(self.name, {})[step.id] = outcome.manifest

    def verify(self, ctx: Context, manifest: dict[str, Any]) -> list[Check]:
        """Re-check the target against what apply recorded (manifest[step.id])."""
        return []


def load_kinds(config: Config) -> list[Kind]:
    found: list[Kind] = []
    for name in MODULES:
        if name in SECTIONS and not any(_section(config.data, path) for path in SECTIONS[name]):
            continue
        mod = importlib.import_module(f"relocate.kinds.{name}")
        kind: Kind = mod.KIND_CLASS()
        if kind.enabled(config):
            found.append(kind)
    return found


def _section(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def by_name(kinds: list[Kind]) -> dict[str, Kind]:
    return {k.name: k for k in kinds}
