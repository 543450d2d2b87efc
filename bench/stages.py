"""CPU seconds of one bench leg split by stage (issue 18: "CPU per GiB for every leg").

The machine-wide figure (`/proc/stat`) counts everything: the S3 server, both SSH ends,
the receiver, the kernel's writeback, and whatever else runs on a shared box. This
splits it by who spent it, from /proc, sampled while the leg runs:

- each process of the leg (relocate or a peer, and their `ssh` children), and each
  thread of relocate's own process by name (bench/threadnames/sitecustomize.py names
  Python's threads for the OS: lanes, S3 GET pools, the libcurl loop, tokio workers);
- every process under the sshd listener (sshd itself, the receiver, `tar x`, shells);
- the S3 server (SeaweedFS, one process).

Sampling misses the last tenth of a second of a process that exits between samples.
The sending side's exact total is known (the leg's `wait4` rusage), so its sampled
split is scaled to it; the target side's is not (sshd's listener does not collect its
sessions' CPU: its children's times never reach its cutime), so those figures are the
samples, a little low (by at most 0.1 s per process; a lane's sshd and receiver live
for the whole leg). The S3 server's is exact (its own counters). What is left of the machine's busy time (the kernel's writeback threads,
the bench itself, other users of the machine) is "rest of machine".
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve().parent
THREAD_NAMES = str(HERE / "threadnames")  # put on PYTHONPATH of a relocate leg to name its threads


def _stat(path: str) -> tuple[int, str, float, float] | None:
    """(ppid, comm, own cpu s, reaped children's cpu s) of /proc/<pid>[/task/<tid>]/stat."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    head, _, tail = raw.rpartition(b")")
    comm = head.split(b"(", 1)[1].decode("utf-8", "replace")
    f = tail.split()
    return int(f[1]), comm, (int(f[11]) + int(f[12])) / TICK, (int(f[13]) + int(f[14])) / TICK


def client_stage(comm: str, thread: str | None) -> str:
    """Stage of a process (or a thread of a Python process) on the sending side."""
    if comm == "ssh":
        return "ssh client (encrypt)"
    if comm.startswith("rclone"):
        return "rclone (S3 client, local write)"
    if comm == "tar":
        return "tar c (read local files)"
    if comm.startswith("python") and thread is not None:
        if thread.startswith("lane"):
            return "relocate lanes (hash, frame, pipe to ssh)"
        if thread.startswith(("s3get", "s3-gets", "tokio", "s3-boto")):
            return "relocate S3 GETs"
        if thread.startswith(("s3-list", "inventory")):
            return "relocate S3 listing"
        if "(drai" in thread or "_watchd" in thread:
            return "relocate ssh output drains, watchdog"
        if thread.startswith("Thread-"):  # paramiko's transport (the control connection), unnamed helpers
            return "relocate control SSH (paramiko), other threads"
        return "relocate main (start-up, plan, journal, verify)"
    if comm.startswith("python"):
        return "relocate main (start-up, plan, journal, verify)"
    return "client other (sh, ...)"


def target_stage(comm: str) -> str:
    if comm.startswith("sshd"):
        return "sshd (decrypt)"
    if comm.startswith("python"):
        return "receiver (hash, write, rename)"
    if comm == "tar":
        return "tar x (write)"
    return "target other (sh, mkdir, openssl...)"


class Meter:
    """Samples a leg's process trees every `every` seconds on a thread of its own."""

    def __init__(self, sshd_pid: int | None, server_pid: int | None, every: float = 0.1) -> None:
        self.sshd_pid, self.server_pid, self.every = sshd_pid, server_pid, every

    def start(self, child_pid: int) -> None:
        self.child = child_pid
        self.last: dict[tuple[int, int], tuple[str, float]] = {}  # (pid, tid or 0) -> (stage, cpu s)
        self.side: dict[int, str] = {child_pid: "client"}
        self.base: dict[int, float] = {}  # pids that were running before the leg: their cpu then
        self.unrelated: set[int] = set()
        self.server0 = self._own(self.server_pid)
        if self.sshd_pid is not None:
            self.side[self.sshd_pid] = "target"
            self._scan(initial=True)
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @staticmethod
    def _own(pid: int | None) -> float:
        got = _stat(f"/proc/{pid}/stat") if pid else None
        return got[2] if got else 0.0

    def _loop(self) -> None:
        while not self.stop_ev.wait(self.every):
            self._scan()

    def _scan(self, initial: bool = False) -> None:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in self.unrelated:
                continue
            got = _stat(f"/proc/{pid}/stat")
            if got is None:
                continue
            ppid, comm, own, _ = got
            side = self.side.get(pid) or self.side.get(ppid)
            if side is None:
                self.unrelated.add(pid)  # not ours: never read again (a reused pid is rare and short)
                continue
            if pid == self.sshd_pid:
                continue
            self.side[pid] = side
            if initial:
                self.base[pid] = own  # a connection already open before the leg (none, usually)
                continue
            if side == "client" and comm.startswith("python"):
                for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else ():
                    t = _stat(f"/proc/{pid}/task/{tid}/stat")
                    if t is not None:
                        self.last[(pid, int(tid))] = (client_stage(comm, t[1]), t[2])
                continue
            stage = client_stage(comm, None) if side == "client" else target_stage(comm)
            self.last[(pid, 0)] = (stage, own - self.base.get(pid, 0.0))

    def stop(self, client_total: float, settle: float = 3.0) -> dict[str, float]:
        """The leg's CPU seconds by stage; client_total is the leg's exact rusage."""
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and self._target_alive():  # sshd sessions end just after the client
            time.sleep(0.02)
        self.stop_ev.set()
        self.thread.join()
        sampled: dict[str, dict[str, float]] = {"client": {}, "target": {}}
        for (pid, _), (stage, cpu) in self.last.items():
            side = self.side.get(pid, "client")
            sampled[side][stage] = sampled[side].get(stage, 0.0) + cpu
        out: dict[str, float] = dict(sampled["target"])  # sampled only: see the module's doc
        seen = sum(sampled["client"].values())
        scale = client_total / seen if seen > 0 else 0.0
        for stage, cpu in sampled["client"].items():
            out[stage] = cpu * scale
        out["S3 server (SeaweedFS)"] = self._own(self.server_pid) - self.server0
        return out

    def _target_pids(self) -> list[int]:
        return [p for p, s in self.side.items() if s == "target" and p != self.sshd_pid and os.path.exists(f"/proc/{p}")]

    def _target_alive(self) -> bool:
        self._scan()
        return bool(self._target_pids())
