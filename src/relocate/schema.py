"""A small declarative schema for YAML documents with line-numbered, path-qualified errors.

Why not jsonschema/pydantic: users need `relocate.yaml:12: target.ssh.port: must be an
integer` with the nearest valid key for typos, and `${ENV}` interpolation on scalars;
walking PyYAML's node tree (which carries line marks) does both in ~150 lines.

One walker serves two callers: relocate.yaml stops at the first error (Ctx default),
while profile lint collects every error in a file (Ctx(collect=True)): a wrong value is
recorded and becomes None in its mapping or list (dropped from a Dict), and the walk goes on.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from relocate.errors import ConfigError

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]+")


class Invalid(Exception):
    """Collect mode: the error is recorded; the enclosing Map/List/Dict drops the value and goes on."""


@dataclass
class Ctx:
    source: str  # file name shown in errors
    env: dict[str, str] | None = None  # None: no interpolation (e.g. profiles)
    collect: bool = False  # True: record every error in `errors` instead of raising the first
    errors: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # path -> line, for checks made after the walk

    def fail(self, node: yaml.Node | None, path: str | None, msg: str) -> Exception:
        """The exception to raise for a wrong value: the ConfigError, or (collecting) Invalid once recorded."""
        line = node.start_mark.line + 1 if node is not None else None
        return self.fail_at(line, path, msg)

    def fail_at(self, line: int | None, path: str | None, msg: str) -> Exception:
        """`path` "" is the whole document, shown as (top level); None shows no path."""
        where = f" {path or '(top level)'}:" if path is not None else ""
        error = ConfigError(f"{self.source}{f':{line}' if line else ''}:{where} {msg}")
        if not self.collect:
            return error
        self.errors.append(error.message)
        return Invalid()

    def errors_in_order(self) -> list[str]:
        """The errors collected, in the order of the file's lines (the walk finds some
        after it has passed them: a missing key at its mapping's end, a cross-reference
        after the walk); ones without a line first."""
        mark = re.compile(re.escape(self.source) + r":(\d+):")
        return sorted(self.errors, key=lambda e: int(m.group(1)) if (m := mark.match(e)) else 0)

    def report(self, node: yaml.Node | None, path: str, msg: str) -> None:
        """An error that need not stop the walk (collecting): an unknown key, a missing one."""
        self.report_at(node.start_mark.line + 1 if node is not None else None, path, msg)

    def report_at(self, line: int | None, path: str, msg: str) -> None:
        if not isinstance(exc := self.fail_at(line, path, msg), Invalid):
            raise exc

    def report_path(self, path: str, msg: str) -> None:
        """An error found after the walk (a cross-reference), at the line the walk saw for `path`."""
        self.report_at(self.lines.get(path), path, msg)


def join(path: str, key: str | int) -> str:
    """`categories.spam`, `documents[2]`; an odd key is quoted so an error stays on one line."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not _PLAIN_KEY.fullmatch(key):
        return f"{path}[{key[:40]!r}]"
    return f"{path}.{key}" if path else key


def _got(value: str) -> str:
    return repr(" ".join(value.split())[:200])


