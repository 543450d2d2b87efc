"""One settings value, built at the CLI edge from the command's options and the RELOCATE_*
variables (README, "Tuning" and "Environment variables"), and handed down explicitly:
nothing below the CLI reads the environment for them (tests/test_settings.py greps).

- `Settings`: what a command hands `workflow.prepare` and `execute.runner.run_move`.
- `Login`: how every SSH connection logs in (target, source hosts, bastions).
- `Transfer`: how the transfer engine pushes bytes (execute/objects.py).
- `Tuning`: the RELOCATE_* transfer knobs as read; `Switches`: `move`'s switches the kinds read.

Pure: no import of boto3 or paramiko, so the planner may take it too.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from relocate.errors import UsageError
from relocate.secret import Secret

# The transfer engine's defaults (README, "Tuning"; docs/transfer.md).
ATTEMPTS = 5
STALL_S = 60.0
BACKOFF_S = 1.0
GET_BACKOFF_S = 0.2  # one S3 GET's first retry wait (obstore's and the libcurl reader's), doubled each time
# `--transfers`: S3 GETs at once. 32, not 16: the S3 server spends less CPU per GET with
# more in flight (SeaweedFS here: 10,000 small GETs cost it 4.5-5.0 s at 16, 4.4-4.9 at 32,
# 5.1-5.2 at 8), and against a real S3's tens of milliseconds per GET the small objects'
# rate is the number in flight over the latency. Memory stays within the read-ahead's byte
# budget either way. 10,000 x 4 KiB: move 6.62 -> 6.12 s, machine CPU 11.3 -> 10.5 s;
# media 7.98 -> 7.58 s (medians of 3-4 runs in turn, docs/transfer.md).
TRANSFERS = 32


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
    s3_gets: str = "auto"  # RELOCATE_S3_GETS: auto (sockets; curl when a proxy variable is set) | sockets | curl | threads
    page_cache: str = "auto"  # RELOCATE_PAGE_CACHE: auto, drop (the receiver lets written data go) | keep
    stall_s: float | None = None  # RELOCATE_STALL_TIMEOUT: seconds a lane may make no progress
    backoff_s: float | None = None  # RELOCATE_RETRY_BACKOFF: first retry's wait, doubled each time
    attempts: int | None = None  # RELOCATE_RETRY_ATTEMPTS: tries per batch
    batch_objects: int | None = None  # RELOCATE_BATCH_OBJECTS: at most this many objects a batch
    shard_chunk: int | None = None  # RELOCATE_SHARD_CHUNK: keys a shard worker lists, compares and records at a time
    shard_lock_stale_s: float | None = None  # RELOCATE_SHARD_LOCK_STALE_S: a shard lock untouched this long is taken over

    @property
    def get_backoff_s(self) -> float:
        """The first wait before a single S3 GET is retried inside a batch: a fifth of the
        batch's (RELOCATE_RETRY_BACKOFF scales both; 0.2 s by default)."""
        return GET_BACKOFF_S if self.backoff_s is None else self.backoff_s / 5

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Tuning":
        return cls(
            bulk_ssh=_choice(env, "RELOCATE_BULK_SSH", ("auto", "openssh", "paramiko")),
            receiver=_choice(env, "RELOCATE_RECEIVER", ("auto", "python", "sh")),
            s3_gets=_s3_gets(env),
            page_cache=_choice(env, "RELOCATE_PAGE_CACHE", ("auto", "drop", "keep")),
            stall_s=_number(env, "RELOCATE_STALL_TIMEOUT", above=0),
            backoff_s=_number(env, "RELOCATE_RETRY_BACKOFF", least=0),
            attempts=_int(env, "RELOCATE_RETRY_ATTEMPTS"),
            batch_objects=_int(env, "RELOCATE_BATCH_OBJECTS"),
            shard_chunk=_int(env, "RELOCATE_SHARD_CHUNK"),
            shard_lock_stale_s=_number(env, "RELOCATE_SHARD_LOCK_STALE_S", above=0),
        )


# The variables libcurl (and botocore) take an HTTP proxy from: relocate's own GET loop
# (sources/s3gets.py, SocketGets) speaks to the endpoint directly, so with any of them set
# the small bodies go through libcurl, which honours them (and NO_PROXY).
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def _s3_gets(env: Mapping[str, str]) -> str:
    value = _choice(env, "RELOCATE_S3_GETS", ("auto", "sockets", "curl", "threads"))
    if value == "auto" and any(env.get(v) for v in PROXY_VARS):
        return "curl"
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = (env.get(name) or "auto").strip().lower()
    if value not in allowed:
        raise UsageError(f"{name}={value!r}: must be one of {', '.join(allowed)}")
    return value


def _number(env: Mapping[str, str], name: str, *, above: float | None = None, least: float | None = None) -> float | None:
    """As before: a value that is not a number is ignored (the default stands), and so is
    one out of range (docs/transfer.md, "Tuning"): RELOCATE_STALL_TIMEOUT=0 aborted every
    lane at once, so every batch failed its tries and the move exited 5 "running again
    resumes", which it never could. `above`: it must be greater; `least`: at least this."""
    try:
        got = float(env[name]) if env.get(name) else None
    except ValueError:
        return None
    if got is None or not math.isfinite(got) or (above is not None and got <= above) or (least is not None and got < least):
        return None
    return got


def _int(env: Mapping[str, str], name: str) -> int | None:
    """A count (tries, objects, keys): at least 1, else ignored like a word."""
    got = _number(env, name)
    return int(got) if got is not None and got >= 1 else None


