"""The journal of items already on a target: SQLite in WAL mode, so a kill -9 loses
at most the batch in flight, and a rerun skips what is done."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from relocate.errors import ConfigError
from relocate.snapshot.jsonenc import compact

# Each object's metadata as json.dumps wrote it (rows written before read the same),
# by an encoder made once: one call per object as each batch is journalled.
_metadata = compact(ascii_only=True, separators=(", ", ": "))


@dataclass(frozen=True, slots=True)  # one per object moved, kept until the move ends: no __dict__ each
class DoneObject:
    bucket: str
    key: str
    etag: str
    size: int
    path: str  # relative to target.root
    sha256: str
    content_type: str | None
    metadata: dict[str, str]


class Journal:
    def __init__(self, path: Path, readonly: bool = False) -> None:
        """`readonly` (what the gather needs): no write, and so no checkpoint when it is
        closed. The last writer's close checkpoints the WAL into the database (fsyncs); a
        move killed before its close left that to the next connection, and a resume paid
        it in its gather, 0.02-0.6 s on a busy disk (issue 18). The move's own writer does
        it once, at its end."""
        if readonly:
            try:
                self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                          check_same_thread=False)
                self.db.execute("SELECT 1 FROM objects LIMIT 1")
                return
            except sqlite3.Error:  # no journal yet (or not a journal): read as empty
                self.db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            except (OSError, sqlite3.Error) as exc:  # snapshot.dir unusable: one line, exit 2, not a bug
                raise ConfigError(f"snapshot.dir: {path}: cannot write the journal ({getattr(exc, 'strerror', None) or exc})") from None
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            """CREATE TABLE IF NOT EXISTS objects (
                 target TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL,
                 etag TEXT NOT NULL, size INTEGER NOT NULL, path TEXT NOT NULL,
                 sha256 TEXT NOT NULL, content_type TEXT, metadata TEXT NOT NULL,
                 PRIMARY KEY (target, bucket, key))"""
        )

    def record(self, target: str, items: Iterable[DoneObject]) -> None:
        rows = [(target, o.bucket, o.key, o.etag, o.size, o.path, o.sha256, o.content_type, _metadata(o.metadata)) for o in items]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def forget(self, target: str, bucket: str, keys: Iterable[str]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM objects WHERE target=? AND bucket=? AND key=?", [(target, bucket, k) for k in keys])

    def done(self, target: str, bucket: str) -> dict[str, DoneObject]:
        cur = self.db.execute(
            "SELECT bucket, key, etag, size, path, sha256, content_type, metadata FROM objects WHERE target=? AND bucket=?",
            (target, bucket),
        )
        rows = cur.fetchall()
        try:  # one parse for every row's metadata, not 10,000 calls of json.loads (a rerun's CPU)
            metas = json.loads("[" + ",".join(r[7] for r in rows) + "]")
        except ValueError:
            metas = [json.loads(r[7]) for r in rows]
        return {r[1]: DoneObject(r[0], r[1], r[2], r[3], r[4], r[5], r[6], m) for r, m in zip(rows, metas)}

    def close(self) -> None:
        self.db.close()
