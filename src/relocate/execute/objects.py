"""Stream S3 objects into the target over several SSH connections.

The shape of a bulk move (issue 6):

- Objects are cut into batches (bounded in bytes and count) and the batches are
  handed out, biggest first, to N lanes. A lane owns one SSH connection and sends its
  batches down one long stream (few channel opens, see the paramiko re-key hazard in
  DESIGN.md); several lanes run in parallel to use more than one core on each side.
- Bodies come from sources/s3data.py through one ReadAhead per lane, for all its
  batches: small objects are read ahead whole, `--transfers` at once by one thread on
  keep-alive connections (sources/s3gets.py), within one global byte budget (PREFETCH_BYTES);
  bigger ones are streamed chunk by chunk when their turn comes, so memory stays
  bounded whatever the object sizes and counts. Once the current batch's GETs are all
  under way (and no big object is ahead), the lane takes its next batch from the queue
  and reads on into it, one batch ahead at most; the first GETs go out before the
  lanes' logins are ready.
- Pipelined: with the long-lived receiver a lane sends batch k+1 right after k's tail
  and reads k's answer after that (PIPELINE = 2 batches sent and unanswered at most),
  answers in order, each batch journalled only once its answer's hashes match. A lane
  that waited for each answer and commit sent nothing and started no GET meanwhile
  (0.1-0.5 s in all per move of 5,000 small objects here, up to 2.5 s on a busy
  machine; now 0.05-0.3 s: bench/bench_timeline.py). The tar wire, a process per batch, goes one
  batch at a time.
- How a batch travels is execute/wire.py: to one long-lived receiver per lane when
  the target has python3 (each file hashed as it is written and renamed into place
  when its sha256 equals the sender's), else a tar stream per batch into a staging
  directory that is hashed and hard-linked into place. Either way the sender checks
  the target's hashes before the batch is journalled, and a killed move leaves
  staging debris (cleared by the next run), never a half-written file in place.
- Faults: any failure on a lane's connection (reset, stall, damaged arrival) sends
  every batch the lane had sent and not seen answered again, in order, on a brand-new
  connection with exponential backoff (a failed source read leaves the connection
  sound: the batches before it are answered first, and only its own batch goes again);
  after ATTEMPTS tries of one batch it stops with TransientError (exit 5, "running
  again resumes"). A watchdog aborts a lane whose stream made no progress for
  `stall_s` seconds, because paramiko's keepalive does not notice a dead peer.
- An object the target can never write (a file where its directory must go, a name too
  long) is not retried and stops nothing: the python3 receiver answers it as refused and
  goes on, the tar path's batch goes again in halves until the object is alone; every
  other object lands and is journalled, then ItemsFailed names the refused ones (exit 4).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import posixpath
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, Protocol

from relocate import gcfreeze
from relocate.errors import ItemError, ItemsFailed, RelocateError, TransientError, VerificationError
from relocate.settings import Transfer
from relocate.snapshot.receipts import describe
from relocate.snapshot.journal import DoneObject
from relocate.sources.inventory import ObjectInfo
from relocate.sources.s3data import BUDGET_BYTES, WHOLE_BELOW, Body, ByteBudget, ReadAhead, whole_reads
from relocate.execute.wire import (AGENT_PROBE, ITEM_HINT, NOT_ONE_FILE, PROMOTE, AgentWire, Place, RawWire, TarWire, Wire,
                                   choose, receiver_error)
from relocate.targets import layout, shell
from relocate.ssh.openssh import Master, OpenSsh, OpenSshExec
from relocate.ssh.connection import Connection, Exec, Result

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

SMALL_OBJECT = WHOLE_BELOW  # read whole ahead of its turn; bigger ones are streamed
PREFETCH_BYTES = BUDGET_BYTES  # global memory bound for bodies read ahead of the lanes
BATCH_BYTES = 1024 * 1024 * 1024  # upper bounds of one batch (one tar stream, one journal commit)
BATCH_OBJECTS = 5000
MIN_BATCH_BYTES = 16 * 1024 * 1024  # below this, per-batch round trips start to show
CHUNK = 1024 * 1024
# A lane's write buffer. io copies a write into it when it fits and sends a bigger one as
# it is: at 64 KiB, headers and small bodies (4 KiB: 15 to a write) coalesce, and a 256 KiB
# body is not copied first (at 512 KiB it was: ~10 us per object, docs/transfer.md).
SINK_BUFFER = 64 * 1024
# Batches a lane has sent and not yet seen answered, on the long-lived receiver. Two: while
# batch k+1 streams, k's answer (and its commit) comes back, so the lane never waits on
# an answer unless the receiver is more than a whole batch behind; more would only add
# to what a failed connection sends again.
PIPELINE = 2


class Reader(Protocol):
    def get(self, key: str, size: int, etag: str, whole: bool) -> Body: ...


class RateLimit:
    """A token bucket shared by all lanes: `--bwlimit` caps the sum, like rclone's."""

    def __init__(self, bytes_per_s: float) -> None:
        self.rate = float(bytes_per_s)
        self.lock = threading.Lock()
        self.next = time.monotonic()

    def take(self, n: int) -> None:
        with self.lock:
            now = time.monotonic()
            self.next = max(self.next, now - 0.25) + n / self.rate  # a quarter second of burst
            wait = self.next - now
        if wait > 0:
            time.sleep(wait)


