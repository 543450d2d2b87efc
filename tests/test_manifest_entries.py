"""The snapshot manifest's bucket entries (and the target's sidecar) are typed values
(snapshot/manifest.py) that keep the JSON shape docs/json.md and older snapshots have."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from relocate.snapshot.journal import DoneObject
from relocate.snapshot.manifest import BucketEntry, ObjectEntry
from relocate.sources.inventory import ObjectInfo, version_key
from relocate.snapshot.store import json_chunks


def _text(data: object) -> str:
    """The manifest's text, its pieces joined (store.json_chunks)."""
    return "".join(json_chunks(data))


def test_current_objects_keep_their_json_shape() -> None:
    done = DoneObject("media", "a/b.jpg", "etag1", 12, "data/media/a/b.jpg", "ab" * 32, "image/jpeg", {"k": "v"})
    entry = BucketEntry("media", "a/", "data/media", [ObjectEntry.from_done(done)])
    d = json.loads(json.dumps(entry.to_dict()))
    assert list(d) == ["bucket", "prefix", "to", "objects"]
    assert d["objects"] == [{"key": "a/b.jpg", "path": "data/media/a/b.jpg", "size": 12, "sha256": "ab" * 32,
                             "etag": "etag1", "content_type": "image/jpeg", "metadata": {"k": "v"}}]
    back = BucketEntry.from_dict(d)
    assert back == entry and not back.versions
    assert back.objects[0].journal_key == "a/b.jpg" and back.objects[0].done("media") == done


def test_older_versions_carry_their_version_and_markers() -> None:
    vkey = version_key("a.txt", "v1")
    done = DoneObject("docs#versions", vkey, "e", 3, "data/docs/a.txt.v1", "cd" * 32, None, {})
    markers = [{"key": "gone.txt", "version_id": "m1", "last_modified": "2026-01-01T00:00:00Z", "latest": True}]
    entry = BucketEntry("docs", "", "data/docs", [ObjectEntry.from_done(done, versions=True)], "docs#versions", markers)
    d = json.loads(json.dumps(entry.to_dict()))
    assert list(d) == ["bucket", "prefix", "to", "journal_bucket", "delete_markers", "objects"]
    assert d["objects"][0]["key"] == "a.txt" and d["objects"][0]["version_id"] == "v1"
    back = BucketEntry.from_dict(d)
    assert back == entry and back.versions
    assert back.objects[0].journal_key == vkey  # what verify hands the journal to forget
    assert back.objects[0].done("docs#versions") == done


def test_an_entry_read_back_from_the_target_has_its_types_whatever_the_json_said() -> None:
    """The sidecar and receipts come back from the target: a forged or damaged value is a
    string that matches nothing, or the entry is refused, never an int where a key belongs."""
    e = ObjectEntry.from_dict({"key": 7, "path": "data/7", "size": "3", "sha256": "ab" * 32, "etag": 1,
                               "content_type": 5, "metadata": {"n": 2}, "version_id": 9})
    assert (e.key, e.size, e.etag, e.content_type, e.metadata, e.version_id) == ("7", 3, "1", "5", {"n": "2"}, "9")
    good = {"key": "k", "path": "p", "size": 1, "sha256": "ab" * 32, "etag": "e"}
    damaged = [{**good, "size": "many"}, {**good, "metadata": [1]}, {k: v for k, v in good.items() if k != "key"}]
    for d in damaged:
        try:
            ObjectEntry.from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        raise AssertionError(f"accepted {d}")


def test_manifest_text_is_the_same_json_a_record_per_line() -> None:
    # snapshot/store.json_chunks: the C encoder per record instead of json.dump(indent=1)'s
    # Python one; what it writes must parse back to the same document, keys in order,
    # non-ASCII kept, with one object's entry per line.

    objects = [ObjectEntry.from_done(DoneObject("b", f"k\u00e9/{i}\"}}, {{", "e", i, f"data/{i}", "ab" * 32, None,
                                                {"m": "\u2603"})).to_dict() for i in range(3)]
    doc = {"format_version": 1, "buckets": [BucketEntry("b", "", "data", []).to_dict() | {"objects": objects},
                                            {"bucket": "c", "objects": []}],
           "env_files": [], "components": {"dns": [{"zone": "x"}], "none": {}}, "left_out": []}
    text = _text(doc)
    assert json.loads(text) == doc and list(json.loads(text)) == list(doc)
    assert "\u2603" in text and "\\u" not in text
    lines = text.splitlines()
    for o in objects:
        assert sum(json.dumps(o, ensure_ascii=False) in line for line in lines) == 1
    assert _text({"a": 1}) == '{"a": 1}' and json.loads(_text([])) == []
    # a list is laid out by its first record; one of another shape further on is still the same JSON
    mixed = {"rows": [{"a": 1}, {"b": [{"c": 2}]}, {"d": {"e": [{"f": 3}]}}]}
    assert json.loads(_text(mixed)) == mixed and len(_text(mixed).splitlines()) == 7


