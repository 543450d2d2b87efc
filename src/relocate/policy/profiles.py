"""Find and load profiles: the shipped set, then user directories that add or override.

Order (later wins, by provider id or category id):
  1. the profiles shipped inside the package (relocate/profiles/),
  2. each directory in $RELOCATE_PROFILES (os.pathsep-separated),
  3. the `--profiles DIR` given on the command line.
A directory holds `categories.yaml` (optional) and provider files in `providers/`
(or directly in the directory). Overriding a shipped provider is how an operator
records a newer reading of its terms without waiting for a release.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from relocate.errors import ConfigError
from relocate.policy.schema import Category, ProfileError, Provider, parse_categories, parse_provider, parse_yaml
from relocate.settings import profile_dirs

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "profiles"
_MAX_FILE_BYTES = 1 << 20  # a profile is a few KiB; refuse to parse something absurd


@dataclass
class ProfileSet:
    categories: dict[str, Category] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)

    def resolve(self, name: str) -> Provider | None:
        """A provider by id or alias (`route53` -> aws), so dependencies can use product names."""
        key = name.strip().lower()
        if key in self.providers:
            return self.providers[key]
        for p in self.providers.values():
            if key in p.aliases:
                return p
        return None

    def get(self, name: str) -> Provider:
        found = self.resolve(name)
        if found is None:
            near = difflib.get_close_matches(name, list(self.providers), n=1)
            hint = f"did you mean {near[0]!r}?" if near else "see `relocate profiles list`"
            raise ConfigError(f"no provider profile {name!r}", hint=hint)
        return found


def _read(path: Path, label: str) -> bytes:
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            raise ConfigError(f"{label}: larger than {_MAX_FILE_BYTES} bytes; not a profile")
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read ({exc.strerror})") from None


def _provider_files(directory: Path) -> list[Path]:
    files = sorted(directory.glob("*.yaml")) + sorted((directory / "providers").glob("*.yaml"))
    return [f for f in files if f.name != "categories.yaml"]


def _label(path: Path, root: Path, shipped: bool) -> str:
    # Shipped files are named as the design card does (providers/hetzner.yaml); user files by full path.
    return str(path.relative_to(root)) if shipped else str(path)


def _load_dir(directory: Path, base: ProfileSet, *, shipped: bool, errors: list[str]) -> ProfileSet:
    """Merge one directory over `base`, appending every error to `errors` instead of stopping."""
    if not directory.is_dir():
        raise ConfigError(f"profiles directory not found: {directory}")
    categories = dict(base.categories)
    cat_file = directory / "categories.yaml"
    if cat_file.exists():
        label = _label(cat_file, directory, shipped)
        try:
            categories = parse_categories(parse_yaml(_read(cat_file, label), label), categories)
        except ProfileError as exc:
            errors.extend(exc.errors)
        except ConfigError as exc:
            errors.append(exc.line())
    providers = dict(base.providers)
    for path in _provider_files(directory):
        label = _label(path, directory, shipped)
        try:
            provider = parse_provider(parse_yaml(_read(path, label), label), categories, expected_id=path.stem)
        except ProfileError as exc:
            errors.extend(exc.errors)
            continue
        except ConfigError as exc:
            errors.append(exc.line())
            continue
        providers[provider.id] = provider
    return ProfileSet(categories, providers)


@functools.lru_cache(maxsize=1)
def _shipped_categories() -> tuple[tuple[str, Category], ...]:
    path = SHIPPED_DIR / "categories.yaml"
    return tuple(parse_categories(parse_yaml(_read(path, "categories.yaml"), "categories.yaml")).items())


def shipped_categories() -> dict[str, Category]:
    """The shipped vocabulary, for callers that pass providers without a ProfileSet."""
    return dict(_shipped_categories())


def load_profiles(extra_dir: Path | None = None, *, env: Mapping[str, str] | None = None) -> ProfileSet:
    """Shipped profiles merged with $RELOCATE_PROFILES (in `env`: the CLI passes its
    environment; the library reads none) and `extra_dir`. Raises ProfileError (exit 2)."""
    return load_profile_dirs(profile_dirs(extra_dir, env or {}))


def load_profile_dirs(dirs: Iterable[Path]) -> ProfileSet:
    """Shipped profiles merged with those in `dirs`, in order. Raises ProfileError (exit 2)."""
    errors: list[str] = []
    result = _load_dir(SHIPPED_DIR, ProfileSet(), shipped=True, errors=errors)
    for directory in dirs:
        result = _load_dir(directory, result, shipped=False, errors=errors)
    if errors:
        raise ProfileError(errors)
    return result


def lint_dir(directory: Path | None = None) -> tuple[ProfileSet, list[str]]:
    """Validate one directory (default: the shipped profiles) over the shipped categories; every error listed."""
    errors: list[str] = []
    shipped = directory is None or Path(directory).resolve() == SHIPPED_DIR
    base = ProfileSet() if shipped else _load_dir(SHIPPED_DIR, ProfileSet(), shipped=True, errors=[])
    # A user directory is checked on its own: keep the shipped categories, drop shipped providers.
    base = ProfileSet(base.categories, {})
    result = _load_dir(SHIPPED_DIR if shipped or directory is None else Path(directory), base, shipped=shipped, errors=errors)
    if not result.categories:
        errors.append("categories.yaml: no categories defined")
    return result, errors
