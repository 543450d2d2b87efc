"""The `shards` section of a saved plan, checked where a plan file is loaded (pure).

Every command that reads a sharded plan (`move --shard`, `move --finish`, `status`,
`verify`, `shards emit`) trusts the section only after `check_section`: a section that was
edited or damaged is refused with exit 2 and one line naming the field, never an internal
error halfway through a move. What is checked is what the partition guarantees
(shards/partition.py):

- `count` an integer >= 1, `id` a string, `steps` an object of N ranges per entry;
- each range an object whose `index` is its position (0..N-1, each once), `start` and
  `end` strings or null, `objects` and `bytes` non-negative integers, `digest` a string;
- the ranges tile the key space: shard 0 starts at "", an empty shard (`start: null`)
  has no end and nothing in it, each non-empty shard ends where the next non-empty one
  starts (after its own start), and the last non-empty one has no end;
- `id` is the digest of the ranges (`section_id`): any other edit of a range is refused too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from relocate.errors import ConfigError

_HINT = "make it again with `relocate plan --shards N -o plan.json` (an edited or damaged plan is not trusted)"


def section_id(steps: dict[str, Any]) -> str:
    """The shards `id`: the digest of every entry's ranges, which the target's records are tied to."""
    return hashlib.sha256(json.dumps(steps, sort_keys=True).encode()).hexdigest()[:16]


def _bad(where: str, what: str) -> ConfigError:
    return ConfigError(f"{where}: damaged plan file: {what}", hint=_HINT)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def as_count(value: Any) -> int | None:
    """A count as the target's shard records hold it (a non-negative int, not a bool), or
    None for anything else (a record edited, damaged or of another version)."""
    return value if _is_int(value) and value >= 0 else None


def check_section(section: Any, where: str = "plan file", *, count_only: bool = False) -> None:
    """Refuse (ConfigError, exit 2) a shards section that is not what `plan --shards N` writes.
    `count_only` (`shards emit`, which reads nothing but N): a section holding neither `id`
    nor `steps` needs only a valid `count`; one holding either is checked whole."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise _bad(where, f"`shards` is {_show(section)}, expected an object (or null)")
    if count_only and "id" not in section and "steps" not in section:
        count = section.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise _bad(where, f"`shards.count` is {_show(count)}, expected an integer of at least 1")
        return
    for name in ("count", "id", "steps"):
        if name not in section:
            raise _bad(where, f"`shards.{name}` is missing")
    count = section["count"]
    if not _is_int(count) or count < 1:
        raise _bad(where, f"`shards.count` is {_show(count)}, expected an integer of at least 1")
    if not isinstance(section["id"], str) or not section["id"]:
        raise _bad(where, f"`shards.id` is {_show(section['id'])}, expected the ranges' digest (a string)")
    steps = section["steps"]
    if not isinstance(steps, dict):
        raise _bad(where, f"`shards.steps` is {_show(steps)}, expected an object of ranges per s3 step")
    for sid, ranges in steps.items():
        _check_ranges(where, f"shards.steps[{json.dumps(sid, ensure_ascii=False)}]", ranges, count)
    est = section.get("est_seconds")
    if est is not None and (not isinstance(est, list) or len(est) != count
                            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in est)):
        raise _bad(where, f"`shards.est_seconds` is {_show(est)}, expected {count} number(s)")
    if section_id(steps) != section["id"]:
        raise _bad(where, f"`shards.id` {section['id']} is not the digest of its ranges ({section_id(steps)}): "
                          "the ranges were edited after planning")


def _check_ranges(where: str, name: str, ranges: Any, count: int) -> None:
    if not isinstance(ranges, list):
        raise _bad(where, f"`{name}` is {_show(ranges)}, expected a list of {count} ranges")
    if len(ranges) != count:
        raise _bad(where, f"`{name}` has {len(ranges)} range(s), but `shards.count` is {count}")
    live: list[tuple[int, str, str | None]] = []
    for pos, r in enumerate(ranges):
        at = f"{name}[{pos}]"
        if not isinstance(r, dict):
            raise _bad(where, f"`{at}` is {_show(r)}, expected a range object")
        for field in ("index", "start", "end", "objects", "bytes", "digest"):
            if field not in r:
                raise _bad(where, f"`{at}.{field}` is missing")
        if not _is_int(r["index"]) or r["index"] != pos:
            raise _bad(where, f"`{at}.index` is {_show(r['index'])}, expected {pos} (indexes 0..{count - 1}, each once, in order)")
        for field in ("start", "end"):
            if r[field] is not None and not isinstance(r[field], str):
                raise _bad(where, f"`{at}.{field}` is {_show(r[field])}, expected a key (a string) or null")
        for field in ("objects", "bytes"):
            if not _is_int(r[field]) or r[field] < 0:
                raise _bad(where, f"`{at}.{field}` is {_show(r[field])}, expected a non-negative integer")
        if not isinstance(r["digest"], str):
            raise _bad(where, f"`{at}.digest` is {_show(r['digest'])}, expected a string")
        start, end = r["start"], r["end"]
        if start is None:  # an empty shard: nothing in it, no end
            if end is not None or r["objects"] or r["bytes"]:
                raise _bad(where, f"`{at}` has `start: null` (an empty shard) but an end or objects")
            continue
        if end is not None and not start < end:
            raise _bad(where, f"`{at}.end` {_show(end)} is not after its start {_show(start)}")
        live.append((pos, start, end))
    if not live or live[0][0] != 0 or live[0][1] != "":
        raise _bad(where, f"`{name}[0].start` must be \"\" (shard 0 starts before every key)")
    for (pos, _, end), (nxt, start, _) in zip(live, live[1:]):
        if end != start:
            raise _bad(where, f"`{name}[{pos}].end` {_show(end)} is not `{name}[{nxt}].start` {_show(start)}: "
                              "the ranges must cover every key once")
    if live[-1][2] is not None:
        raise _bad(where, f"`{name}[{live[-1][0]}].end` is {_show(live[-1][2])}: the last non-empty shard has no end (null)")


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
