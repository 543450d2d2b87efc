"""The one gate before any change on the target.

Every planned step says in `Step.change` how it changes the target ("" when it changes
nothing). Before the first change the runner needs an `Approval` of exactly those
changes: `confirm` lists them and asks once, or takes `--yes`; without a terminal (or
under `--no-input`) and without `--yes` it refuses (exit 2). `move` and `rollback` go
through it; the runner (execute/runner.py) refuses a plan whose changes were not
approved, so nothing that changes the target runs around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from relocate.errors import UsageError


@dataclass(frozen=True)
class Approval:
    changes: tuple[str, ...]
    how: str  # "--yes" | "confirmed" | "nothing to change": written in the audit line


NO_TERMINAL = "no terminal to ask on"


def confirm(changes: Sequence[str], *, action: str, target: str, yes: bool, can_prompt: bool,
            ask: Callable[[str], bool], show: Callable[[str], None], why_not: str = NO_TERMINAL) -> Approval:
    """An Approval of `changes`. `action` names the command in the refusal ("move", "roll
    back"); `why_not`: why it cannot ask when `can_prompt` is false (the CLI knows: no
    terminal, or --no-input on one). A "no" is an error like any other (exit 2, one line,
    and under --json the error document: cli/__init__.py)."""
    listed = tuple(changes)
    if not listed:
        return Approval(listed, "nothing to change")
    if yes:
        return Approval(listed, "--yes")
    if not can_prompt:
        raise UsageError(f"refusing to {action} without confirmation: {why_not}", hint="pass --yes")
    show(f"Changes on {target}:")
    for change in listed:
        show(f"  - {change}")
    if not ask(f"Make {len(listed)} change(s) on {target}?"):
        raise UsageError(f"not confirmed: nothing was changed on {target}")
    return Approval(listed, "confirmed")


def require(approval: Approval | None, changes: Sequence[str]) -> None:
    """The runner's check: these changes were approved, all of them."""
    if approval is None or not set(changes) <= set(approval.changes):
        raise UsageError("refusing to change the target: the plan's changes were not approved", hint="pass --yes")
