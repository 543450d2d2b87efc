"""The one error tree. Only the CLI edge turns these into a line and an exit code."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Stable exit codes; CI scripts depend on them (README documents the table)."""

    OK = 0
    BUG = 1
    USAGE = 2
    BLOCKED = 3
    DIFFERENCES = 4
    TRANSIENT = 5
    REFUSED = 6


class RelocateError(Exception):
    """Base of every error relocate expects; message is one line, with what to do."""

    exit_code: ExitCode = ExitCode.BUG

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(RelocateError):
    """relocate.yaml, a profile, or a flag is wrong; the user must fix the input."""

    exit_code = ExitCode.USAGE


class UsageError(ConfigError):
    pass


class SourceError(RelocateError):
    """The source refused or lacks something in a way that re-running will not fix."""

    exit_code = ExitCode.USAGE


class TargetError(RelocateError):
    """The target refused (permission, disk, login) in a way re-running will not fix."""

    exit_code = ExitCode.USAGE


class BlockedError(RelocateError):
    exit_code = ExitCode.BLOCKED


class VerificationError(RelocateError):
    exit_code = ExitCode.DIFFERENCES


class ItemError(RelocateError):
    """One item cannot be written and retrying will not change that (a name too long, a
    file where a directory must be): exit 4 naming the item, never 5 ("running again")."""

    exit_code = ExitCode.DIFFERENCES

    def lines(self) -> list[str]:
        """What a report's `failed` lists: one line per item named."""
        return [self.line()]


class ItemsFailed(ItemError):
    """Some objects can never be written; every other one was delivered. `items` is
    {key: why}, each key a line of its own in `failed` (and the snapshot's manifest)."""

    def __init__(self, where: str, items: dict[str, str], *, hint: str | None = None) -> None:
        key, why = next(iter(items.items()))
        super().__init__(f"{len(items)} object(s) of {where} cannot be stored on the target (first: {key}: {why})", hint=hint)
        self.items = items

    def lines(self) -> list[str]:
        return [f"{key}: {why}" for key, why in self.items.items()]


class TransientError(RelocateError):
    """Network, throttling, expired credentials: running again resumes."""

    exit_code = ExitCode.TRANSIENT


class SafetyError(RelocateError):
    """Refused for safety: host key, stale plan, lock held, read-only source guard."""

    exit_code = ExitCode.REFUSED


class HostKeyError(SafetyError):
    pass


class DriftError(SafetyError):
    pass