class _Cancelled(Exception):
    pass


class _SourceError(TransientError):
    """Reading the source failed mid-batch (an S3 body cut short, a GET that kept failing):
    the connection is sound, so the batches sent before this one are answered first and
    only this one goes again."""


class _Lane:
    """One SSH connection and its watchdog state. OpenSSH lanes each own a connection
    (one `ssh` process and one sshd per lane, so the crypto of several lanes runs on
    several cores; a shared master put every lane's bytes through one process). Their
    logins start together before the first batch (`move` starts them while the source
    is listed); a lane whose batch failed retries on a new connection."""

    def __init__(self, index: int, template: Connection, bulk: OpenSsh | None) -> None:
        self.index = index
        self.template = template
        self.bulk = bulk
        self.conn: Connection | None = None  # paramiko lanes
        self.master: Master | None = bulk.take() if bulk is not None else None  # OpenSSH lanes, login under way
        self.proc: Exec | OpenSshExec | None = None  # the batch stream in flight
        self.session: Exec | OpenSshExec | None = None  # this connection's long-lived receiver (AgentWire)
        self.answered = 0  # how much of the session's output earlier batches' answers used
        self.beat = time.monotonic()
        self.watch = False  # True while a stream is expected to make progress
        self.stalled = False

    def connect(self) -> None:
        if self.bulk is not None:
            if self.master is None:
                self.master = self.bulk.master()
            self.master.wait_ready()
        elif self.conn is None:
            conn = self.template.clone()
            conn.connect()
            self.conn = conn

    def start(self, command: str) -> Exec | OpenSshExec:
        if self.bulk is not None:
            return self.bulk.start(command, self.master)
        assert self.conn is not None
        return self.conn.start(command)

    def run(self, command: str, timeout: float) -> Result:
        result = self.start(command).wait(timeout)
        if result.status != 0:
            err = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise receiver_error(result.status, result.stderr,
                                 f"on the target: command failed (exit {result.status}): {err[-1] if err else 'no message'}")
        return result

    def abort(self) -> None:
        """From the watchdog: make whatever this lane is blocked on fail now."""
        proc = self.proc
        if isinstance(proc, OpenSshExec):
            proc.kill()
        master = self.master
        if master is not None:
            master.close()
        conn = self.conn
        if conn is not None:
            conn.abort()

    def finish(self, timeout: float) -> None:
        """End the receiver's session cleanly (it removes its staging dir on the way out)."""
        session, self.session = self.session, None
        if session is not None:
            try:
                session.wait(timeout)
            except TransientError:
                pass  # the next run clears staging

    def drop(self) -> None:
        """Forget this lane's connection; the next connect() makes a brand-new one."""
        self.session = None
        master, self.master = self.master, None
        if master is not None:
            master.close()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
            conn.close()


