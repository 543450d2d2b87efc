"""Bench only (bench/bench_timeline.py): a timeline of one `relocate move`'s bulk engine.

Loaded through PYTHONPATH by bench_timeline.py's runs, never by relocate. When
relocate.execute.objects is imported, its BucketPusher is wrapped (old code and new
alike, so a baseline tree can be traced too): each lane's batch events (stream start,
tail written, answer read, commit), the S3 GETs in flight (every whole read's start
and end), the lanes' logins; at exit the events go, as one JSON line, to the file
named by BENCH_TIMELINE_OUT. Nothing here changes what relocate does.

It also times the move's main steps (STEPS: the login, the listing, the gather, the
plan, the engine, the sidecar, the manifest, the final check), each call's thread,
start and end, so `bench_timeline.py --phases` can say where the time before the
first GET and after the last answer goes.
"""

import atexit
import importlib.machinery
import json
import os
import posixpath
import sys
import threading
import time

_T0 = time.monotonic()
_EVENTS = []  # (t, kind, lane, batch, n)
_GETS = []  # (t, +1 | -1)
_PHASES = []  # (thread, step, start, end)

# module -> the functions and methods of it timed as steps
STEPS = {
    "relocate.workflow": ["prepare"],
    "relocate.sources.aws": ["Aws._make_session", "Aws.client"],
    "relocate.sources.inventory": ["take_inventory"],
    "relocate.ssh.connection": ["Connection.connect", "Connection.run", "Connection.ensure"],
    "relocate.execute.gather": ["look_ahead", "gather"],
    "relocate.plan.build": ["build_plan"],
    "relocate.kinds.objects": ["Objects.apply", "verify_objects", "_markers_unrecorded", "_paths"],
    "relocate.execute.objects": ["BucketPusher.run"],
    "relocate.sources.s3data": ["ObjectReader.__init__", "ObjectReader.close"],
    "relocate.execute.runner": ["run_move", "_run"],
    "relocate.execute.lock": ["TargetLock.__enter__", "TargetLock.__exit__"],
    "relocate.snapshot.manifest": ["BucketEntry.to_dict", "BucketEntry.from_dict"],
    "relocate.snapshot.journal": ["Journal.close"],
    "relocate.targets.files": ["write_file_atomic"],
    "relocate.snapshot.store": ["write_json_atomic", "Snapshot.manifest"],
    "relocate.execute.verify": ["verify_snapshot"],
}


def _step(name, fn):
    def call(*args, **kwargs):
        start = time.monotonic() - _T0
        try:
            return fn(*args, **kwargs)
        finally:
            _PHASES.append((threading.current_thread().name, name, start, time.monotonic() - _T0))
    call.__wrapped__ = fn
    return call


def _steps(module):
    for qual in STEPS.get(module.__name__, ()):
        owner, _, attr = qual.rpartition(".")
        holder = getattr(module, owner) if owner else module
        fn = getattr(holder, attr, None)
        if fn is not None:
            setattr(holder, attr, _step(qual, fn))
_lock = threading.Lock()


def _since_start():
    """Seconds the process had run when this file was imported (interpreter start-up)."""
    try:
        with open("/proc/self/stat") as fh:
            started = int(fh.read().rpartition(")")[2].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as fh:
            return float(fh.read().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return 0.0


_BOOT = _since_start()


def ev(kind, lane=-1, batch=-1, n=0):
    _EVENTS.append((time.monotonic() - _T0, kind, lane, batch, n))


def _gets(delta):
    _GETS.append((time.monotonic() - _T0, delta))


def _patch(m):
    bp = m.BucketPusher
    trace_hook = not hasattr(bp, "_push")  # new code: the pusher reports its own events (BucketPusher.trace)

    if trace_hook:
        def init(self, *a, _orig=bp.__init__, **kw):
            _orig(self, *a, **kw)
            self.trace = lambda kind, lane, batch, n: ev(kind, lane, batch, n)
        bp.__init__ = init
    else:
        def push(self, lane, stage, objs, sent, _orig=bp._push):
            number = int(posixpath.basename(stage))
            ev("send", lane.index, number, len(objs))
            out = _orig(self, lane, stage, objs, sent)
            ev("answer", lane.index, number, len(objs))
            return out
        bp._push = push

        def tail(orig):
            def wrapped(*a):
                lane = a[1] if len(a) == 3 else None
                ev("tail", lane.index if lane is not None else -1)
                return orig(*a)
            return staticmethod(wrapped)
        bp._answer = tail(bp._answer)
        bp._exit = tail(bp._exit)

    def run(self, objs, commit, _orig=bp.run):
        def traced(done):
            ev("commit0", n=len(done))
            commit(done)
            ev("commit1", n=len(done))
        ev("run0", n=len(objs))
        try:
            return _orig(self, objs, traced if not trace_hook else commit)
        finally:
            ev("run1")
    bp.run = run

    lane_cls = m._Lane

    def connect(self, _orig=lane_cls.connect):
        ev("connect0", self.index)
        _orig(self)
        ev("connect1", self.index)
    lane_cls.connect = connect

    def whole_reads(reader, pool, concurrency, _orig=m.whole_reads):
        start = _orig(reader, pool, concurrency)

        def traced(o):
            with _lock:
                _gets(+1)
            fut = start(o)
            fut.add_done_callback(lambda f: _gets(-1))
            return fut
        return traced
    m.whole_reads = whole_reads


class _Finder:
    """Patch relocate.execute.objects, and time the STEPS of each module in it, right
    after the module is first executed."""

    def find_spec(self, name, path=None, target=None):
        if name != "relocate.execute.objects" and name not in STEPS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        orig = spec.loader.exec_module

        def exec_module(module):
            orig(module)
            if module.__name__ == "relocate.execute.objects":
                _patch(module)
            _steps(module)
        spec.loader.exec_module = exec_module
        return spec

    def invalidate_caches(self):
        pass


def _dump():
    out = os.environ.get("BENCH_TIMELINE_OUT")
    if not out:
        return
    ev("exit")
    with open(out, "a") as fh:
        fh.write(json.dumps({"boot": _BOOT, "events": _EVENTS, "gets": _GETS, "phases": _PHASES, "label": os.environ.get("BENCH_TIMELINE_LABEL", "")}) + "\n")


if os.environ.get("BENCH_TIMELINE_OUT"):
    sys.meta_path.insert(0, _Finder())
    atexit.register(_dump)
