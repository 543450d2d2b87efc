"""Components: one kind of thing to move (a database, DNS zones, host files, a deploy),
each going through the same four stages as the S3/env core:

    gather (read-only: source and target facts) -> plan (pure: steps, blockers)
    -> execute (writes on the target, one step at a time) -> verify (re-checks)

A new kind is a new module listed in `MODULES` with a `Component` subclass named
`COMPONENT`; nothing else in relocate changes.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from relocate.config import Config
from relocate.plan.model import Finding, Step

# Order matters: it is the order steps are planned and executed in.
MODULES = ("prepare", "databases", "hostfiles", "dns", "deploy")


@dataclass
class Context:
    """What a component may use. `conn` is the target; `aws` reads the source."""

    config: Config
    aws: Any  # relocate.sources.aws.Aws
    conn: Any  # relocate.targets.ssh.Connection
    target_id: str
    accept_new_host_key: bool = False
    snapshot_dir: Any = None  # pathlib.Path of the snapshot being written (execute only)
    identity: Any = None  # age identity for secrets at rest (execute/verify)
    flags: dict[str, Any] = field(default_factory=dict)  # command-line switches components read


@dataclass
class PlanPart:
    steps: list[Step] = field(default_factory=list)
    blockers: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)


@dataclass
class Outcome:
    changed: bool  # something was written on the target
    manifest: dict[str, Any] = field(default_factory=dict)  # recorded under manifest.components[name][step.id]
    warnings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # items that did not make it: the move exits 4


@dataclass
class Check:
    label: str
    ok: bool
    detail: str = ""


class Component(ABC):
    name: ClassVar[str]

    @abstractmethod
    def enabled(self, config: Config) -> bool:
        """Whether relocate.yaml asks for this component at all."""

    @abstractmethod
    def gather(self, ctx: Context) -> Any:
        """Read-only look at source and target; the result feeds plan and execute."""

    @abstractmethod
    def plan(self, ctx: Context, gathered: Any) -> PlanPart:
        """Pure: steps (kind = self.name), blockers and warnings."""

    @abstractmethod
    def execute(self, ctx: Context, gathered: Any, step: Step) -> Outcome:
        """Carry out one planned step; safe to run again after an interruption."""

    def verify(self, ctx: Context, manifest: dict[str, Any]) -> list[Check]:
        """Re-check the target against what execute recorded (manifest[step.id])."""
        return []


def load_components(config: Config) -> list[Component]:
    found: list[Component] = []
    for name in MODULES:
        try:
            mod = importlib.import_module(f"relocate.components.{name}")
        except ModuleNotFoundError as exc:  # not written yet
            if exc.name != f"relocate.components.{name}":
                raise
            continue
        component: Component = mod.COMPONENT()
        if component.enabled(config):
            found.append(component)
    return found


def by_name(components: list[Component]) -> dict[str, Component]:
    return {c.name: c for c in components}
