"""YAML with line numbers, and a small validator that collects path-qualified errors.

Profiles are written by hand and by users; a wrong one must say *where*:
`providers/hetzner.yaml:12: categories.spam.stance: must be one of ...`.
We parse once with PyYAML's SafeLoader (safe_load semantics: no python tags),
keep the node tree only to map each path to its line, and report every error in
a file rather than stopping at the first, so `relocate profiles lint` lists all.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from relocate.errors import ConfigError

Path_ = tuple[str | int, ...]

# Anything PyYAML's safe constructors may raise on hostile input besides YAMLError:
# bad timestamps (ValueError), huge nesting (RecursionError), odd keys (TypeError).
_PARSE_FAILURES = (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError, MemoryError)


class ProfileError(ConfigError):
    """One or more profile files are invalid; `errors` holds every line."""

    def __init__(self, errors: list[str]) -> None:
        more = f" (and {len(errors) - 1} more; run `relocate profiles lint`)" if len(errors) > 1 else ""
        super().__init__(errors[0] + more)
        self.errors = errors


@dataclass
class YamlDoc:
    """Parsed data plus where each path starts in the file (1-based lines)."""

    name: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int:
        # An absent key has no line of its own: point at the nearest parent that exists.
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


def _index(node: yaml.Node, path: Path_, out: dict[Path_, int], seen: set[int]) -> None:
    # `seen` stops alias bombs: a node reached twice is indexed once, so the walk stays linear.
    if id(node) in seen:
        return
    seen.add(id(node))
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                out.setdefault(path + (str(key.value),), key.start_mark.line + 1)
                _index(value, path + (str(key.value),), out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, path + (i,), out, seen)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:200]


def parse_yaml(text: str | bytes, name: str) -> YamlDoc:
    """Parse one YAML document safely; every failure becomes a ConfigError naming the file."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # the reader checks characters here, so it may raise too
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        lines: dict[Path_, int] = {}
        if node is not None:
            _index(node, (), lines, set())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{name}{where}: invalid YAML: {_one_line(exc.problem or exc.context)}") from None
    except _PARSE_FAILURES as exc:
        raise ConfigError(f"{name}: invalid YAML: {_one_line(exc) or type(exc).__name__}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDoc(name, data, lines)


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]+")


def dotted(path: Path_) -> str:
    """`categories.spam.stance`, `documents[2].url`; odd keys quoted so an error stays one line."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part[:40]!r}]"
    return out or "(top level)"


_DATE_PREFIX = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


class Validator:
    """Collects errors for one document; helpers return None when a value is wrong."""

    def __init__(self, doc: YamlDoc) -> None:
        self.doc = doc
        self.errors: list[str] = []

    def err(self, path: Path_, message: str) -> None:
        self.errors.append(f"{self.doc.name}:{self.doc.line(path)}: {dotted(path)}: {message}")

    def mapping(self, value: Any, path: Path_, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict | None:
        if not isinstance(value, dict):
            self.err(path, f"must be a mapping, not {_kind(value)}")
            return None
        allowed = required + optional
        for key in value:
            if not isinstance(key, str):
                self.err(path, f"keys must be strings, not {_kind(key)} {_one_line(key)!r}")
            elif key not in allowed and not key.startswith("x-"):
                near = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else f" (valid keys: {', '.join(allowed)})"
                self.err(path + (key,), f"unknown key{hint}")
        for key in required:
            if key not in value:
                self.err(path, f"missing required key {key!r}")
        return value

    def text(self, m: dict, key: str, path: Path_, *, required: bool = True, choices: tuple[str, ...] = ()) -> str | None:
        value = m.get(key)
        if value is None:
            if required and key in m:
                self.err(path + (key,), "must not be empty")
            return None
        if not isinstance(value, str) or not value.strip():
            self.err(path + (key,), f"must be a non-empty string, not {_kind(value)}")
            return None
        if choices and value not in choices:
            self.err(path + (key,), f"must be one of {', '.join(choices)} (got {_one_line(value)!r})")
            return None
        return value

    def url(self, m: dict, key: str, path: Path_) -> str | None:
        value = self.text(m, key, path)
        if value is not None and not re.match(r"^https?://\S+$", value):
            self.err(path + (key,), f"must be an http(s) URL (got {_one_line(value)!r})")
            return None
        return value

    def flag(self, m: dict, key: str, path: Path_, *, nullable: bool = False) -> bool | None:
        value = m.get(key)
        if value is None and nullable:
            return None
        if not isinstance(value, bool):
            self.err(path + (key,), f"must be true or false{' or null' if nullable else ''}, not {_kind(value)}")
            return None
        return value

    def number(self, m: dict, key: str, path: Path_) -> float | None:
        value = m.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
            self.err(path + (key,), f"must be a non-negative number or null, not {_one_line(value)!r}")
            return None
        return float(value)

    def full_date(self, m: dict, key: str, path: Path_) -> dt.date | None:
        value = m.get(key)
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        self.err(path + (key,), f"must be a date YYYY-MM-DD, not {_one_line(value)!r}")
        return None

    def partial_date(self, m: dict, key: str, path: Path_, *, required: bool = False) -> str | None:
        """A date as precise as the source allows: YYYY, YYYY-MM or YYYY-MM-DD (events, text dates)."""
        value = m.get(key)
        if value is None and not required:
            return None
        if isinstance(value, dt.date):
            return value.isoformat()[:10]
        if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 9999:
            return str(value)  # a bare year parses as an int
        if isinstance(value, str) and _DATE_PREFIX.match(value):
            return value
        self.err(path + (key,), f"must be a date YYYY, YYYY-MM or YYYY-MM-DD, not {_one_line(value)!r}")
        return None

    def str_list(self, m: dict, key: str, path: Path_, *, choices: tuple[str, ...] = (), nonempty: bool = False) -> tuple[str, ...]:
        value = m.get(key, [])
        if value is None:
            value = []
        if not isinstance(value, list):
            self.err(path + (key,), f"must be a list, not {_kind(value)}")
            return ()
        if nonempty and not value:
            self.err(path + (key,), "must list at least one item")
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.err(path + (key, i), f"must be a string, not {_kind(item)}")
            elif choices and item not in choices:
                self.err(path + (key, i), f"must be one of {', '.join(choices)} (got {_one_line(item)!r})")
            else:
                out.append(item)
        return tuple(out)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