@pytest.mark.parametrize("ascii_only", [True, False])
@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")])
def test_the_compact_encoder_writes_what_json_dumps_writes(ascii_only: bool, separators: tuple[str, str]) -> None:
    """snapshot/jsonenc.py's encoder (made once, for the records written per object) gives
    json.dumps's exact text, so the journal's metadata and the receipts read as before; and
    it refuses what json.dumps refuses."""
    from relocate.snapshot.jsonenc import compact

    encode = compact(ascii_only=ascii_only, separators=separators)
    for value in ({}, {"a": "b"}, {"ünï": "cödé \u2028 \" \\ \n\t\x01"}, [1, 2.5, True, None, "s", -0.0, 10**20],
                  {"bucket": "b", "size": 4096, "content_type": None, "metadata": {"x": "y"}, "nested": [{"k": []}]},
                  "just a string", 3):
        assert encode(value) == json.dumps(value, ensure_ascii=ascii_only, separators=separators)
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode({"when": object()})


def test_the_records_kept_per_object_carry_no_dict_of_their_own() -> None:
    """A plain `move` holds one listing record and one journal record per object until its
    snapshot is checked, and one manifest entry each at the end (docs/transfer.md,
    "Memory"): slotted, each is its fields and no per-instance __dict__; still frozen."""
    done = DoneObject("media", "a.jpg", "e", 1, "data/media/a.jpg", "ab" * 32, None, {})
    for record in (ObjectInfo("a.jpg", 1, "e", 0.0), done, ObjectEntry.from_done(done)):
        assert not hasattr(record, "__dict__"), type(record).__name__
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.size = 2  # type: ignore[misc]


def test_a_moved_bucket_keeps_its_entries_typed_until_they_are_written(tmp_path: Path) -> None:
    """kinds/objects.py keeps a moved bucket's entry from the sidecar's writing until the
    snapshot's with its objects as store.Records: no dict per object is held (a third of
    a 100,000-object move's peak memory), and each is made only as json_chunks encodes
    it, a slice at a time. The text is the very same as from a list of dicts, on the
    target (written in pieces) and in the manifest, including a bucket laid out on one
    line because the one before it was empty."""
    from relocate.snapshot import store

    entries = [ObjectEntry.from_done(DoneObject("b", f"k\u00e9/{i}", "e", i, f"data/{i}", "ab" * 32,
                                                None if i % 3 else "text/plain", {"m": str(i)} if i % 2 else {}))
               for i in range(store.CHUNK_RECORDS * 2 + 7)]
    full, empty = BucketEntry("b", "", "data", entries), BucketEntry("e", "", "other", [])
    lazy = full.to_dict(lazy=True)
    assert type(lazy["objects"]) is store.Records and lazy["objects"].items is entries
    assert all(type(o) is ObjectEntry for o in lazy["objects"].items) and not hasattr(lazy["objects"], "__dict__")
    assert lazy["objects"] == full.to_dict()["objects"] and lazy["objects"][5] == entries[5].to_dict()
    for first, second in ((full, empty), (empty, full)):
        doc = {"format_version": 1, "buckets": [first.to_dict(), second.to_dict()], "left_out": []}
        kept = {"format_version": 1, "buckets": [first.to_dict(lazy=True), second.to_dict(lazy=True)], "left_out": []}
        text = _text(doc)
        assert _text(kept) == text and json.loads(text) == doc
        pieces = list(store.json_chunks(kept))
        assert "".join(pieces) == text and len(pieces) > 3  # never one string for the whole document
        store.write_json_atomic(tmp_path / "m.json", kept)
        assert (tmp_path / "m.json").read_text(encoding="utf-8") == text
    with pytest.raises(TypeError, match="not JSON serializable"):
        _text({"a": [{"b": object()}]})


def test_the_final_check_reads_entries_typed_and_nothing_else(tmp_path: Path) -> None:
    """execute/verify.py reads the manifest back with manifest.entries_as_read: each
    object's entry comes out of the parser as its ObjectEntry (no dict per object held),
    equal to the one written; a dict of other keys, user metadata with an entry's very
    keys (strings only) and a damaged entry stay dicts, so BucketEntry.from_dict still
    refuses the damaged one as before."""
    from relocate.snapshot import store
    from relocate.snapshot.manifest import entries_as_read

    meta = {"key": "k", "path": "p", "size": "1", "sha256": "s", "etag": "e"}
    entries = [ObjectEntry.from_done(DoneObject("b", f"k{i}", "e", i, f"data/{i}", "ab" * 32, None, dict(meta)))
               for i in range(3)]
    doc = {"format_version": store.MANIFEST_FORMAT, "buckets": [BucketEntry("b", "", "data", entries).to_dict(lazy=True)],
           "components": {"db": {"x": {"path": "p", "size": 1, "sha256": "s"}}}}
    snap = store.Snapshot(tmp_path)
    store.write_json_atomic(snap.manifest_path, doc)
    read = snap.manifest(object_hook=entries_as_read)
    assert [type(o) for o in read["buckets"][0]["objects"]] == [ObjectEntry] * 3
    assert BucketEntry.from_dict(read["buckets"][0]).objects == entries and entries[0].metadata == meta
    assert read["components"] == doc["components"]
    damaged = {**entries[0].to_dict(), "size": 1, "metadata": ["not", "a", "mapping"]}
    assert entries_as_read(damaged) is damaged
    with pytest.raises(AttributeError):
        BucketEntry.from_dict({"bucket": "b", "to": "data", "objects": [damaged]})