@dataclass(frozen=True)
class Login:
    """How relocate logs in over SSH, the same for the target, source hosts and bastions."""

    accept_new_host_key: bool = False  # --accept-new-host-key: trust an unknown key on first use
    passphrase: Secret | None = None  # RELOCATE_SSH_KEY_PASSPHRASE: for an encrypted identity_file
    openssh: bool = True  # RELOCATE_BULK_SSH=paramiko turns the system `ssh` off for every stream


@dataclass(frozen=True)
class Transfer:
    """How the transfer engine pushes objects (execute/objects.BucketPusher)."""

    transfers: int = TRANSFERS  # concurrent S3 GETs
    lanes: int = field(default_factory=default_lanes)  # SSH connections, one stream of batches each
    bwlimit: float | None = None  # bytes per second, all lanes together
    stall_s: float = STALL_S
    engine: str = "auto"  # bulk streams: "openssh" client binary when it can log in, else "paramiko"
    attempts: int = ATTEMPTS
    backoff_s: float = BACKOFF_S
    receiver: str = "auto"  # auto | python (the agent) | sh (tar): execute/wire.choose
    batch_objects: int | None = None  # at most this many objects a batch (None: sized by plan_batches)
    keep_cache: bool = False  # the receiver leaves what it wrote in the target's page cache (targets/dropbehind.py)

    @classmethod
    def tuned(cls, tuning: Tuning, **kw: Any) -> "Transfer":
        """These options with the RELOCATE_* tuning applied."""
        base = cls(**kw)
        return dataclasses.replace(
            base,
            stall_s=tuning.stall_s if tuning.stall_s is not None else base.stall_s,
            backoff_s=tuning.backoff_s if tuning.backoff_s is not None else base.backoff_s,
            attempts=tuning.attempts if tuning.attempts is not None else base.attempts,
            engine="paramiko" if tuning.bulk_ssh == "paramiko" else base.engine,
            receiver=tuning.receiver, batch_objects=tuning.batch_objects, keep_cache=tuning.page_cache == "keep")


@dataclass(frozen=True)
class Settings:
    """Everything `plan` and `move` decide from their options and the environment."""

    login: Login = field(default_factory=Login)
    accepted_risks: tuple[str, ...] = ()  # --accept-risk (and a saved plan's)
    profile_dirs: tuple[Path, ...] = ()  # RELOCATE_PROFILES' directories, then --profiles
    switches: Switches = field(default_factory=Switches)
    checksum: bool = False  # objects already on the target are re-hashed there, not only sized
    probe: bool = False  # `plan --probe`: measure S3 read and SSH write rates instead of assuming them
    bulk_login: int = 0  # `move`: start this many bulk lanes' ssh logins while the source is listed
    tuning: Tuning = field(default_factory=Tuning)
    transfer: Transfer = field(default_factory=Transfer)
    keep_snapshot: bool = False  # --keep-snapshot: a local copy of every object too
    # --deadline (epoch seconds): a step the plan marked `deadline_bound` starts only if it
    # can finish in time (plan/deadline.py).
    deadline: float | None = None
    clock: Callable[[], float] = time.time
    on_event: Callable[[dict[str, Any]], None] | None = None  # item/warning events for `--json` NDJSON
    age_identity: Secret | None = None  # RELOCATE_AGE_IDENTITY: the snapshot key instead of snapshot.key_file

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, accept_new_host_key: bool = False,
                 profiles: Path | None = None, transfers: int = TRANSFERS, lanes: int | None = None,
                 bwlimit: float | None = None, **options: Any) -> "Settings":
        """The CLI edge: the command's options plus every RELOCATE_* variable the library
        uses, read here once (`env`: the CLI passes os.environ). A bad value is exit 2
        before any connection."""
        tuning = Tuning.from_env(env)
        login = Login(accept_new_host_key=accept_new_host_key, passphrase=env_secret(env, "RELOCATE_SSH_KEY_PASSPHRASE"),
                      openssh=tuning.bulk_ssh != "paramiko")
        transfer = Transfer.tuned(tuning, transfers=transfers, lanes=lanes or default_lanes(), bwlimit=bwlimit)
        return cls(login=login, profile_dirs=tuple(profile_dirs(profiles, env)), tuning=tuning, transfer=transfer,
                   age_identity=env_secret(env, "RELOCATE_AGE_IDENTITY"), **options)


PROFILES_VAR = "RELOCATE_PROFILES"


def profile_dirs(extra_dir: Path | None, env: Mapping[str, str]) -> list[Path]:
    """$RELOCATE_PROFILES' directories (from `env`, the CLI's environment), then `extra_dir`.
    (Here, not in policy/: every command reads it, and only a plan with a provider loads
    the policy code.)"""
    dirs = [Path(p).expanduser() for p in env.get(PROFILES_VAR, "").split(os.pathsep) if p.strip()]
    if extra_dir is not None:
        dirs.append(Path(extra_dir).expanduser())
    # `--profiles` often arrives from the same env var too (Typer envvar): load each directory once.
    unique: dict[Path, Path] = {}
    for d in dirs:
        unique.setdefault(d.resolve(), d)
    return list(unique.values())


def env_secret(env: Mapping[str, str], name: str) -> Secret | None:
    """A variable holding a secret: a `Secret` from the moment it is read (a traceback's
    locals or a log line show `***`); unset or empty is None."""
    value = env.get(name)
    return Secret(value) if value else None
