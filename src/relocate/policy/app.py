"""The app's side of a verdict: what it hosts, how it moderates, whom it depends on.

Built from relocate.yaml's `app:` section. Kept apart from config parsing so the
engine can be tested and called (by `relocate plan`) without a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relocate.errors import ConfigError

@dataclass(frozen=True)
class Moderation:
    """What the app declares about its moderation; judged per provider by relocate.policy.moderation."""

    moderators: int | None = None
    report_response_hours: float | None = None
    automated_filtering: bool | None = None
    published_rules: bool | None = None
    notice_channel: bool | None = None  # a way for people to report content (and the provider to send notices)
    daily_active_users: int | None = None
    posts_per_day: int | None = None


@dataclass(frozen=True)
class AppProfile:
    content: list[str] = field(default_factory=list)
    moderation: Moderation | None = None
    dependencies: dict[str, str] = field(default_factory=dict)


def _opt(raw: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}.{key}: must be a number, not a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}.{key}: must be {getattr(kind, '__name__', 'a number')}, not {type(value).__name__}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 <= value < float("inf"):
        raise ConfigError(f"{where}.{key}: must be zero or more")
    return value


def moderation_from_mapping(raw: Mapping[str, Any] | None, where: str = "app.moderation") -> Moderation | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping")
    allowed = {"moderators", "report_response_hours", "automated_filtering", "published_rules", "notice_channel",
               "daily_active_users", "posts_per_day"}
    unknown = [k for k in raw if not (isinstance(k, str) and (k in allowed or k.startswith("x-")))]
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (valid: {', '.join(sorted(allowed))})")
    hours = _opt(raw, "report_response_hours", (int, float), where)
    return Moderation(
        moderators=_opt(raw, "moderators", int, where),
        report_response_hours=float(hours) if hours is not None else None,
        automated_filtering=_opt(raw, "automated_filtering", bool, where),
        published_rules=_opt(raw, "published_rules", bool, where),
        notice_channel=_opt(raw, "notice_channel", bool, where),
        daily_active_users=_opt(raw, "daily_active_users", int, where),
        posts_per_day=_opt(raw, "posts_per_day", int, where),
    )


def app_from_parts(content: Any, moderation: Any, dependencies: Any, where: str = "app") -> AppProfile:
    """Check the shapes of relocate.yaml's app section; category names are checked by the engine."""
    if content is None:
        content = []
    if not isinstance(content, list) or not all(isinstance(c, str) for c in content):
        raise ConfigError(f"{where}.content: must be a list of category names")
    if dependencies is None:
        dependencies = {}
    if not isinstance(dependencies, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in dependencies.items()
    ):
        raise ConfigError(f"{where}.dependencies: must map a kind (dns, cdn, ...) to a provider name")
    return AppProfile(list(content), moderation_from_mapping(moderation, f"{where}.moderation"), dict(dependencies))