def choice_error(value: str, choices: tuple[str, ...]) -> str:
    near = difflib.get_close_matches(value, choices, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"must be one of {', '.join(choices)} (got {_got(value)}{hint})"


def _child(spec: Spec, node: yaml.Node, path: str, ctx: Ctx, line_node: yaml.Node | None = None) -> Any:
    ctx.lines.setdefault(path, (line_node or node).start_mark.line + 1)
    return spec.load(node, path, ctx)


class Spec:
    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return "a value"


def _scalar(node: yaml.Node, path: str, ctx: Ctx, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.fail(node, path, f"must be {what}")
    value: str = node.value
    env = ctx.env  # a local: the closure below keeps the not-None narrowing
    if env is not None and "$" in value:
        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name not in env:
                raise ctx.fail(node, path, f"environment variable {name} is not set (export it, or write $${{{name}}} for a literal)")
            return env[name]
        value = _ENV_RE.sub(sub, value)
    return value


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


@dataclass
class Str(Spec):
    choices: tuple[str, ...] | None = None
    nonempty: bool = True
    check: Callable[[str], str | None] | None = None  # returns an error message or None

    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> str:
        if isinstance(node, yaml.ScalarNode) and node.tag in (
            "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"
        ) and not node.style:
            raise ctx.fail(node, path, "must be a string (quote it)")
        value = "" if _is_null(node) else _scalar(node, path, ctx, "a string")
        if self.nonempty and not value.strip():
            raise ctx.fail(node, path, "must not be empty")
        if self.choices and value not in self.choices:
            raise ctx.fail(node, path, choice_error(value, self.choices))
        if self.check and (err := self.check(value)):
            raise ctx.fail(node, path, err)
        return value

    def describe(self) -> str:
        return "one of " + ", ".join(self.choices) if self.choices else "a string"


@dataclass
class Int(Spec):
    min: int | None = None
    max: int | None = None

    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> int:
        raw = _scalar(node, path, ctx, "an integer")
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
            raise ctx.fail(node, path, "must be an integer")
        try:
            value = int(raw, 10)
        except ValueError:
            raise ctx.fail(node, path, "must be an integer") from None
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise ctx.fail(node, path, self.bounds())
        return value

    def bounds(self) -> str:
        """The range in words: one bound may be open, both may be one number."""
        if self.min is not None and self.max is not None:
            return f"must be {self.min}" if self.min == self.max else f"must be between {self.min} and {self.max}"
        return f"must be {self.min} or more" if self.min is not None else f"must be {self.max} or less"


@dataclass
class Float(Spec):
    min: float | None = None

    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> float:
        raw = _scalar(node, path, ctx, "a number")
        try:
            value = float(raw)
        except ValueError:
            raise ctx.fail(node, path, "must be a number") from None
        if not math.isfinite(value):
            raise ctx.fail(node, path, "must be a finite number")
        if self.min is not None and value < self.min:
            raise ctx.fail(node, path, f"must be at least {self.min}")
        return value


@dataclass
class Bool(Spec):
    nullable: bool = False  # null is a value of its own (e.g. "the terms do not say")

    _MAP = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}

    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> bool | None:
        if self.nullable and _is_null(node):
            return None
        what = "true or false or null" if self.nullable else "true or false"
        raw = _scalar(node, path, ctx, what).lower()
        if raw not in self._MAP:
            raise ctx.fail(node, path, f"must be {what}")
        return self._MAP[raw]


_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


@dataclass
class Date(Spec):
    """A date YYYY-MM-DD (a dt.date); partial: as precise as the source allows, YYYY[-MM[-DD]] (a str)."""

    partial: bool = False

    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> dt.date | str:
        raw = _scalar(node, path, ctx, "a date").strip()
        what = "a date YYYY, YYYY-MM or YYYY-MM-DD" if self.partial else "a date YYYY-MM-DD"
        try:
            day = dt.date.fromisoformat(raw[:10]) if len(raw) >= 10 else None
            if len(raw) > 10:
                dt.datetime.fromisoformat(raw)  # a timestamp: the date part counts
        except ValueError:
            raise ctx.fail(node, path, f"must be {what} (got {_got(raw)})") from None
        if day is not None:
            return day.isoformat() if self.partial else day
        if self.partial and _DATE.match(raw) and (len(raw) == 4 or 1 <= int(raw[5:]) <= 12):
            return raw
        raise ctx.fail(node, path, f"must be {what} (got {_got(raw)})")


@dataclass
class Optional_(Spec):
    inner: Spec

    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> Any:
        return None if _is_null(node) else self.inner.load(node, path, ctx)


@dataclass
class Either(Spec):
    """A scalar written one way or a mapping written the long way (e.g. `ssh: user@host`
    or `ssh: {host: ..., host_key: ...}`): the node's shape picks the spec."""

    scalar: Spec
    mapping: Spec

    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> Any:
        return self.mapping.load(node, path, ctx) if isinstance(node, yaml.MappingNode) else self.scalar.load(node, path, ctx)

    def describe(self) -> str:
        return f"{self.scalar.describe()} or {self.mapping.describe()}"


@dataclass
class List(Spec):
    item: Spec
    min_items: int = 0

    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> list[Any]:
        if _is_null(node):
            items: list[yaml.Node] = []
        elif isinstance(node, yaml.SequenceNode):
            items = node.value
        else:
            raise ctx.fail(node, path, "must be a list")
        if len(items) < self.min_items:
            raise ctx.fail(node, path, f"must have at least {self.min_items} item(s)")
        out: list[Any] = []
        for i, n in enumerate(items):
            try:
                out.append(_child(self.item, n, join(path, i), ctx))
            except Invalid:
                out.append(None)  # collecting: keep the place, so later checks name the right index
        return out


@dataclass
class Dict(Spec):
    """A free mapping of string keys to one kind of value (e.g. app.dependencies)."""

    value: Spec
    key_check: Callable[[str], str | None] | None = None  # returns an error message or None

    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> dict[str, Any]:
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise ctx.fail(node, path, "must be a mapping")
        out: dict[str, Any] = {}
        for k, v in node.value:
            try:
                key = _scalar(k, path, ctx, "a string key")
                if self.key_check and (err := self.key_check(key)):
                    raise ctx.fail(k, join(path, key), err)
                out[key] = _child(self.value, v, join(path, key), ctx, line_node=k)
            except Invalid:
                pass
        return out


@dataclass
class Map(Spec):
    fields: dict[str, Spec]
    required: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    one_of: tuple[str, ...] = ()  # exactly one of these keys must be present

    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> dict[str, Any]:
        if _is_null(node) and not self.required:
            node_items: list[tuple[yaml.Node, yaml.Node]] = []
        elif isinstance(node, yaml.MappingNode):
            node_items = node.value
        else:
            raise ctx.fail(node, path, "must be a mapping")
        out: dict[str, Any] = {}
        seen: set[str] = set()
        for knode, vnode in node_items:
            key = knode.value if isinstance(knode, yaml.ScalarNode) else None
            if key is None:
                ctx.report(knode, path, "keys must be strings")
                continue
            sub = join(path, key)
            if key in seen:
                ctx.report(knode, sub, "is given twice")
                continue
            seen.add(key)
            if key.startswith("x-"):
                continue  # free for users
            spec = self.fields.get(key)
            if spec is None:
                near = difflib.get_close_matches(key, list(self.fields), n=1, cutoff=0.6)
                hint = f"did you mean '{near[0]}'?" if near else f"valid keys: {', '.join(self.fields)}"
                ctx.report(knode, sub, f"unknown key ({hint})")
                continue
            try:
                out[key] = _child(spec, vnode, sub, ctx, line_node=knode)
            except Invalid:
                out[key] = None
        # An empty `key:` has no line of its own (PyYAML marks the next token): use the key's.
        line = ctx.lines.get(path) if _is_null(node) else node.start_mark.line + 1
        for key in self.required:
            if key not in out:
                self.missing(line, path, key, ctx)
        if self.one_of and sum(k in out for k in self.one_of) != 1:
            ctx.report(node, path, f"needs exactly one of: {', '.join(self.one_of)}")
        for key, default in self.defaults.items():
            out.setdefault(key, default() if callable(default) else default)
        for key in self.fields:
            out.setdefault(key, None)
        return out

    def missing(self, line: int | None, path: str, key: str, ctx: Ctx) -> None:
        ctx.report_at(line, join(path, key), f"is required ({self.fields[key].describe()})")

    def describe(self) -> str:
        return "a mapping"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:200]


