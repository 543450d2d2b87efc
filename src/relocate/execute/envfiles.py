"""Parameters and secrets become env files on the target (mode 0600, via SFTP, never argv).

Naming: an SSM parameter `/app/prod/db/password` under path `/app/prod/` becomes
`DB_PASSWORD`; a secret whose value is a JSON object contributes one variable per
key (`{"token": ..}` -> `TOKEN`); any other secret becomes the upper-cased last
segment of its name. Values are written single-quoted (POSIX sh, docker --env-file
and systemd EnvironmentFile all read `KEY='value'`).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict

from relocate.secret import Secret

_NON_IDENT = re.compile(r"[^A-Za-z0-9_]+")


def env_name(raw: str) -> str:
    name = _NON_IDENT.sub("_", raw.strip("/")).strip("_").upper()
    if not name:
        name = "VALUE"
    if name[0].isdigit():
        name = "_" + name
    return name


def secret_vars(secret_name: str, value: Secret) -> list[tuple[str, Secret]]:
    try:
        parsed = json.loads(value.reveal())
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed and all(isinstance(v, (str, int, float, bool)) for v in parsed.values()):
        return [(env_name(k), Secret(v if isinstance(v, str) else json.dumps(v))) for k, v in parsed.items()]
    return [(env_name(secret_name.rsplit("/", 1)[-1]), value)]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


class EnvFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.vars: "OrderedDict[str, Secret]" = OrderedDict()
        self.origins: dict[str, str] = {}
        self.conflicts: list[str] = []

    def add(self, name: str, value: Secret, origin: str) -> None:
        if name in self.vars and self.vars[name] != value:
            self.conflicts.append(f"{self.path}: {name} from {origin} replaces the one from {self.origins[name]}")
        self.vars[name] = value
        self.origins[name] = origin

    def render(self) -> bytes:
        """The file's bytes: the only place env values are unwrapped."""
        lines = ["# written by relocate; values come from the source's parameters and secrets"]
        lines += [f"{k}={_quote(v.reveal())}" for k, v in self.vars.items()]
        return ("\n".join(lines) + "\n").encode("utf-8")
