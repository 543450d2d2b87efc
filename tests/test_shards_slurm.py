"""A real batch engine runs relocate's shards: a one-node Slurm cluster from Debian's packages
(tests/slurm.py) and `sbatch --array=0-3 --wait`. Each task gets only what Slurm gives it (its
SLURM_ARRAY_TASK_ID, no terminal) and a fresh HOME and working directory of its own: nothing
may rely on a disk shared between workers. The tasks run the worker `relocate shards emit`
writes into its Kubernetes Job, so that script is proven on a real engine too. About 20 s: four real workers, the finish and the
merged verify, and `sbatch --wait`, which polls after 2, 5 and 9 seconds."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from helpers import aws_client, make_config
from test_shards import seaweedfs_client

from relocate.snapshot.keymap import map_keys
from relocate.targets import shell

# Each task: a fresh HOME and working directory, nothing from the submitting shell's.
FRESH = 'work=$(mktemp -d) && export HOME="$work" && cd "$work"\n'


def _sbatch(slurm, tmp_path: Path, body: str, env: dict[str, str], array: str = "0-3"):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\nset -eu\n" + FRESH + body)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return slurm.run("sbatch", f"--array={array}", "--wait", "--job-name=relocate-test", f"--chdir={tmp_path}",
                     f"--output={logs}/%A_%a.out",
                     f"--error={logs}/%A_%a.err", str(script), env=env)


def test_slurm_array_runs_the_emitted_workers_then_finish_and_verify(slurm, seaweedfs, moto: str, sshd,
                                                                    tmp_path: Path) -> None:
    s3 = seaweedfs_client(seaweedfs)
    bucket = f"slurm-{os.urandom(3).hex()}"
    s3.create_bucket(Bucket=bucket)
    rng = random.Random(7)
    bodies = {f"media/{i % 5}/{i:03d} é.bin": rng.randbytes(rng.randint(0, 4096)) for i in range(40)}
    for key, data in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    aws_client("ssm", moto).put_parameter(Name=f"/{bucket}/mode", Value="production", Type="String")
    root = sshd.root / bucket
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=None, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data/media"}],
                      parameters=[{"path": f"/{bucket}/", "to": "shared/app.env"}])
    # The SSH key and known hosts under ~ and relative snapshot paths (with a relative -f): each
    # worker finds them in its own HOME and working directory, as a pod or a batch node does
    doc = yaml.safe_load(cfg.read_text())
    doc["target"]["ssh"].update(identity_file="~/.ssh/id_ed25519", known_hosts="~/.ssh/known_hosts")
    doc["snapshot"] = {"dir": ".relocate/snapshots", "key_file": ".relocate/age.key"}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELOCATE_", "JOB_", "SLURM_", "AWS_"))}
    env.update({"AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
                "AWS_ENDPOINT_URL": moto, "AWS_ENDPOINT_URL_S3": seaweedfs.endpoint_url,
                # what the engine's secret store hands the worker (emit.WORKER writes them into its HOME)
                "TARGET_SSH_KEY": sshd.identity_file.read_text(), "TARGET_KNOWN_HOSTS": sshd.known_hosts_line(),
                "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"})  # the `relocate` the worker runs

    def worker_run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        """One worker outside the engine, as fresh as a pod: its own HOME and working directory."""
        home = Path(tempfile.mkdtemp(dir=tmp_path))
        return subprocess.run(argv, cwd=home, env={**env, "HOME": str(home)}, capture_output=True, text=True, timeout=300)

    key_home = "\n".join(['umask 077 && mkdir -p ~/.ssh && printf \'%s\\n\' "$TARGET_SSH_KEY" > ~/.ssh/id_ed25519',
                          'printf \'%s\\n\' "$TARGET_KNOWN_HOSTS" > ~/.ssh/known_hosts && cd "$1" && shift && exec "$@"'])
    relocate = ["dash", "-c", key_home, "with-key", str(tmp_path), sys.executable, "-m", "relocate"]
    made = worker_run([*relocate, "plan", "-f", "relocate.yaml", "--shards", "4", "-o", "plan.json"])
    assert made.returncode == 0, made.stderr
    plan = tmp_path / "plan.json"
    emitted = worker_run([*relocate, "shards", "emit", "--engine", "kubernetes", "plan.json", "--install", ""])
    assert emitted.returncode == 0, emitted.stderr
    _, shard_job, finish_job = yaml.safe_load_all(emitted.stdout)

    def command(job: dict) -> list[str]:
        """The container command the Kubernetes Job runs, reading this plan instead of its ConfigMap's copy."""
        argv = job["spec"]["template"]["spec"]["containers"][0]["command"]
        return ["dash" if a == "sh" else str(plan) if a == "/etc/relocate/plan.json" else a for a in argv]

    ran = tmp_path / "ran"
    ran.mkdir()
    # noclobber: a task run twice fails on its own file; no terminal on any of stdin, stdout, stderr
    body = (f'set -C\necho "$SLURM_ARRAY_TASK_ID $HOME" > {shell.line([str(ran)])}/"$SLURM_ARRAY_TASK_ID"\n'
            '[ ! -t 0 ] && [ ! -t 1 ] && [ ! -t 2 ]\n'
            f'exec {shell.line(command(shard_job))}\n')
    run = _sbatch(slurm, tmp_path, body, {**env, "SLURM_CONF": str(slurm.conf)})
    logs = {p.name: p.read_text() for p in (tmp_path / "logs").iterdir()}
    assert run.returncode == 0, f"{run.stderr}\n{logs}\n{slurm.logs()}"
    # each task found its own shard through SLURM_ARRAY_TASK_ID and nothing else
    said = "".join(text for name, text in logs.items() if name.endswith(".out"))
    assert sorted(re.findall(r"^shard (\d) of 4:", said, re.M)) == ["0", "1", "2", "3"], said
    tasks = {p.name: p.read_text().split() for p in ran.iterdir()}
    assert sorted(tasks) == ["0", "1", "2", "3"] and all(index == name for name, (index, _) in tasks.items())
    assert len({home for _, home in tasks.values()}) == 4  # a fresh HOME each

    finish = worker_run(command(finish_job))
    assert finish.returncode == 0, (finish.stdout, finish.stderr)
    verify = worker_run([*relocate, "verify", str(plan)])
    assert verify.returncode == 0, (verify.stdout, verify.stderr)
    paths = map_keys(sorted(bodies))
    for key, data in bodies.items():
        assert (root / "data/media" / paths[key]).read_bytes() == data, key
    assert len([p for p in (root / "data/media").rglob("*") if p.is_file()]) == len(bodies)
    assert "MODE='production'" in (root / "shared/app.env").read_text()
