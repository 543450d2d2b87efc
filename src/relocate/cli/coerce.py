"""Option values without pydantic: the common, valid case converted directly (issue 18).

Typer 0.2x converts every option value that is not already a bool through a pydantic
TypeAdapter built per option on first use. Importing pydantic and building a dozen
adapters cost 0.15-0.3 s of CPU per `relocate move`, a fifth of a rerun with nothing
to do. relocate's options are plain: str, int (some with min/max), float, bool, Path
and lists of those. For those, `install` gives each option a converter that returns
exactly what Typer's adapter would for a valid value (the same types, the same
path checks through Typer's own `coerce_cli_path`) and hands everything else
(an out-of-range or malformed number, a bad path, any other annotation) to Typer's
own converter, so every error message is Typer's, word for word
(tests/test_cli_coerce.py compares both on valid and invalid values).

Typer's converter is private API: when it is not there (an older Typer converts with
click types and never loads pydantic), `install` changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

try:
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer._param_types import coerce_cli_path, routes_to_path
except ImportError:  # another Typer: its own conversion stands
    RuntimeParam = None  # type: ignore[assignment,misc]

_TYPER = object()  # "not the plain case: Typer's converter decides"
# What pydantic's lax mode turns into the same number: plain decimal digits only (no sign,
# spaces, underscores or exponents; those go to Typer's converter, which decides alike).
_INT = re.compile(r"(?:0|[1-9][0-9]{0,17})\Z")
_FLOAT = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,15})?\Z")


def _leaf(annotation: Any, info: Any, value: Any, param: Any, ctx: Any) -> Any:
    """The value Typer's adapter returns for a valid plain `value`, or _TYPER."""
    if annotation is str:
        return value if isinstance(value, str) else _TYPER
    if annotation is bool:
        return value if isinstance(value, bool) else _TYPER
    if annotation is int or annotation is float:
        if isinstance(value, str):
            if not (_INT if annotation is int else _FLOAT).match(value):
                return _TYPER
            number: Any = annotation(value)
        elif type(value) is annotation:
            number = value
        else:
            return _TYPER
        if info.clamp or (info.min is not None and number < info.min) or (info.max is not None and number > info.max):
            return _TYPER  # out of range (or clamped): Typer's message and rule
        return number
    if annotation is Path:
        if isinstance(value, str) and value:
            value = Path(value)
        if not isinstance(value, Path):
            return _TYPER
        try:
            return coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)
        except Exception:  # a failed check: Typer's converter says it in its own words
            return _TYPER
    return _TYPER


def _plain(annotation: Any, info: Any) -> bool:
    """Whether the fast converter knows this option's annotation."""
    if get_origin(annotation) is list:
        (item,) = get_args(annotation) or (None,)
        return _plain(item, info)
    if info.parser is not None or getattr(info, "path_type", None) is not None:
        return False
    if annotation is str:
        return not routes_to_path(annotation, info)  # a str with exists=... goes through the path checks
    return annotation in (bool, int, float, Path)


if RuntimeParam is not None:

    @dataclass(frozen=True)
    class PlainParam(RuntimeParam):
        """A plain option's converter: the valid case here, the rest in Typer's."""

        descriptor: Any

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            annotation: Any = self.annotation  # typed by Typer far wider than relocate's options
            info = self.parameter_info
            if get_origin(annotation) is list:
                (item,) = get_args(annotation)
                got: Any = [_leaf(item, info, v, param, ctx) for v in value] if isinstance(value, (list, tuple)) else _TYPER
                if got is not _TYPER and _TYPER in got:
                    got = _TYPER
            else:
                got = _leaf(annotation, info, value, param, ctx)
            if got is _TYPER:
                return build_runtime_param(self.descriptor)._coerce_value(value, param=param, ctx=ctx)
            return got


def install(command: Any) -> None:
    """Give each plain option of `command` the fast converter (before its first use),
    its --help option too (made on first use, then kept by the command)."""
    if RuntimeParam is None:
        return
    for param in getattr(command, "params", ()):
        _install(param)
    made = getattr(command, "get_help_option", None)
    if made is not None:
        def get_help_option(ctx: Any) -> Any:
            option = made(ctx)
            if option is not None:
                _install(option)
            return option

        command.get_help_option = get_help_option


def _install(param: Any) -> None:
    desc = getattr(param, "type_descriptor", None)
    if desc is None or getattr(param, "_runtime_param", "absent") is not None or desc.file_annotation is not None:
        return
    if _plain(desc.annotation, desc.parameter_info):
        param._runtime_param = PlainParam(parameter_info=desc.parameter_info, annotation=desc.annotation, descriptor=desc)
