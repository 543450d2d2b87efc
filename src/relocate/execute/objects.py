"""Stream S3 objects into the target as one tar stream per batch, hashing on the way.

Objects are read by a thread pool (small ones whole, big ones streamed) and written
in key order into `tar -x` over one SSH exec channel, so bulk data never has to
land on local disk. Each batch lands in a staging directory under target.root, is
hashed there by the target, and only then is hard-linked into place: a killed move
leaves staging debris (cleared by the next run), never a half-written file in place.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

from relocate.errors import TransientError, VerificationError
from relocate.snapshot.journal import DoneObject
from relocate.sources.aws import Aws, translate
from relocate.sources.inventory import ObjectInfo
from relocate.targets import files, shell
from relocate.targets.ssh import Connection, Exec

SMALL_OBJECT = 8 * 1024 * 1024  # read whole by a worker; bigger ones are streamed
PREFETCH_BYTES = 64 * 1024 * 1024  # memory bound for objects read ahead of the writer
BATCH_BYTES = 1024 * 1024 * 1024
BATCH_OBJECTS = 5000
CHUNK = 1024 * 1024


class _ChannelFile(io.RawIOBase):
    """Adapts a remote command's stdin to the file interface tarfile writes to."""

    def __init__(self, proc: Exec) -> None:
        self.proc = proc

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.proc.write(data)
        return len(data)


class _HashingReader:
    """Reads a body while hashing it and, when asked, teeing it into a local file."""

    def __init__(self, body: IO[bytes], tee: IO[bytes] | None) -> None:
        self.body = body
        self.tee = tee
        self.sha = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.body.read(n if n and n > 0 else CHUNK)
        self.sha.update(data)
        self.count += len(data)
        if self.tee is not None:
            self.tee.write(data)
        return data


@dataclass
class _Fetched:
    obj: ObjectInfo
    body: IO[bytes]
    content_type: str | None
    metadata: dict[str, str]


def batches(objects: list[ObjectInfo]) -> Iterator[list[ObjectInfo]]:
    batch: list[ObjectInfo] = []
    size = 0
    for o in objects:
        if batch and (size + o.size > BATCH_BYTES or len(batch) >= BATCH_OBJECTS):
            yield batch
            batch, size = [], 0
        batch.append(o)
        size += o.size
    if batch:
        yield batch


class BucketPusher:
    def __init__(
        self,
        aws: Aws,
        conn: Connection,
        *,
        bucket: str,
        root: str,
        dest: str,
        paths: dict[str, str],
        staging: str,
        transfers: int = 8,
        keep_dir: Path | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.s3 = aws.client("s3")
        self.conn = conn
        self.bucket = bucket
        self.root = root
        self.dest = dest
        self.paths = paths  # key -> path relative to dest
        self.staging = staging
        self.transfers = max(1, transfers)
        self.keep_dir = keep_dir
        self.on_progress = on_progress or (lambda n, b: None)

    def _fetch(self, obj: ObjectInfo) -> _Fetched:
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=obj.key)
            body = resp["Body"]
            if obj.size <= SMALL_OBJECT:
                body = io.BytesIO(body.read())
        except Exception as exc:
            raise translate(exc, f"s3://{self.bucket}/{obj.key}") from exc
        return _Fetched(obj, body, resp.get("ContentType"), dict(resp.get("Metadata") or {}))

    def _ordered(self, pool: ThreadPoolExecutor, objs: list[ObjectInfo]) -> Iterator[_Fetched]:
        """Yield fetched objects in order, with at most PREFETCH_BYTES read ahead."""
        pending: list[tuple[ObjectInfo, Future[_Fetched]]] = []
        ahead = 0
        it = iter(objs)
        exhausted = False
        while True:
            while not exhausted and (not pending or ahead < PREFETCH_BYTES) and len(pending) < self.transfers * 4:
                nxt = next(it, None)
                if nxt is None:
                    exhausted = True
                    break
                pending.append((nxt, pool.submit(self._fetch, nxt)))
                ahead += min(nxt.size, SMALL_OBJECT)
            if not pending:
                return
            obj, fut = pending.pop(0)
            ahead -= min(obj.size, SMALL_OBJECT)
            yield fut.result()

    def push(self, objs: list[ObjectInfo]) -> list[DoneObject]:
        """Send one batch; return what landed, verified by the target's own sha256."""
        stage_dest = posixpath.join(self.staging, self.dest)
        proc = self.conn.start(shell.all_of(["mkdir", "-p", "--", stage_dest], ["tar", "-x", "-f", "-", "-C", stage_dest]))
        sink = io.BufferedWriter(_ChannelFile(proc), buffer_size=CHUNK)
        done: list[DoneObject] = []
        with ThreadPoolExecutor(self.transfers) as pool:
            try:
                with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK, copybufsize=CHUNK) as tar:
                    for f in self._ordered(pool, objs):
                        done.append(self._add(tar, f))
                sink.flush()
            except BaseException:
                proc.chan.close()
                raise
        result = proc.wait()
        if result.status != 0:
            msg = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise TransientError(f"tar on the target failed: {msg[-1] if msg else 'exit ' + str(result.status)}")
        self._check_staged(done, stage_dest)
        return done

    def _add(self, tar: tarfile.TarFile, f: _Fetched) -> DoneObject:
        path = self.paths[f.obj.key]
        info = tarfile.TarInfo(path)
        info.size = f.obj.size
        info.mtime = int(f.obj.last_modified)
        info.mode = 0o644
        tee = None
        if self.keep_dir is not None:
            local = self.keep_dir / path
            local.parent.mkdir(parents=True, exist_ok=True)
            tee = open(local, "wb")
        reader = _HashingReader(f.body, tee)
        try:
            tar.addfile(info, reader)  # type: ignore[arg-type]
        except tarfile.ReadError:
            raise TransientError(f"s3://{self.bucket}/{f.obj.key} ended early (changed while moving?)", hint="running again resumes") from None
        finally:
            if tee is not None:
                tee.close()
        if reader.count != f.obj.size:
            raise TransientError(f"s3://{self.bucket}/{f.obj.key}: read {reader.count} bytes, listed {f.obj.size}", hint="running again resumes")
        self.on_progress(1, f.obj.size)
        return DoneObject(self.bucket, f.obj.key, f.obj.etag, f.obj.size, posixpath.join(self.dest, path),
                          reader.sha.hexdigest(), f.content_type, f.metadata)

    def _check_staged(self, done: list[DoneObject], stage_dest: str) -> None:
        got = files.hash_tree(self.conn, stage_dest)
        bad = [d.key for d in done if got.get(posixpath.relpath(d.path, self.dest)) != d.sha256]
        if bad:
            raise VerificationError(f"{len(bad)} object(s) arrived damaged on the target (first: {bad[0]!r})", hint="running again retries them")

    def promote(self) -> None:
        """Hard-link the verified staging tree into place, then drop staging."""
        stage_dest = posixpath.join(self.staging, self.dest)
        final = posixpath.join(self.root, self.dest)
        self.conn.run(shell.all_of(["mkdir", "-p", "--", final], ["cp", "-Rlf", "--", stage_dest + "/.", final + "/"],
                                   ["rm", "-rf", "--", self.staging]))
