"""The one owner of the cyclic garbage collector's settings (issue 18).

Modules (boto3's, paramiko's: hundreds of thousands of objects), clients, the listing
and the plan live as long as a move; none of them is garbage, yet every full collection
the transfer's per-object garbage triggers walks them all again. So: no collection while
a command's modules load or while the gather reads (`paused`), and what is alive then is
frozen out of the collector's sight (`freeze`, `frozen`).

`gc.unfreeze()` hands back everything ever frozen, not just what its caller froze: the
transfer's own unfreeze used to undo the CLI's freeze after the first bucket, and the
collector walked the modules again. Here a block only unfreezes in a process that lives
on after the move (tests, a library caller running many moves: frozen garbage is never
collected there, so it must not pile up); the process's own entry point, which exits
right after the command without tearing down (cli._leave), keeps everything frozen,
and alone freezes for the process's life (`freeze`).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

_state = {"for_life": False}  # the process exits after this command: nothing frozen is handed back


def own_process() -> None:
    """Called by the process's entry point (cli.main with no argv): frozen stays frozen."""
    _state["for_life"] = True


def freeze() -> None:
    """Everything alive now (a command's modules just imported; after the gather, boto3's,
    the clients, the listing) lives as long as the process: out of the collector's sight
    when the process owns the freeze (own_process). A process that lives on (tests, a
    library caller) keeps its collector as it was: frozen garbage is never collected."""
    if _state["for_life"]:
        gc.freeze()


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection in the block (imports, the gather's listing and journal
    read: objects by the hundred thousand, none garbage); reference counting still frees."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextmanager
def frozen() -> Iterator[None]:
    """Everything alive when the block starts (a transfer's modules, clients, listing,
    plan) lives until it ends: frozen for the block, and after it too when the process
    owns the freeze (own_process); otherwise handed back to the collector."""
    gc.freeze()
    try:
        yield
    finally:
        if not _state["for_life"]:
            gc.unfreeze()
