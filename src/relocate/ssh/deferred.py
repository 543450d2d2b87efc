"""paramiko imports `invoke` (a task runner that pulls in asyncio, unittest.mock and a
YAML parser of its own) as it starts, for one rare feature: `Match exec` lines in
~/.ssh/config. That import was 0.1-0.15 s of CPU on every command that reaches a host
(issue 18: a rerun with nothing to do). `defer()`, called before paramiko is imported,
puts a stand-in module in its place; the first attribute paramiko asks of it (only
`invoke.run`, for a `Match exec`) imports the real one, so such a config still works.
Where invoke is not installed nothing is put in place: paramiko sees the ImportError
it expects."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any


class _Deferred(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's own questions need no real module
            raise AttributeError(name)
        if sys.modules.get("invoke") is self:
            del sys.modules["invoke"]
        real = importlib.import_module("invoke")
        config = sys.modules.get("paramiko.config")
        if config is not None and getattr(config, "invoke", None) is self:
            config.invoke = real  # type: ignore[attr-defined]
        return getattr(real, name)


def defer() -> None:
    if "invoke" in sys.modules or "paramiko" in sys.modules:
        return
    try:
        present = importlib.util.find_spec("invoke") is not None
    except (ImportError, ValueError):
        present = False
    if present:
        sys.modules["invoke"] = _Deferred("invoke")
