"""Fuzzing the YAML loaders: malformed or hostile input gives ConfigError (exit 2), never another exception."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relocate.errors import ConfigError, ExitCode
from relocate.policy.app import app_from_parts
from relocate.policy.profiles import shipped_categories
from relocate.policy.schema import parse_categories, parse_provider, parse_yaml

CATEGORIES = shipped_categories()
VALID = yaml.safe_load((Path(__file__).parent / "data" / "profiles" / "providers" / "strict.yaml").read_text())


def _load_provider(text: str | bytes) -> None:
    parse_provider(parse_yaml(text, "providers/strict.yaml"), CATEGORIES, expected_id="strict")


def _must_be_config_error_or_ok(fn, *args) -> None:
    try:
        fn(*args)
    except ConfigError as exc:
        assert exc.exit_code == ExitCode.USAGE
        assert exc.line() and "\n" not in exc.message.split(" (and ")[0]


def test_the_valid_profile_parses() -> None:
    _load_provider(yaml.safe_dump(VALID))


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                    st.dates().map(str))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = [p for p in _paths(VALID) if p]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), values), min_size=1, max_size=3))
def test_mutated_profiles_give_config_errors(mutations) -> None:
    doc = copy.deepcopy(VALID)
    for path, value in mutations:
        node = doc
        try:
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced the parent
    _must_be_config_error_or_ok(_load_provider, yaml.safe_dump(doc))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_gives_config_errors(text: str) -> None:
    _must_be_config_error_or_ok(_load_provider, text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_config_errors(data: bytes) -> None:
    _must_be_config_error_or_ok(_load_provider, data)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="{}[]:-,&*!|>'\"#%@`\n ab1", max_size=120))
def test_yaml_punctuation_soup_gives_config_errors(text: str) -> None:
    _must_be_config_error_or_ok(_load_provider, text)
    _must_be_config_error_or_ok(lambda t: parse_categories(parse_yaml(t, "categories.yaml")), text)


HOSTILE = {
    "python tag": "!!python/object/apply:os.system ['echo pwned']\n",
    "alias bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
    "deep nesting": "[" * 5000 + "]" * 5000,
    "bad timestamp": "id: strict\ndocuments: [{reviewed: 2026-13-45}]\n",
    "unhashable key": "? [a, b]\n: c\n",
    "two documents": "id: a\n---\nid: b\n",
    "binary junk": "!!binary 'not base64 @@@'\n",
    "nul byte": "id: \x00\n",
    "huge int key": "99999999999999999999999999: x\n",
    "non-string keys": "1: a\ntrue: b\nnull: c\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_yaml_is_refused_cleanly(name: str) -> None:
    with pytest.raises(ConfigError):
        _load_provider(HOSTILE[name])


@settings(max_examples=300, deadline=None)
@given(values, values, values)
def test_app_section_shapes(content, moderation, dependencies) -> None:
    _must_be_config_error_or_ok(app_from_parts, content, moderation, dependencies)
