"""Which environment variable each batch engine sets to a worker's index.

`relocate move plan.json --shard auto` reads them in this order; the first one set wins.
`base` is the index the engine gives its first worker (GitLab's `parallel:` counts from
1); Slurm's array may start anywhere, so SLURM_ARRAY_TASK_MIN is subtracted when set.
The emitters (`relocate shards emit`) and docs/scale.md import this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from relocate.errors import UsageError


@dataclass(frozen=True)
class Engine:
    name: str
    variable: str
    base: int = 0  # subtracted from the value: the index of the engine's first worker
    min_variable: str = ""  # if set in the environment, its value is subtracted instead of `base`


ENGINES: tuple[Engine, ...] = (
    Engine("relocate", "RELOCATE_SHARD"),
    Engine("kubernetes", "JOB_COMPLETION_INDEX"),  # Indexed Job
    Engine("aws-batch", "AWS_BATCH_JOB_ARRAY_INDEX"),
    Engine("slurm", "SLURM_ARRAY_TASK_ID", min_variable="SLURM_ARRAY_TASK_MIN"),
    Engine("nomad", "NOMAD_ALLOC_INDEX"),
    Engine("gitlab", "CI_NODE_INDEX", base=1),  # `parallel: N` counts 1..N
)

VARIABLES = tuple(e.variable for e in ENGINES)


_CANONICAL = re.compile(r"0|[1-9][0-9]{0,17}")  # ASCII digits, no sign, no space, no leading zero


def canonical_index(text: str) -> int | None:
    """A shard index or engine variable as a number: only plain ASCII decimals (`0`, `7`,
    `12`; not `01`, `+1`, ` 1`, `1_0` or `١`, which Python's int() would take), as the
    engines write them. None for anything else (or a number past 18 digits)."""
    return int(text) if _CANONICAL.fullmatch(text) else None


def shard_from_env(count: int, env: Mapping[str, str]) -> tuple[int, str]:
    """(shard index in 0..count-1, the variable it came from). UsageError (exit 2) when none
    of the variables is set, or the first one set does not name a shard of this plan. The CLI
    passes its environment (the library reads none: relocate.settings). An empty variable
    counts as unset, and so does RELOCATE_SHARD=auto (it is also `--shard`'s own variable:
    `auto` there means "read the engines' variables")."""
    for engine in ENGINES:
        raw = env.get(engine.variable, "")
        if not raw or (engine.variable == "RELOCATE_SHARD" and raw == "auto"):
            continue
        base = engine.base
        if engine.min_variable and env.get(engine.min_variable, ""):
            low = canonical_index(env[engine.min_variable])
            if low is None:
                raise UsageError(f"--shard auto: {engine.min_variable}={env[engine.min_variable]!r} is not a plain "
                                 "decimal number (ASCII digits, no sign or leading zero)")
            base = low
        value = canonical_index(raw)
        if value is None:
            raise UsageError(f"--shard auto: {engine.variable}={raw!r} is not a plain decimal number "
                             "(ASCII digits, no sign or leading zero)")
        index = value - base
        if not 0 <= index < count:
            raise UsageError(f"--shard auto: {engine.variable}={raw} gives shard {index}, outside 0..{count - 1} "
                             f"(the plan has {count} shards)")
        return index, engine.variable
    others = ", ".join(v for v in VARIABLES if v != "RELOCATE_SHARD")
    if env.get("RELOCATE_SHARD") == "auto":
        raise UsageError(f"--shard auto (RELOCATE_SHARD=auto): none of {others} is set (or pass --shard K)")
    raise UsageError(f"--shard auto: none of {', '.join(VARIABLES)} is set (or pass --shard K)")
