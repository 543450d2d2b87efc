"""Remote shell lines, built from tokens and quoted in exactly one place.

Nothing else in relocate formats a remote command with an f-string: a key named
`$(rm -rf ~)` or a path with a quote in it is just another token here.
"""

from __future__ import annotations

import shlex
from typing import Sequence

Command = Sequence[str]


def line(argv: Command) -> str:
    """One command: every token quoted."""
    if not argv:
        raise ValueError("empty command")
    return " ".join(shlex.quote(str(t)) for t in argv)


def pipe(*commands: Command) -> str:
    return " | ".join(line(c) for c in commands)


def all_of(*commands: Command) -> str:
    """Run each in turn, stop at the first failure."""
    return " && ".join(line(c) for c in commands)


def script(body: str, *args: str) -> tuple[str, bytes]:
    """A multi-line POSIX sh script sent on stdin (`sh -s -- ARGS`), arguments quoted.

    Scripts are constants in relocate's source; only their arguments vary, and those
    go through `line` like any token. Returns (command line, stdin bytes)."""
    return line(["sh", "-s", "--", *args]), body.encode()


# What each program uses from the others: sent in front of it, in this order.
_SHARED = {"receiver_agent": ("dropbehind",)}


def program(name: str) -> str:
    """The source of one of relocate's programs that run on the target
    (targets/<name>.py, standard library only), to pass as `python3 -I -S -c SOURCE`,
    with the files it shares code with (_SHARED) in front of it: one `-c`, no modules
    to install on the target."""
    from importlib import resources

    here = resources.files("relocate.targets")
    return "\n".join(here.joinpath(f"{part}.py").read_text(encoding="utf-8") for part in (*_SHARED.get(name, ()), name))
