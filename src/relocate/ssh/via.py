"""SSH addresses as relocate.yaml writes them, and the one `via:` resolver.

One grammar for every SSH address a user writes (`target.ssh`, a `source.hosts` `ssh:`,
a bastion, a `via:`): a mapping shaped like target.ssh, or the short `[user@]host[:port]`.
A `via:` (source.hosts and source.databases alike) is a name under `source.bastions`,
or an address in that grammar; a bare word that names no bastion is refused at load
(config.check_places), since it is almost always a misspelt bastion.

Pure (no paramiko): config.py and the planner import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from relocate import pathrules
from relocate.errors import ConfigError

REF = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>[^@:\s]+)(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class SshSpec:
    """Where and as whom to log in, as written (ssh/connection.resolve applies ~/.ssh/config)."""

    host: str
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    host_key: str | None = None
    known_hosts: str | None = None
    jump: str | None = None


def ref_error(value: str) -> str | None:
    """Why `value` is not `[user@]host[:port]`, or None (the schema's check)."""
    m = REF.match(value)
    if not m:
        return "must be user@host[:port], or a mapping like target.ssh"
    if m["port"] and not 1 <= int(m["port"]) <= 65535:
        return "the port must be between 1 and 65535"
    return pathrules.host_error(m["host"])


def ssh_spec(value: str | Mapping[str, Any]) -> SshSpec:
    """SshSpec from `[user@]host[:port]` or a target.ssh-shaped mapping."""
    if not isinstance(value, str):
        return SshSpec(**{k: v for k, v in value.items() if v is not None})
    m = REF.match(value)
    if m is None or (err := ref_error(value)):
        raise ConfigError(f"{value!r}: {err or 'must be user@host[:port]'}")
    return SshSpec(host=m["host"], user=m["user"], port=int(m["port"]) if m["port"] else None)


def _is_address(value: str) -> bool:
    """A bare word (no @, no port, no dot) is taken for a bastion's name, never a host."""
    return "@" in value or ":" in value or "." in value


def via_error(value: str | Mapping[str, Any], bastions: Mapping[str, Any] | None) -> str | None:
    """Why a `via:` resolves to nothing, or None: checked at load for every `via:`."""
    if not isinstance(value, str) or value in (bastions or {}):
        return None
    if not _is_address(value):
        known = ", ".join(sorted(bastions or {})) or "none defined"
        return f"{value!r} is not a name under source.bastions ({known}) nor user@host[:port]"
    return ref_error(value)


def resolve_via(value: str | Mapping[str, Any], bastions: Mapping[str, Any] | None) -> SshSpec:
    """The bastion a `via:` means: the one resolver for source hosts and database tunnels."""
    if err := via_error(value, bastions):
        raise ConfigError(f"via: {err}")
    if isinstance(value, str) and value in (bastions or {}):
        return ssh_spec((bastions or {})[value])
    return ssh_spec(value)
