"""Which environment variable each batch engine sets to a worker's index.

`relocate move plan.json --shard auto` reads them in this order; the first one set wins.
`base` is the index the engine gives its first worker (GitLab's `parallel:` counts from
1); Slurm's array may start anywhere, so SLURM_ARRAY_TASK_MIN is subtracted when set.
The emitters (`relocate shards emit`) and docs/scale.md import this table.
"""

from __future__ import annotations

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


def shard_from_env(count: int, env: Mapping[str, str]) -> tuple[int, str]:
    """(shard index in 0..count-1, the variable it came from). UsageError (exit 2) when none
    of the variables is set, or the first one set does not name a shard of this plan. The CLI
    passes its environment (the library reads none: relocate.settings)."""
    for engine in ENGINES:
        raw = env.get(engine.variable, "").strip()
        if not raw:
            continue
        base = engine.base
        if engine.min_variable and env.get(engine.min_variable, "").strip():
            try:
                base = int(env[engine.min_variable])
            except ValueError:
                raise UsageError(f"--shard auto: {engine.min_variable}={env[engine.min_variable]!r} is not an integer") from None
        try:
            index = int(raw) - base
        except ValueError:
            raise UsageError(f"--shard auto: {engine.variable}={raw!r} is not an integer") from None
        if not 0 <= index < count:
            raise UsageError(f"--shard auto: {engine.variable}={raw} gives shard {index}, outside 0..{count - 1} "
                             f"(the plan has {count} shards)")
        return index, engine.variable
    raise UsageError(f"--shard auto: none of {', '.join(VARIABLES)} is set (or pass --shard K)")