class _ChannelSink(io.RawIOBase):
    """A remote command's stdin as a raw file: rate-limited, feeding the watchdog."""

    def __init__(self, proc: Exec | OpenSshExec, lane: _Lane, limit: RateLimit | None, stop: threading.Event) -> None:
        self.proc, self.lane, self.limit, self.stop = proc, lane, limit, stop

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        if self.stop.is_set():
            raise _Cancelled()
        view = memoryview(data)  # any buffer, as RawIOBase.write takes; nbytes, not len(), counts bytes
        n = view.nbytes
        if self.limit is not None:
            self.limit.take(n)
        self.proc.write(view)
        self.lane.beat = time.monotonic()
        return n


Batch = tuple[int, list[ObjectInfo]]  # (its number in the plan, its objects)


class _Queue:
    """The batches no lane has taken yet, biggest first; lanes take them one by one."""

    def __init__(self, batches: list[list[ObjectInfo]]) -> None:
        self.items: deque[Batch] = deque(enumerate(batches))
        self.lock = threading.Lock()

    def take(self) -> Batch | None:
        with self.lock:
            return self.items.popleft() if self.items else None


class _Ahead:
    """A lane's batches that are not started yet, in order, and one read-ahead for all of
    the lane's bodies: it takes the lane's next batch from the queue once the current
    one's GETs are all under way (so they run on while its tail is sent and answered),
    and never more than that one ahead (the other lanes may need it sooner)."""

    def __init__(self, queue: _Queue, first: list[Batch],
                 make: Callable[[list[ObjectInfo], Callable[[], list[ObjectInfo] | None]], ReadAhead]) -> None:
        self.queue = queue
        self.waiting: deque[Batch] = deque(first)
        self.bodies = make([o for _, objs in first for o in objs], self._more)

    def _more(self) -> list[ObjectInfo] | None:
        if self.waiting:
            return []  # a batch is already read ahead for later
        got = self.queue.take()
        if got is None:
            return None
        self.waiting.append(got)
        return got[1]

    def next_batch(self) -> Batch | None:
        """The lane's next batch (its first GETs under way), None when nothing is left."""
        head = self.bodies.peek()
        if head is None:
            return None
        batch = self.waiting.popleft()
        assert batch[1][0] is head
        return batch

    def close(self) -> list[Batch]:
        """Stop reading ahead; the batches taken and not started, to go again elsewhere."""
        self.bodies.close()
        left, self.waiting = list(self.waiting), deque()
        return left


@dataclass(eq=False)
class _Flight:
    """A batch a lane has begun to send and has not seen answered."""

    number: int
    objs: list[ObjectInfo]
    wire: Wire | None = None
    rels: list[str] = field(default_factory=list)
    proc: Exec | OpenSshExec | None = None
    done: list[DoneObject] = field(default_factory=list)
    sent: int = 0  # body bytes reported to on_progress (taken back when the batch goes again)
    limit: float = 0.0  # seconds the target has to answer once the tail is written

    def stage(self, staging: str) -> str:
        """A per-batch receiver's staging dir (the tar wire)."""
        return posixpath.join(staging, str(self.number))


def _kill(proc: Exec | OpenSshExec) -> None:
    """End a receiver's process or channel, whatever state its connection is in."""
    try:
        proc.kill() if isinstance(proc, OpenSshExec) else proc.chan.close()
    except Exception:  # paramiko raises EOFError closing a channel of a dead transport
        pass


def batches(objects: list[ObjectInfo], *, max_bytes: int = BATCH_BYTES, max_objects: int = BATCH_OBJECTS) -> Iterator[list[ObjectInfo]]:
    """Consecutive runs of objects, each at most max_bytes (unless one object is bigger) and max_objects."""
    batch: list[ObjectInfo] = []
    size = 0
    for o in objects:
        if batch and (size + o.size > max_bytes or len(batch) >= max_objects):
            yield batch
            batch, size = [], 0
        batch.append(o)
        size += o.size
    if batch:
        yield batch


