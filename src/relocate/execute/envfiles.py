"""Parameters and secrets become env files on the target (mode 0600, via SFTP, never argv).

Naming: an SSM parameter `/app/prod/db/password` under path `/app/prod/` becomes
`DB_PASSWORD`; a secret whose value is a non-empty JSON object contributes one variable
per top-level key (`{"api-token": ..}` -> `API_TOKEN`), whatever its values: a string as
it is, any other value (number, boolean, null, a nested object or array) as its compact
JSON text; any other secret becomes the upper-cased last segment of its name. Values are written single-quoted (POSIX sh, docker --env-file
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


# The splitting rule's version, part of what an env file is recorded as made from
# (execute/gather.py): a file written under an older rule (which kept a JSON object with
# one nested value whole, as one variable) is written again, not kept as "unchanged".
SPLIT_RULE = 2


def secret_vars(secret_name: str, value: Secret) -> list[tuple[str, Secret]]:
    """The variables one secret gives. Every top-level key of a JSON object is split out,
    even when some values are nested: one nested value must not turn the whole object into
    one variable the app cannot read its keys from (README, "Where things land")."""
    try:
        parsed = json.loads(value.reveal())
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed:
        return [(env_name(k), Secret(v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), ensure_ascii=False)))
                for k, v in parsed.items()]
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
