"""A small declarative schema for YAML documents with line-numbered, path-qualified errors.

Why not jsonschema/pydantic: users need `relocate.yaml:12: target.ssh.port: must be an
integer` with the nearest valid key for typos, and `${ENV}` interpolation on scalars;
walking PyYAML's node tree (which carries line marks) does both in ~150 lines.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from relocate.errors import ConfigError

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class Ctx:
    source: str  # file name shown in errors
    env: dict[str, str] | None = None  # None: no interpolation (e.g. profiles)

    def fail(self, node: yaml.Node | None, path: str, msg: str) -> ConfigError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        where = f" {path}:" if path else ""
        return ConfigError(f"{self.source}{line}:{where} {msg}")


class Spec:
    def load(self, node: yaml.Node, path: str, ctx: Ctx) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return "a value"


def _scalar(node: yaml.Node, path: str, ctx: Ctx, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.fail(node, path, f"must be {what}")
    value = node.value
    if ctx.env is not None and "$" in value:
        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name not in ctx.env:  # type: ignore[operator]
                raise ctx.fail(node, path, f"environment variable {name} is not set (export it, or write $${{{name}}} for a literal)")
            return ctx.env[name]  # type: ignore[index]
        value = _ENV_RE.sub(sub, value)
    return value


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


@dataclass
class Str(Spec):
    choices: tuple[str, ...] | None = None
    nonempty: bool = True
    check: Callable[[str], str | None] | None = None  # returns an error message or None

    def load(self, node, path, ctx):
        if isinstance(node, yaml.ScalarNode) and node.tag in (
            "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"
        ) and not node.style:
            raise ctx.fail(node, path, "must be a string (quote it)")
        value = _scalar(node, path, ctx, "a string")
        if self.nonempty and value == "":
            raise ctx.fail(node, path, "must not be empty")
        if self.choices and value not in self.choices:
            near = difflib.get_close_matches(value, self.choices, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ctx.fail(node, path, f"must be one of {', '.join(self.choices)}{hint}")
        if self.check and (err := self.check(value)):
            raise ctx.fail(node, path, err)
        return value

    def describe(self):
        return "one of " + ", ".join(self.choices) if self.choices else "a string"


@dataclass
class Int(Spec):
    min: int | None = None
    max: int | None = None

    def load(self, node, path, ctx):
        raw = _scalar(node, path, ctx, "an integer")
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
            raise ctx.fail(node, path, "must be an integer")
        try:
            value = int(raw, 10)
        except ValueError:
            raise ctx.fail(node, path, "must be an integer") from None
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise ctx.fail(node, path, f"must be between {self.min} and {self.max}")
        return value


@dataclass
class Float(Spec):
    min: float | None = None

    def load(self, node, path, ctx):
        raw = _scalar(node, path, ctx, "a number")
        try:
            value = float(raw)
        except ValueError:
            raise ctx.fail(node, path, "must be a number") from None
        if self.min is not None and value < self.min:
            raise ctx.fail(node, path, f"must be at least {self.min}")
        return value


class Bool(Spec):
    _MAP = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}

    def load(self, node, path, ctx):
        raw = _scalar(node, path, ctx, "true or false").lower()
        if raw not in self._MAP:
            raise ctx.fail(node, path, "must be true or false")
        return self._MAP[raw]


@dataclass
class Optional_(Spec):
    inner: Spec

    def load(self, node, path, ctx):
        return None if _is_null(node) else self.inner.load(node, path, ctx)


@dataclass
class Either(Spec):
    """A scalar written one way or a mapping written the long way (e.g. `ssh: user@host`
    or `ssh: {host: ..., host_key: ...}`): the node's shape picks the spec."""

    scalar: Spec
    mapping: Spec

    def load(self, node, path, ctx):
        return self.mapping.load(node, path, ctx) if isinstance(node, yaml.MappingNode) else self.scalar.load(node, path, ctx)

    def describe(self):
        return f"{self.scalar.describe()} or {self.mapping.describe()}"


@dataclass
class List(Spec):
    item: Spec
    min_items: int = 0

    def load(self, node, path, ctx):
        if _is_null(node):
            items: list[yaml.Node] = []
        elif isinstance(node, yaml.SequenceNode):
            items = node.value
        else:
            raise ctx.fail(node, path, "must be a list")
        if len(items) < self.min_items:
            raise ctx.fail(node, path, f"must have at least {self.min_items} item(s)")
        return [self.item.load(n, f"{path}[{i}]", ctx) for i, n in enumerate(items)]


@dataclass
class Dict(Spec):
    """A free mapping of string keys to one kind of value (e.g. app.dependencies)."""

    value: Spec

    def load(self, node, path, ctx):
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise ctx.fail(node, path, "must be a mapping")
        out: dict[str, Any] = {}
        for k, v in node.value:
            key = _scalar(k, path, ctx, "a string key")
            out[key] = self.value.load(v, f"{path}.{key}" if path else key, ctx)
        return out


@dataclass
class Map(Spec):
    fields: dict[str, Spec]
    required: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    one_of: tuple[str, ...] = ()  # exactly one of these keys must be present

    def load(self, node, path, ctx):
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
            sub = f"{path}.{key}" if path else str(key)
            if key is None:
                raise ctx.fail(knode, path, "keys must be strings")
            if key in seen:
                raise ctx.fail(knode, sub, "is given twice")
            seen.add(key)
            if key.startswith("x-"):
                continue  # free for users
            spec = self.fields.get(key)
            if spec is None:
                near = difflib.get_close_matches(key, list(self.fields), n=1, cutoff=0.6)
                hint = f"did you mean '{near[0]}'?" if near else f"valid keys: {', '.join(self.fields)}"
                raise ctx.fail(knode, sub, f"unknown key ({hint})")
            out[key] = spec.load(vnode, sub, ctx)
        for key in self.required:
            if key not in out:
                sub = f"{path}.{key}" if path else key
                raise ctx.fail(node if node_items else None, sub, f"is required ({self.fields[key].describe()})")
        if self.one_of and sum(k in out for k in self.one_of) != 1:
            raise ctx.fail(node, path, f"needs exactly one of: {', '.join(self.one_of)}")
        for key, default in self.defaults.items():
            out.setdefault(key, default() if callable(default) else default)
        for key in self.fields:
            out.setdefault(key, None)
        return out

    def describe(self):
        return "a mapping"


def compose(text: str, source: str) -> yaml.Node | None:
    """Parse YAML safely (SafeLoader semantics) into a node tree with line marks."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{line}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    except (ValueError, RecursionError) as exc:  # e.g. bad unicode escapes, absurd nesting
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None


def load_document(text: str, spec: Spec, source: str, env: dict[str, str] | None = None) -> Any:
    node = compose(text, source)
    if node is None:
        raise ConfigError(f"{source}: the file is empty")
    return spec.load(node, "", Ctx(source=source, env=env if env is not None else None))


def environ() -> dict[str, str]:
    return dict(os.environ)
