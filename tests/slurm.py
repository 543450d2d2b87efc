"""A one-node Slurm cluster from Debian's packages (slurmctld, slurmd, munge), for the tests.

Everything lives in one temp dir: munged with its own key and socket, a slurm.conf naming
this host as the only node (its real CPU count), state and spool dirs, free ports. No
accounting, no cgroups (proctrack/linuxproc, task/none), so it runs in a container as
root. Client commands find the cluster through SLURM_CONF (`Slurm.env`). Like servers.py:
plain functions, ServerUnavailable with the log tail when something will not start.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from servers import ServerUnavailable, _spawn, _stop_group, _tail, _wait, _which, free_port


@dataclass
class Slurm:
    workdir: Path
    conf: Path
    node: str
    cpus: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """The environment that points sbatch, sinfo and squeue at this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def logs(self) -> str:
        return "\n".join(f"--- {name}:\n{_tail(self.workdir / name)}" for name in ("slurmctld.log", "slurmd.log"))

    def stop(self) -> None:
        if self.procs:
            subprocess.run(["scancel", "--full", "--quiet", "--user", "root"], env=self.env, capture_output=True,
                           timeout=30, check=False)
        for proc in reversed(self.procs):  # slurmd, slurmctld, then munged
            _stop_group(proc)
        self.procs.clear()


def start_slurm(workdir: Path, timeout: float = 60.0) -> Slurm:
    if os.geteuid() != 0:
        raise ServerUnavailable("the test Slurm cluster runs its daemons as root (CI runs as root)")
    munged, mungekey = _which("munged", Path("/usr/sbin")), _which("mungekey", Path("/usr/sbin"))
    slurmctld, slurmd = _which("slurmctld", Path("/usr/sbin")), _which("slurmd", Path("/usr/sbin"))
    sinfo = _which("sinfo")
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    for sub in ("munge", "state", "spool"):
        (workdir / sub).mkdir(mode=0o700, exist_ok=True)

    key, sock = workdir / "munge" / "munge.key", workdir / "munge" / "munge.socket"
    made = subprocess.run([mungekey, "--create", "--keyfile", str(key)], capture_output=True, text=True)
    if made.returncode != 0:
        raise ServerUnavailable(f"mungekey: {made.stderr.strip()}")
    slurm = Slurm(workdir, workdir / "slurm.conf", node=socket.gethostname().split(".")[0], cpus=os.cpu_count() or 1)
    try:
        # --force: the temp dir's parents (/tmp) are world-writable, which munged otherwise refuses
        slurm.procs.append(_spawn([munged, "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
                                   f"--pid-file={workdir / 'munge' / 'munged.pid'}", f"--log-file={workdir / 'munged.log'}",
                                   f"--seed-file={workdir / 'munge' / 'munged.seed'}"], workdir / "munged.out"))
        _wait(sock.exists, "munged", timeout, slurm.procs[0], workdir / "munged.log")

        slurm.conf.write_text("\n".join([
            f"ClusterName=relocate{secrets.token_hex(3)}",
            f"SlurmctldHost={slurm.node}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={sock}",
            f"StateSaveLocation={workdir / 'state'}",
            f"SlurmdSpoolDir={workdir / 'spool'}",
            f"SlurmctldPidFile={workdir / 'slurmctld.pid'}",
            f"SlurmdPidFile={workdir / 'slurmd.pid'}",
            f"SlurmctldLogFile={workdir / 'slurmctld.log'}",
            f"SlurmdLogFile={workdir / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerType=sched/builtin",
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",  # start a submitted job at once
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "ReturnToService=2",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=5",
            f"NodeName={slurm.node} NodeAddr=127.0.0.1 CPUs={slurm.cpus} State=UNKNOWN",
            f"PartitionName=test Nodes={slurm.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4",
            "",
        ]))
        slurm.procs.append(_spawn([slurmctld, "-D", "-i", "-f", str(slurm.conf)], workdir / "slurmctld.out"))
        slurm.procs.append(_spawn([slurmd, "-D", "-f", str(slurm.conf), "-N", slurm.node], workdir / "slurmd.out"))

        def idle() -> bool:
            if slurm.procs[1].poll() is not None:  # _wait watches slurmd; a dead slurmctld ends the wait too
                raise_now.append(f"slurmctld exited with {slurm.procs[1].returncode}")
                return True
            state = subprocess.run([sinfo, "--noheader", "--Node", "--format=%t"], env=slurm.env, capture_output=True,
                                   text=True, timeout=10)
            return state.stdout.split() == ["idle"]

        raise_now: list[str] = []
        try:
            _wait(idle, "the slurm node (idle in sinfo)", timeout, slurm.procs[2], workdir / "slurmd.out")
        except ServerUnavailable as exc:
            raise ServerUnavailable(f"{exc.reason}\n{slurm.logs()}") from None
        if raise_now:
            raise ServerUnavailable(f"{raise_now[0]}: {_tail(workdir / 'slurmctld.out')}\n{slurm.logs()}")
    except BaseException:
        slurm.stop()
        raise
    return slurm