def plan_batches(objects: list[ObjectInfo], lanes: int, max_objects: int | None = None) -> list[list[ObjectInfo]]:
    """Batches sized so every lane gets several, queued biggest first (longest-job-first
    keeps one huge object from starting last and finishing alone)."""
    total = sum(o.size for o in objects)
    want = max(1, lanes * 4)
    max_bytes = min(BATCH_BYTES, max(MIN_BATCH_BYTES, total // want))
    per_batch = max_objects or min(BATCH_OBJECTS, max(64, math.ceil(len(objects) / want)))
    out = list(batches(objects, max_bytes=max_bytes, max_objects=per_batch))
    out.sort(key=lambda b: sum(o.size for o in b), reverse=True)
    return out


Commit = Callable[[list[DoneObject]], None]


def receiver_for(conn: Connection, setting: str = "auto") -> str:
    """`agent` when the target has python3 >= 3.6 (asked once per connection: the answer
    is kept on the session, conn.receiver), else `tar`; `setting` python|sh forces one."""
    if setting in ("python", "sh"):
        return choose(setting, False)
    if conn.receiver is None:
        conn.receiver = choose(setting, conn.run(AGENT_PROBE, timeout=60, check=False).status == 0)
    return conn.receiver


class BucketPusher:
    def __init__(
        self,
        reader: Reader,
        conn: Connection,
        *,
        bucket: str,
        root: str,
        allow: tuple[str, ...] = (),
        dest: str,
        paths: dict[str, str],
        staging: str,
        opts: Transfer | None = None,
        keep_dir: Path | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        receipts: str | None = None,
    ) -> None:
        self.reader = reader
        self.template = conn  # cloned per lane and per retry; never used for bulk itself
        self.bucket = bucket
        self.root = root
        self.place = Place(root, allow)  # every receiver refuses symlinked directories under root
        self.dest = dest
        self.paths = paths  # key -> path relative to dest
        self.staging = staging
        self.opts = opts or Transfer()
        self.keep_dir = keep_dir
        self.receipts = receipts  # where the receiver writes a receipt per file placed (snapshot/receipts.py)
        self.on_progress = on_progress or (lambda n, b: None)
        self.on_warning = on_warning or (lambda msg: None)
        self.limit = RateLimit(self.opts.bwlimit) if self.opts.bwlimit else None
        self.budget = ByteBudget(PREFETCH_BYTES)
        self._commit_lock = threading.Lock()
        # {key: why} of the objects the target can never write; the run delivers every
        # other one, then raises ItemsFailed naming these (under _commit_lock)
        self.failed: dict[str, str] = {}
        self._stop = threading.Event()
        self._sessions = itertools.count()
        # (event, lane, batch number, objects) as a lane sends a batch's first bytes ("send"),
        # its tail ("tail"), reads its answer ("answer") and journals it ("commit"): for
        # tests and bench/bench_timeline.py; None in a normal run.
        self.trace: Callable[[str, int, int, int], None] | None = None

    # ----------------------------------------------------------------- driver

    def run(self, objs: list[ObjectInfo], commit: Commit) -> None:
        """Deliver every object; `commit` is called (serialised) after each batch is in place.
        Objects the target can never write (a file where their directory must go) do not stop
        the others: once everything else is delivered, ItemsFailed names them."""
        if not objs:
            return
        # Everything alive now (modules, clients, the listing, the plan) lives until the
        # move ends: out of the cyclic collector's sight, each full collection that the
        # transfer's per-object garbage triggers stops walking all of it again (on 2,500
        # small objects the collector took 0.18 s of CPU before, 0.07 s after; bench/stages.py).
        with gcfreeze.frozen():  # the one owner of the freeze (gcfreeze.py): the CLI's is not undone
            self._run(objs, commit)

    def _run(self, objs: list[ObjectInfo], commit: Commit) -> None:
        nlanes = max(1, min(self.opts.lanes, len(objs)))
        queue = _Queue(plan_batches(objs, nlanes, self.opts.batch_objects))
        nlanes = min(nlanes, len(queue.items))
        self._stop.clear()
        first: BaseException | None = None
        aheads: list[_Ahead] = []
        try:
            with ThreadPoolExecutor(max(1, self.opts.transfers), thread_name_prefix="s3get") as pool:
                self.start = whole_reads(self.reader, pool, self.opts.transfers)
                # Every lane's first GETs go out now: they overlap the python3 question and the
                # logins (measured: the first GET came 0.14-0.16 s after the engine started).
                aheads = [self._ahead(queue, []) for _ in range(nlanes)]
                for ahead in aheads:
                    ahead.bodies.fill()
                with ThreadPoolExecutor(1) as asking:  # the python3 question rides beside the bulk logins
                    receiver = asking.submit(receiver_for, self.template, self.opts.receiver)
                    self.bulk = OpenSsh.probe(self.template, nlanes) if self.opts.engine != "paramiko" else None
                    self.receiver = receiver.result()
                lanes = [_Lane(i, self.template, self.bulk) for i in range(nlanes)]
                done_watch = threading.Event()
                threading.Thread(target=self._watchdog, args=(lanes, done_watch), daemon=True).start()
                try:
                    with ThreadPoolExecutor(nlanes, thread_name_prefix="lane") as lanes_pool:
                        futures = [lanes_pool.submit(self._work, lane, ahead, queue, commit) for lane, ahead in zip(lanes, aheads)]
                        for fut in futures:
                            try:
                                fut.result()
                            except _Cancelled:
                                pass
                            except BaseException as exc:  # first real failure stops the others
                                self._stop.set()
                                first = first or exc
                finally:
                    done_watch.set()
                    if self.bulk is not None:
                        self.bulk.close()
        finally:
            for ahead in aheads:
                ahead.close()
        if first is not None and not isinstance(first, ItemError):
            raise first
        # A receiver whose connection died mid-batch may have left its staging dir (the
        # batch went again on a new connection, into a new one): none of it is trusted.
        # An item that can never be written ends the bucket with the connection sound:
        # its staging goes too (a run that ends in exit 4 leaves none behind).
        self.template.ensure()
        self.template.run(shell.line(["rm", "-rf", "--", self.staging]), timeout=60, check=False)
        if first is not None:
            raise first
        if self.failed:
            raise ItemsFailed(f"s3://{self.bucket}", dict(sorted(self.failed.items())), hint=ITEM_HINT)

    def _ahead(self, queue: _Queue, first: list[Batch]) -> _Ahead:
        return _Ahead(queue, first, lambda objs, more: ReadAhead(
            self.reader.get, objs, start=self.start, budget=self.budget, window=max(2, self.opts.transfers * 2),
            whole_below=SMALL_OBJECT, more=more))

    def _watchdog(self, lanes: list[_Lane], finished: threading.Event) -> None:
        while not finished.wait(min(1.0, self.opts.stall_s / 4)):
            now = time.monotonic()
            for lane in lanes:
                if lane.watch and not lane.stalled and now - lane.beat > self.opts.stall_s:
                    lane.stalled = True
                    lane.abort()

    def _work(self, lane: _Lane, ahead: _Ahead, queue: _Queue, commit: Commit) -> None:
        """One lane's whole share: its batches back to back on one connection; when that
        connection fails, every batch the lane had sent and not seen answered goes again,
        first, on a new one (with backoff), until it is in place or attempts run out."""
        tries: dict[int, int] = {}  # batch number -> failed tries
        try:
            while True:
                flights: deque[_Flight] = deque()
                try:
                    self._connection(lane, ahead, flights, commit)
                    lane.finish(self.opts.stall_s)
                    return
                except (TransientError, VerificationError) as exc:
                    if not flights:
                        raise
                    failed = list(flights)
                    self.on_progress(0, -sum(f.sent for f in failed))
                    why = f"no progress for {self.opts.stall_s:g}s (stalled connection)" if lane.stalled else exc.message
                    lane.stalled = False
                    lane.drop()
                    # what the read-ahead had taken for later goes again too, after them
                    again = [(f.number, f.objs) for f in failed] + ahead.close()
                    if self._stop.is_set():
                        raise _Cancelled() from None
                    for f in failed:
                        tries[f.number] = tries.get(f.number, 0) + 1
                    worst = max(reversed(failed), key=lambda f: tries[f.number])  # ties: the latest
                    attempt = tries[worst.number]
                    if attempt >= self.opts.attempts:
                        cls = VerificationError if isinstance(exc, VerificationError) else TransientError
                        raise cls(f"batch of {len(worst.objs)} object(s) from s3://{self.bucket} failed {attempt} times; "
                                  f"last: {why}", hint="running again resumes") from None
                    delay = min(self.opts.backoff_s * 2 ** (attempt - 1), 60.0)
                    what = (f"the batch of {len(failed[0].objs)}" if len(failed) == 1 else
                            f"the {len(failed)} batches it had sent ({sum(len(f.objs) for f in failed)} objects)")
                    self.on_warning(f"s3://{self.bucket}: {why}; retrying {what} on a new connection "
                                    f"in {delay:g}s (attempt {attempt + 1}/{self.opts.attempts})")
                    if self._stop.wait(delay):
                        raise _Cancelled() from None
                    ahead = self._ahead(queue, again)
                except ItemError as exc:
                    # The tar path (a process per batch, one batch at a time) cannot tell which
                    # file of a batch the target refused: the batch goes again, first, as two
                    # halves, until that file is alone and named, and the rest has landed. (The
                    # python3 receiver names such a file in its answer and goes on, _land_one:
                    # an ItemError from it is its session's, its staging dir's, not a file's.)
                    if self.receiver == "agent" or len(flights) != 1 or NOT_ONE_FILE in exc.message:
                        raise
                    (flight,) = flights
                    self.on_progress(0, -flight.sent)
                    objs, half = flight.objs, len(flight.objs) // 2
                    if half:
                        again = [(flight.number, objs[:half]), (flight.number, objs[half:])]
                    else:
                        with self._commit_lock:
                            self.failed[objs[0].key] = exc.message
                        again = []
                    again += ahead.close()
                    if self._stop.is_set():
                        raise _Cancelled() from None
                    ahead = self._ahead(queue, again)
        except _Cancelled:
            raise
        except BaseException:
            self._stop.set()  # a lane that gave up stops the others at their next write
            raise
        finally:
            ahead.close()
            lane.drop()

    # ----------------------------------------------------------------- one connection

    def _connection(self, lane: _Lane, ahead: _Ahead, flights: deque[_Flight], commit: Commit) -> None:
        """Send the lane's batches on one connection. With the long-lived receiver
        (AgentWire) the next batch's first bytes follow the last one's tail at once:
        up to PIPELINE batches are sent and not yet answered (`flights`), their answers
        read in order as the receiver gives them, while the lane's read-ahead keeps the
        GETs going. The tar wire has a process per batch: one at a time."""
        window = PIPELINE if self.receiver == "agent" else 1
        try:
            try:
                while True:
                    if self._stop.is_set():
                        raise _Cancelled()
                    batch = ahead.next_batch()
                    if batch is None:
                        break
                    flight = _Flight(*batch)
                    flights.append(flight)
                    self._send(lane, flight, ahead.bodies)
                    self._land(lane, flights, commit, keep=window - 1)
                self._land(lane, flights, commit, keep=0)
            except _SourceError:
                self._land(lane, flights, commit, keep=1)  # the connection is sound: what went before is answered
                raise
        except TransientError:
            lane.session = None
            proc = flights[-1].proc if flights else None
            refused = self._receiver_refused(proc) if proc is not None else None  # a refusal (symlink, unwritable item) is not retried
            if refused is not None:
                raise refused from None
            raise
        except BaseException:
            lane.session = None
            for proc in {id(f.proc): f.proc for f in flights if f.proc is not None}.values():
                _kill(proc)
            raise
        finally:
            lane.watch = False
            lane.proc = None

    def _send(self, lane: _Lane, flight: _Flight, bodies: ReadAhead) -> None:
        """Stream one batch to the target's receiver, hashing each body as it goes; its
        answer is read later (_land)."""
        lane.connect()
        objs = flight.objs
        wire = flight.wire = self._wire(objs)
        rels = flight.rels = [self.paths[o.key] for o in objs]
        final = posixpath.join(self.root, self.dest)
        head = b""
        if not wire.session:
            # A retried batch starts from an empty staging dir: nothing of a failed try survives.
            proc = lane.start(wire.command(flight.stage(self.staging), final, rels))
            head = wire.start()
        elif lane.session is None:
            # One receiver per lane connection, batch after batch; its own staging dir
            # (a new one per connection, so a lingering receiver of a dead one is harmless).
            lane.session = proc = lane.start(wire.command(posixpath.join(self.staging, f"l{lane.index}.{next(self._sessions)}"),
                                                          final, rels))
            lane.answered = 0
            head = wire.start()
        else:
            proc = lane.session
        flight.proc = lane.proc = proc
        # Small writes (headers, small bodies) coalesce; a write bigger than the buffer (a
        # streamed body's 1 MiB chunk) goes to the pipe as it is. With a buffer of CHUNK
        # itself, io copied every chunk into the buffer first (not "bigger than"): a copy
        # of every streamed byte.
        sink = io.BufferedWriter(_ChannelSink(proc, lane, self.limit, self._stop), buffer_size=SINK_BUFFER)
        if self.trace is not None:
            self.trace("send", lane.index, flight.number, len(objs))
        lane.beat, lane.watch = time.monotonic(), True
        try:
            sink.write(head)
            written = len(head)
            for want in objs:
                try:
                    obj, body = next(bodies)
                except _SourceError:
                    raise
                except TransientError as exc:  # a GET that failed after its own retries
                    raise _SourceError(exc.message, hint=exc.hint) from None
                assert obj is want, "the read-ahead is in the lane's batch order"
                d, n = self._add(sink, wire, obj, body, flight)
                flight.done.append(d)
                written += n
            tail = wire.end(flight.done, rels, written)
            sink.write(tail)
            written += len(tail)
            sink.flush()
        finally:
            lane.watch = False
        # The target now writes the rest and hashes the batch: allow the stall time
        # plus a slow disk's pace rather than the no-progress watchdog.
        flight.limit = self.opts.stall_s + written / (8 << 20)
        if self.trace is not None:
            self.trace("tail", lane.index, flight.number, len(objs))

    def _land(self, lane: _Lane, flights: deque[_Flight], commit: Commit, keep: int) -> None:
        """Land the oldest flights until `keep` are left unanswered."""
        while len(flights) > keep:
            self._land_one(lane, flights[0], commit)
            flights.popleft()  # only once landed: a failure sends it again (_work)

    def _land_one(self, lane: _Lane, flight: _Flight, commit: Commit) -> None:
        """The target's answer to one batch: its hashes equal the ones computed while
        streaming, the batch is in place, then (only then) it is journalled."""
        assert flight.proc is not None and flight.wire is not None
        wire = flight.wire
        result = self._answer(flight.proc, lane, flight.limit) if wire.session else self._exit(flight.proc, flight.limit)
        if result.status != 0:
            raise receiver_error(result.status, result.stderr, f"exit {result.status}")
        try:
            answer = wire.answer(result, flight.rels)
        except (ValueError, IndexError) as exc:
            raise TransientError(f"the target's receiver gave an answer relocate cannot read ({exc})") from None
        if self.trace is not None:
            self.trace("answer", lane.index, flight.number, len(flight.objs))
        # A file whose own path the target can never write (answered so, the rest of the
        # batch landed) is not journalled and not retried: named once the run is over.
        refused = {d.key: answer.failed[rel] for d, rel in zip(flight.done, flight.rels) if rel in answer.failed}
        done = [d for d in flight.done if d.key not in refused] if refused else flight.done
        self._check_staged(done, answer.hashes)
        if not answer.placed:
            self._promote(lane, flight.stage(self.staging))
        with self._commit_lock:
            self.failed.update(refused)
            if done:
                commit(done)
            self.on_progress(len(done), 0)
        if self.trace is not None:
            self.trace("commit", lane.index, flight.number, len(flight.objs))

    @staticmethod
    def _receiver_refused(proc: Exec | OpenSshExec) -> RelocateError | None:
        """After a failed write or read: did the receiver exit on purpose (a symlinked
        directory, an item that cannot be written)? Then that is the error, not the link."""
        try:
            res = proc.wait(timeout=2)
        except TransientError:
            res = None
        finally:
            _kill(proc)
        if res is None or res.status in (0, None):
            return None
        err = receiver_error(res.status, res.stderr, "")
        return None if isinstance(err, TransientError) else err

    @staticmethod
    def _exit(proc: Exec | OpenSshExec, limit: float) -> Result:
        """A batch's own receiver: its output and status once it exits."""
        try:
            return proc.wait(timeout=limit)
        except TransientError:
            raise TransientError(f"no answer from the target {limit:.0f}s after the stream ended (stalled connection?)") from None

    @staticmethod
    def _answer(proc: Exec | OpenSshExec, lane: _Lane, limit: float) -> Result:
        """A lane's long-lived receiver: its answer to this batch, up to its "end" line."""
        try:
            text, lane.answered = proc.out.read_until(b"end\n", lane.answered, limit)
        except TransientError as exc:
            if proc.out.closed:  # it exited: say why (disk full, an unsafe path, a symlinked directory...)
                res = proc.wait(timeout=5)
                raise receiver_error(res.status, res.stderr, exc.message) from None
            raise TransientError(f"no answer from the target {limit:.0f}s after the stream ended (stalled connection?)") from None
        return Result(0, text, b"")

    def _wire(self, objs: list[ObjectInfo]) -> Wire:
        if self.receiver == "agent":
            return AgentWire(self.place, self.receipts, keep_cache=self.opts.keep_cache)
        if len(objs) == 1 and objs[0].size > SMALL_OBJECT:
            return RawWire(objs[0].last_modified, self.place)
        return TarWire(self.place)

    def _add(self, sink: BinaryIO, wire: Wire, obj: ObjectInfo, body: Body, flight: _Flight) -> tuple[DoneObject, int]:
        path = self.paths[obj.key]
        target = posixpath.join(self.dest, path)  # relative to the root: in the receipt and the journal
        if body.size != obj.size:
            raise self._read_error(obj, f"size is {body.size}, listed {obj.size} (changed while moving?)")
        header = wire.header(path, obj)
        if wire.receipts:  # the receiver's receipt of this file, should this run be killed before journalling it
            header = wire.note(describe(self.bucket, obj.key, obj.etag, obj.size, target, body.content_type, body.metadata)) + header
        sink.write(header)
        tee = None
        if self.keep_dir is not None:
            local = self.keep_dir / path
            local.parent.mkdir(parents=True, exist_ok=True)
            tee = open(local, "wb")
        sha = hashlib.sha256()
        count = 0
        # A streamed body's progress is told chunk by chunk (a big object moves for a while);
        # a whole one's once, after its last piece (libcurl's 16 KiB pieces: s3data.Body).
        streamed = body.data is None
        try:
            for chunk in body.iter_chunks():
                n = len(chunk)
                if count + n > obj.size:
                    raise self._read_error(obj, "longer than listed (changed while moving?)")
                sha.update(chunk)
                sink.write(chunk)
                if tee is not None:
                    tee.write(chunk)
                count += n
                if streamed:
                    flight.sent += n
                    self.on_progress(0, n)
            if not streamed:
                flight.sent += count
                self.on_progress(0, count)
        except RelocateError:
            raise
        except (OSError, ValueError) as exc:
            raise self._read_error(obj, f"read failed ({exc})") from None
        except Exception as exc:  # obstore stream errors surface as plain exceptions mid-iteration
            raise self._read_error(obj, f"read failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        finally:
            if body.close is not None:
                body.close()
            if tee is not None:
                tee.close()
        if count != obj.size:
            raise self._read_error(obj, f"read {count} bytes, listed {obj.size}")
        trailer = wire.trailer(obj.size, sha.digest())
        sink.write(trailer)
        done = DoneObject(self.bucket, obj.key, obj.etag, obj.size, target, sha.hexdigest(), body.content_type, body.metadata)
        return done, len(header) + obj.size + len(trailer)

    def _read_error(self, obj: ObjectInfo, why: str) -> _SourceError:
        """A body that could not be read whole as listed (made only when one fails)."""
        return _SourceError(f"s3://{self.bucket}/{obj.key}: {why}", hint="running again resumes")

    def _check_staged(self, done: list[DoneObject], got: dict[str, str]) -> None:
        bad = [d.key for d in done if got.get(layout.under(d.path, self.dest)) != d.sha256]
        if bad:
            raise VerificationError(f"{len(bad)} object(s) arrived damaged on the target (first: {bad[0]!r})", hint="running again retries them")

    def _promote(self, lane: _Lane, stage: str) -> None:
        """Hard-link the verified staging tree into place, then drop this batch's staging."""
        final = posixpath.join(self.root, self.dest)
        lane.run(shell.line(["sh", "-c", PROMOTE, "sh", stage, posixpath.join(stage, "d"), final, *self.place.args()]),
                 timeout=self.opts.stall_s + 60)
