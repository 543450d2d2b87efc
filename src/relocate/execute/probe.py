"""`relocate plan --probe`: measure the rates the estimate uses instead of assuming them.

A short ranged read from the largest S3 object (source side) and a short timed write
of random bytes into a temporary file under the target's root (or its nearest existing
parent), deleted in the same command. The slower side bounds the move.
"""

from __future__ import annotations

import os
import posixpath
import time
from dataclasses import dataclass

from relocate.plan.build import Rates, human_bytes
from relocate.sources.aws import Aws
from relocate.sources.inventory import Inventory
from relocate.sources.probe import ReadSample, timed_read
from relocate.targets import shell
from relocate.targets.ssh import Connection

PROBE_BYTES = 32 << 20
PARALLEL = 8  # objects are fetched concurrently: per-object latency overlaps this much (conservative)


@dataclass(frozen=True)
class WriteSample:
    where: str
    nbytes: int
    seconds: float


def timed_write(conn: Connection, directory: str, nbytes: int = PROBE_BYTES) -> WriteSample:
    path = posixpath.join(directory, f".relocate-probe-{os.getpid()}-{int(time.time())}")
    # The file is removed by the same command whether or not the write worked.
    cmd = shell.line(["sh", "-c", 'cat > "$1"; s=$?; rm -f -- "$1"; exit $s', "relocate-probe", path])
    block = os.urandom(1 << 20)  # incompressible, so a compressing link cannot flatter the figure
    t0 = time.monotonic()
    proc = conn.start(cmd)
    sent = 0
    while sent < nbytes:
        proc.write(block)
        sent += len(block)
    result = proc.wait(120)
    seconds = time.monotonic() - t0
    if result.status != 0:
        from relocate.errors import TargetError

        err = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise TargetError(f"probe write to {directory} failed: {err[-1] if err else 'exit ' + str(result.status)}")
    return WriteSample(f"{conn.endpoint}:{directory}", sent, max(seconds, 1e-6))


def combine(read: ReadSample | None, write: WriteSample | None, base: Rates = Rates()) -> Rates:
    """Pure: the rates a move can expect from what was measured (the slower side wins)."""
    parts, rates = [], []
    if read is not None:
        rates.append(read.nbytes / read.seconds)
        parts.append(f"S3 read {human_bytes(read.nbytes / read.seconds)}/s ({human_bytes(read.nbytes)} of {read.what})")
    if write is not None:
        rates.append(write.nbytes / write.seconds)
        parts.append(f"SSH write {human_bytes(write.nbytes / write.seconds)}/s ({human_bytes(write.nbytes)} to {write.where})")
    if not rates:
        return Rates(base.bytes_per_s, base.seconds_per_object, f"{base.basis}; probe found nothing to measure")
    per_object = read.latency_s / PARALLEL if read is not None else base.seconds_per_object
    parts.append(f"{per_object * 1000:.1f} ms per object")
    return Rates(min(rates), per_object, "measured: " + ", ".join(parts))


def measure(aws: Aws, conn: Connection, inventory: Inventory, directory: str | None, nbytes: int = PROBE_BYTES) -> Rates:
    """`directory` None: the login user cannot write there (the plan says so as a blocker); read only."""
    write = timed_write(conn, directory, nbytes) if directory else None
    return combine(timed_read(aws, inventory, nbytes), write)
