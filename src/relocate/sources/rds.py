"""Database sources: where a `source.databases` item lives and how to log in to it.

An item names its database by RDS identifier (looked up with describe_db_instances)
or by URL. The password always comes from `password_from` (Secrets Manager, SSM or
an environment variable) and is held as a `Secret` from the moment it is read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from relocate.errors import ConfigError, SourceError
from relocate.secret import Secret
from relocate.sources.aws import Aws, translate

DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306, "mariadb": 3306}
_SCHEMES = {"postgres": "postgres", "postgresql": "postgres", "mysql": "mysql", "mariadb": "mariadb"}


@dataclass(frozen=True)
class DbAddress:
    """A database server and one database in it, with the login to use."""

    engine: str  # postgres | mysql | mariadb
    host: str
    port: int
    user: str
    dbname: str
    password: Secret | None = None
    version: str = ""  # as the cloud reports it (RDS EngineVersion); the server is asked too
    allocated_bytes: int | None = None

    def label(self) -> str:
        return f"{self.engine}://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def at(self, host: str, port: int) -> "DbAddress":
        """The same database reached at another address (a local tunnel end)."""
        return DbAddress(self.engine, host, port, self.user, self.dbname, self.password, self.version, self.allocated_bytes)


def parse_url(url: str, what: str, engine: str | None = None) -> DbAddress:
    """postgresql://user@host:port/db or mysql://user@host:port/db. A password in the URL
    is accepted (it may come from ${ENV}) but password_from is the documented way."""
    parts = urlsplit(url)
    kind = _SCHEMES.get(parts.scheme)
    if kind is None:
        raise ConfigError(f"{what}: {parts.scheme or 'no'} scheme; use postgresql://, mysql:// or mariadb://")
    if engine and engine != kind and {engine, kind} != {"mysql", "mariadb"}:
        raise ConfigError(f"{what}: engine {engine} does not match the URL scheme {parts.scheme}://")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{what}: the port is not a number") from None
    if not parts.hostname:
        raise ConfigError(f"{what}: the URL has no host")
    dbname = unquote(parts.path.lstrip("/"))
    return DbAddress(
        engine=engine or kind, host=parts.hostname, port=port or DEFAULT_PORTS[kind],
        user=unquote(parts.username or ""), dbname=dbname,
        password=Secret(unquote(parts.password)) if parts.password else None,
    )


def split_endpoint(value: str, default_port: int) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, default_port
    if not port.isdigit():
        raise ConfigError(f"endpoint {value!r}: the port is not a number")
    return host, int(port)


def describe_instance(aws: Aws, identifier: str) -> dict[str, Any]:
    what = f"RDS instance {identifier}"
    try:
        found = aws.client("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
    except Exception as exc:
        raise translate(exc, what) from None
    if not found:
        raise SourceError(f"{what}: not found on the source", hint="check the identifier in relocate.yaml")
    inst: dict[str, Any] = found[0]  # boto3's DBInstances: a list of dicts
    return inst


def rds_address(aws: Aws, identifier: str, engine: str | None) -> DbAddress:
    inst = describe_instance(aws, identifier)
    raw = str(inst.get("Engine", ""))
    kind = "postgres" if "postgres" in raw else "mariadb" if "mariadb" in raw else "mysql" if "mysql" in raw else ""
    if not kind:
        raise SourceError(f"RDS instance {identifier}: engine {raw or '?'} is not PostgreSQL, MySQL or MariaDB")
    if engine and engine != kind and {engine, kind} != {"mysql", "mariadb"}:
        raise ConfigError(f"source.databases: {identifier} is {raw} on RDS, but relocate.yaml says engine: {engine}")
    endpoint = inst.get("Endpoint") or {}
    if not endpoint.get("Address"):
        raise SourceError(f"RDS instance {identifier} has no endpoint yet (status {inst.get('DBInstanceStatus', '?')})")
    size = inst.get("AllocatedStorage")
    return DbAddress(
        engine=engine or kind, host=endpoint["Address"], port=int(endpoint.get("Port") or DEFAULT_PORTS[kind]),
        user=inst.get("MasterUsername") or "", dbname=inst.get("DBName") or "",
        version=str(inst.get("EngineVersion", "")), allocated_bytes=int(size) * 1024**3 if size else None,
    )


def resolve_password(aws: Aws, ref: str, what: str) -> Secret:
    """`secret:NAME#key` (JSON key of a Secrets Manager secret), `secret:NAME` (the whole
    string), `ssm:/name` (SecureString decrypted), or `env:VAR`."""
    kind, _, rest = ref.partition(":")
    if kind == "env":
        if rest not in os.environ:
            raise ConfigError(f"{what}: password_from {ref}: environment variable {rest} is not set")
        return Secret(os.environ[rest])
    if kind == "ssm":
        try:
            value = aws.client("ssm").get_parameter(Name=rest, WithDecryption=True)["Parameter"]["Value"]
        except Exception as exc:
            raise translate(exc, f"{what}: SSM parameter {rest}") from None
        return Secret(value)
    if kind == "secret":
        name, _, key = rest.partition("#")
        try:
            value = aws.client("secretsmanager").get_secret_value(SecretId=name).get("SecretString")
        except Exception as exc:
            raise translate(exc, f"{what}: secret {name}") from None
        if value is None:
            raise SourceError(f"{what}: secret {name} holds binary data, not a password")
        if not key:
            return Secret(value)
        try:
            doc = json.loads(value)
        except ValueError:
            raise SourceError(f"{what}: secret {name} is not JSON, so it has no key {key!r} (drop the #{key})") from None
        if not isinstance(doc, dict) or key not in doc:
            keys = ", ".join(sorted(doc)) if isinstance(doc, dict) else "none"
            raise SourceError(f"{what}: secret {name} has no key {key!r} (keys: {keys})")
        return Secret(str(doc[key]))
    raise ConfigError(f"{what}: password_from {kind}: is not one of secret:, ssm:, env:")
