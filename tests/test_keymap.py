"""The documented key -> path rule (snapshot/keymap.py): safe, injective, reversible."""

from __future__ import annotations

import posixpath

from hypothesis import given, settings
from hypothesis import strategies as st

from relocate.snapshot.keymap import MAX_SEGMENT, decode_path, encode_key, map_keys

HOSTILE = [
    "../../etc/x", "/abs", "a//b", ".", "..", "a/../../b", "./a", "a/.", "a/..", "/", "//", "///x//",
    "a", "a/b", "a/b/c", "x" * 300, "d/" + "y" * 300, "d/" + "y" * 300 + "/z", "new\nline", "tab\there",
    "back\\slash", "per%cent", "per%25cent", "%%", "%2E%2E", "nul\x00byte", "del\x7f", "ünïcødé/ключ",
    "trailing/", "trailing", "sp ace", "$(rm -rf ~)", "'quote\"", "-leading-dash", "a/b/", "a/b//",
]


def _safe(path: str) -> None:
    assert path, "empty path"
    assert not path.startswith("/"), path
    segments = path.split("/")
    for seg in segments:
        assert seg not in ("", ".", ".."), (path, seg)
        assert len(seg.encode("utf-8", "surrogatepass")) <= 255, (path, len(seg))
        assert "\x00" not in seg and "\n" not in seg
    # and so it cannot leave the bucket's directory, however joined
    assert posixpath.normpath(posixpath.join("/bucket", path)).startswith("/bucket/")


def _no_file_dir_clash(paths: list[str]) -> None:
    files = set(paths)
    for p in paths:
        parts = p.split("/")
        for i in range(1, len(parts)):
            assert "/".join(parts[:i]) not in files, f"{p!r} needs {'/'.join(parts[:i])!r} as a directory, but it is a file"


def test_plain_keys_are_kept() -> None:
    for key in ["a", "a/b/c.txt", "photos/2021/01/cat.jpg", "ünïcødé/ключ", "sp ace", "$(rm -rf ~)"]:
        assert encode_key(key) == key


def test_documented_examples() -> None:
    assert encode_key("../../etc/x") == "%2E%2E/%2E%2E/etc/x"
    assert encode_key("/abs") == "%2Fabs"
    assert encode_key("a//b") == "a/%2Fb"
    assert encode_key(".") == "%2E"
    assert encode_key("..") == "%2E%2E"
    assert encode_key("trailing/") == "trailing%2F"
    assert encode_key("new\nline") == "new%0Aline"
    assert encode_key("per%cent") == "per%25cent"
    assert encode_key("back\\slash") == "back%5Cslash"


def test_steps_1_to_3_are_reversible() -> None:
    for key in HOSTILE:
        path = encode_key(key)
        if "%%" in path:
            continue  # long segments: recorded in the sidecar instead
        assert decode_path(path) == key, (key, path)


def test_long_segments_are_cut_and_tagged() -> None:
    path = encode_key("x" * 300)
    assert "%%" in path and len(path.encode()) <= MAX_SEGMENT + 18
    assert decode_path(path) is None  # not decodable: the sidecar has the key
    assert encode_key("x" * 300) != encode_key("x" * 301)


def test_hostile_set_maps_safely_and_injectively() -> None:
    mapped = map_keys(HOSTILE)
    assert set(mapped) == set(HOSTILE)
    paths = list(mapped.values())
    assert len(set(paths)) == len(paths), "two keys share one path"
    for p in paths:
        _safe(p)
    _no_file_dir_clash(paths)


def test_file_beside_directory() -> None:
    mapped = map_keys(["a", "a/b", "a/b/c"])
    assert mapped["a/b/c"] == "a/b/c"
    assert mapped["a"].startswith("a%%") and mapped["a/b"].startswith("a/b%%")
    _no_file_dir_clash(list(mapped.values()))


def test_map_keys_is_stable_when_unrelated_keys_are_added() -> None:
    # A rerun with more objects at the source must not move files already delivered.
    before = map_keys(["x/1", "y", "z/2"])
    after = map_keys(["x/1", "y", "z/2", "w/3", "new"])
    assert all(after[k] == v for k, v in before.items())


keys = st.text(min_size=1, max_size=40).map(lambda s: s.replace("\ud800", ""))  # S3 keys are non-empty
slashy = st.lists(st.sampled_from(["", ".", "..", "a", "b", "%", "%%", "x" * 210, "\n", "\\", "é"]), min_size=1, max_size=6).map("/".join)
any_key = st.one_of(keys, slashy).filter(bool)


@settings(max_examples=400, deadline=None)
@given(st.lists(any_key, min_size=1, max_size=25, unique=True))
def test_property_safe_injective_no_clash(keyset: list[str]) -> None:
    mapped = map_keys(keyset)
    paths = list(mapped.values())
    assert len(set(paths)) == len(paths)
    for p in paths:
        _safe(p)
    _no_file_dir_clash(paths)


@settings(max_examples=400, deadline=None)
@given(any_key)
def test_property_reversible_unless_tagged(key: str) -> None:
    path = encode_key(key)
    _safe(path)
    decoded = decode_path(path)
    if "%%" in path:
        assert decoded is None
    else:
        assert decoded == key


def test_strip_prefix_maps_the_rest_of_the_key_and_stays_injective() -> None:
    keys = ["legal/terms.pdf", "legal/2021/privacy.pdf", "legal/", "legal//x", "legal/legal/", "legal/a", "legal/a/b",
            "legal/" + "z" * 300, "legal/../up"]
    mapped = map_keys(keys, "legal/")
    assert mapped["legal/terms.pdf"] == "terms.pdf" and mapped["legal/2021/privacy.pdf"] == "2021/privacy.pdf"
    # the prefix itself (a "folder" object) has nothing left: a tagged name no other key can take
    assert mapped["legal/"].startswith("%%") and len(mapped["legal/"]) == 18
    assert len(set(mapped.values())) == len(keys)
    for path in mapped.values():
        _safe(path)
    _no_file_dir_clash(list(mapped.values()))
    # hashes are of the whole key: the same rest under another prefix is another tag
    assert map_keys(["other/"], "other/")["other/"] != mapped["legal/"]


@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=30, unique=True))
@settings(max_examples=200, deadline=None)
def test_strip_prefix_property(rests: list[str]) -> None:
    keys = ["p/" + r for r in rests]
    mapped = map_keys(keys, "p/")
    assert len(set(mapped.values())) == len(keys)
    for path in mapped.values():
        _safe(path)
    _no_file_dir_clash(list(mapped.values()))
