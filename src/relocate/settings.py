"""One settings object, built at the CLI edge from the options and the RELOCATE_* tuning
variables (README, "Tuning"), and handed down explicitly: nothing below the CLI reads the
environment for them.

Pure: no import of boto3 or paramiko, so the planner may take it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from relocate.errors import UsageError


def default_lanes() -> int:
    """`--lanes` when not given: the CPU count, from 2 to 4. Each lane costs a core's worth
    of ssh, sshd and hashing when the link is fast; on this 2-core box 2 lanes pushed the
    1 GiB media corpus in 3.3-3.8 s where 4 took 4.0-4.3 s (docs/transfer.md)."""
    return min(4, max(2, os.cpu_count() or 2))


@dataclass(frozen=True)
class Switches:
    """`move`'s switches the kinds read (they were a `flags` dict)."""

    replace_database: tuple[str, ...] = ()  # --replace-database NAME: overwrite although it differs
    no_local_copy: bool = False  # --no-local-copy: stream dumps, keep none in the snapshot


@dataclass(frozen=True)
class Tuning:
    """The transfer engine's knobs for tests and odd links. None: the engine's default."""

    bulk_ssh: str = "auto"  # RELOCATE_BULK_SSH: auto (the OpenSSH client when it can log in) | paramiko
    receiver: str = "auto"  # RELOCATE_RECEIVER: auto | python (the agent) | sh (tar)
    s3_gets: str = "auto"  # RELOCATE_S3_GETS: auto (libcurl when pycurl is there) | threads
    stall_s: float | None = None  # RELOCATE_STALL_TIMEOUT: seconds a lane may make no progress
    backoff_s: float | None = None  # RELOCATE_RETRY_BACKOFF: first retry's wait, doubled each time
    attempts: int | None = None  # RELOCATE_RETRY_ATTEMPTS: tries per batch
    batch_objects: int | None = None  # RELOCATE_BATCH_OBJECTS: at most this many objects a batch

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Tuning":
        env = os.environ if env is None else env
        return cls(
            bulk_ssh=_choice(env, "RELOCATE_BULK_SSH", ("auto", "openssh", "paramiko")),
            receiver=_choice(env, "RELOCATE_RECEIVER", ("auto", "python", "sh")),
            s3_gets=_choice(env, "RELOCATE_S3_GETS", ("auto", "curl", "threads")),
            stall_s=_number(env, "RELOCATE_STALL_TIMEOUT"),
            backoff_s=_number(env, "RELOCATE_RETRY_BACKOFF"),
            attempts=_int(env, "RELOCATE_RETRY_ATTEMPTS"),
            batch_objects=_int(env, "RELOCATE_BATCH_OBJECTS"),
        )


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = (env.get(name) or "auto").strip().lower()
    if value not in allowed:
        raise UsageError(f"{name}={value!r}: must be one of {', '.join(allowed)}")
    return value


def _number(env: Mapping[str, str], name: str) -> float | None:
    """As before: a value that is not a number is ignored (the default stands)."""
    try:
        return float(env[name]) if env.get(name) else None
    except ValueError:
        return None


def _int(env: Mapping[str, str], name: str) -> int | None:
    got = _number(env, name)
    return int(got) if got is not None else None
