"""A real batch engine runs relocate's shards: a one-node Slurm cluster from Debian's packages
(tests/slurm.py) and `sbatch --array=0-3 --wait`. Each task gets only what Slurm gives it (its
SLURM_ARRAY_TASK_ID, no terminal) and a fresh HOME and working directory of its own: nothing
may rely on a disk shared between workers. About 20 s: four real workers, the finish and the
merged verify, and `sbatch --wait`, which polls after 2, 5 and 9 seconds."""

from __future__ import annotations

import json
import os
import random
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


def test_slurm_array_runs_the_shards_then_finish_and_verify(slurm, seaweedfs, moto: str, sshd, tmp_path: Path) -> None:
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
    # relative snapshot paths and a relative -f: every worker keeps its local state in its own
    # working directory, as a pod or a batch node without a shared disk would
    doc = yaml.safe_load(cfg.read_text())
    doc["snapshot"] = {"dir": ".relocate/snapshots", "key_file": ".relocate/age.key"}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELOCATE_", "JOB_", "SLURM_", "AWS_"))}
    env.update({"AWS_ACCESS_KEY_ID": seaweedfs.access_key, "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
                "AWS_ENDPOINT_URL": moto, "AWS_ENDPOINT_URL_S3": seaweedfs.endpoint_url, "RELOCATE_NO_INPUT": "1"})
    relocate = [sys.executable, "-m", "relocate"]
    made = subprocess.run([*relocate, "plan", "-f", "relocate.yaml", "--shards", "4", "-o", "plan.json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    plan = tmp_path / "plan.json"

    ran = tmp_path / "ran"
    ran.mkdir()
    # noclobber: a task run twice fails on its own file; no terminal on any of stdin, stdout, stderr
    body = (f'set -C\necho "$SLURM_ARRAY_TASK_ID $HOME" > {shell.line([str(ran)])}/"$SLURM_ARRAY_TASK_ID"\n'
            '[ ! -t 0 ] && [ ! -t 1 ] && [ ! -t 2 ]\n'
            f'exec {shell.line(relocate)} move {shell.line([str(plan)])} --shard auto --yes --json\n')
    run = _sbatch(slurm, tmp_path, body, {**env, "SLURM_CONF": str(slurm.conf)})
    logs = {p.name: p.read_text() for p in (tmp_path / "logs").iterdir()}
    assert run.returncode == 0, f"{run.stderr}\n{logs}\n{slurm.logs()}"
    # each task found its own shard through SLURM_ARRAY_TASK_ID and nothing else
    shards = sorted(json.loads(text)["shard"]["shard"] for name, text in logs.items() if name.endswith(".out"))
    assert shards == [0, 1, 2, 3]
    tasks = {p.name: p.read_text().split() for p in ran.iterdir()}
    assert sorted(tasks) == ["0", "1", "2", "3"] and all(index == name for name, (index, _) in tasks.items())
    assert len({home for _, home in tasks.values()}) == 4  # a fresh HOME each

    for args in (["move", str(plan), "--finish", "--yes"], ["verify", str(plan)]):
        home = Path(tempfile.mkdtemp(dir=tmp_path))
        done = subprocess.run([*relocate, *args], cwd=home, env={**env, "HOME": str(home)}, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    paths = map_keys(sorted(bodies))
    for key, data in bodies.items():
        assert (root / "data/media" / paths[key]).read_bytes() == data, key
    assert len([p for p in (root / "data/media").rglob("*") if p.is_file()]) == len(bodies)
    assert "MODE='production'" in (root / "shared/app.env").read_text()
