"""A real batch engine runs relocate's shards: a one-node Slurm cluster from Debian's packages
(tests/slurm.py) and `sbatch --array=0-3 --wait`. Each task gets only what Slurm gives it (its
SLURM_ARRAY_TASK_ID, no terminal) and a fresh HOME and working directory of its own: nothing
may rely on a disk shared between workers."""

from __future__ import annotations

from pathlib import Path

# Each task: a fresh HOME and working directory, nothing from the submitting shell's.
FRESH = 'work=$(mktemp -d) && export HOME="$work" && cd "$work"\n'


def _sbatch(slurm, tmp_path: Path, body: str, array: str = "0-3", env: dict[str, str] | None = None):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\nset -eu\n" + FRESH + body)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return slurm.run("sbatch", f"--array={array}", "--wait", "--job-name=relocate-test", f"--chdir={tmp_path}",
                     f"--output={logs}/%A_%a.out", str(script), env=env)


def test_an_array_job_runs_each_index_once(slurm, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    out.mkdir()
    # noclobber: a task run twice would fail on its own file
    run = _sbatch(slurm, tmp_path, f'set -C\necho "$SLURM_ARRAY_TASK_ID $HOME" > {out}/"$SLURM_ARRAY_TASK_ID"\n'
                                   '[ ! -t 0 ] && [ ! -t 1 ]\n')
    assert run.returncode == 0, run.stderr + slurm.logs()
    ran = {p.name: p.read_text().split() for p in out.iterdir()}
    assert sorted(ran) == ["0", "1", "2", "3"]
    homes = [home for _, home in ran.values()]
    assert len(set(homes)) == 4 and all(idx == name for name, (idx, _) in ran.items())