# libyaml's parser when PyYAML was built with it (the wheels are): the same YAML 1.1 safe
# semantics and line marks, ~18x less CPU than the pure-Python one. Loading the 43 shipped
# profiles took 1.2 s of CPU with the pure parser, paid by every `check` and `plan`; libyaml
# also caps nesting at 1000 levels, a clean ScannerError rather than a RecursionError.
SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def compose(text: str | bytes, source: str) -> yaml.Node | None:
    """Parse YAML safely (SafeLoader semantics) into a node tree with line marks.

    Hostile input (any bytes, absurd nesting) gives a one-line ConfigError naming the file.
    Nothing is constructed, so aliases are shared nodes and the specs walk only as deep as they go.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.compose(text, Loader=SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{line}: invalid YAML: {_one_line(exc.problem or exc.context)}") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # e.g. bad unicode escapes, absurd nesting
        raise ConfigError(f"{source}: invalid YAML: {_one_line(exc) or type(exc).__name__}") from None


def load_node(node: yaml.Node | None, spec: Spec, ctx: Ctx) -> Any:
    """Walk a composed document; collecting, a wrong root gives None (see ctx.errors)."""
    try:
        if node is None:
            raise ctx.fail(None, None, "the file is empty")
        return _child(spec, node, "", ctx)
    except Invalid:
        return None


def load_document(text: str, spec: Spec, source: str, env: dict[str, str] | None = None) -> Any:
    return load_node(compose(text, source), spec, Ctx(source=source, env=env if env is not None else None))


def environ() -> dict[str, str]:
    return dict(os.environ)
