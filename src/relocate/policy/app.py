"""The app's side of a verdict: what it hosts, how it moderates, whom it depends on.

Built from relocate.yaml's `app:` section. Kept apart from config parsing so the
engine can be tested and called (by `relocate plan`) without a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relocate.errors import ConfigError

# What "thin" moderation means, in one place, because verdicts hinge on it.
# Parler's case: a volunteer review team with a backlog of days (AWS's letter, Jan 2021).
MAX_RESPONSE_HOURS = 24.0


@dataclass(frozen=True)
class Moderation:
    moderators: int | None = None
    report_response_hours: float | None = None
    automated_filtering: bool | None = None
    published_rules: bool | None = None

    def thin_reasons(self) -> list[str]:
        """Why moderation looks too thin to satisfy a provider; empty when it looks adequate.

        Unknown values count against the app: a provider asking "can you remove this
        within a day?" will not accept "we did not say".
        """
        reasons = []
        if not self.moderators:
            reasons.append("no moderators declared" if self.moderators is None else "zero moderators")
        if self.report_response_hours is None:
            reasons.append("no report response time declared")
        elif self.report_response_hours > MAX_RESPONSE_HOURS:
            reasons.append(f"reports answered in {self.report_response_hours:g} h (> {MAX_RESPONSE_HOURS:g} h)")
        if self.published_rules is False:
            reasons.append("no published rules")
        return reasons


@dataclass(frozen=True)
class AppProfile:
    content: list[str] = field(default_factory=list)
    moderation: Moderation | None = None
    dependencies: dict[str, str] = field(default_factory=dict)

    def moderation_thin(self) -> list[str]:
        if self.moderation is None:
            return ["no moderation declared"]
        return self.moderation.thin_reasons()


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
    allowed = {"moderators", "report_response_hours", "automated_filtering", "published_rules"}
    unknown = [k for k in raw if not (isinstance(k, str) and (k in allowed or k.startswith("x-")))]
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (valid: {', '.join(sorted(allowed))})")
    hours = _opt(raw, "report_response_hours", (int, float), where)
    return Moderation(
        moderators=_opt(raw, "moderators", int, where),
        report_response_hours=float(hours) if hours is not None else None,
        automated_filtering=_opt(raw, "automated_filtering", bool, where),
        published_rules=_opt(raw, "published_rules", bool, where),
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
