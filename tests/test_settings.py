"""The RELOCATE_* tuning variables are read once, at the CLI edge, into one frozen object
(relocate/settings.py) that is handed down (issue 17)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from helpers import cli
from relocate.errors import UsageError
from relocate.execute.objects import ATTEMPTS, STALL_S, PushOptions
from relocate.settings import Tuning


@pytest.mark.parametrize("env, want", [
    ({}, Tuning()),
    ({"RELOCATE_RECEIVER": "sh", "RELOCATE_BULK_SSH": "paramiko", "RELOCATE_S3_GETS": "threads"},
     Tuning(bulk_ssh="paramiko", receiver="sh", s3_gets="threads")),
    ({"RELOCATE_STALL_TIMEOUT": "5", "RELOCATE_RETRY_ATTEMPTS": "2", "RELOCATE_RETRY_BACKOFF": "0.5",
      "RELOCATE_BATCH_OBJECTS": "3"}, Tuning(stall_s=5.0, attempts=2, backoff_s=0.5, batch_objects=3)),
    ({"RELOCATE_STALL_TIMEOUT": "soon"}, Tuning()),  # a number that does not parse: the default stands, as before
])
def test_tuning_from_the_environment(env: dict[str, str], want: Tuning) -> None:
    assert Tuning.from_env(env) == want


def test_tuning_is_frozen_and_applied_to_the_engine() -> None:
    t = Tuning(receiver="python", bulk_ssh="paramiko", attempts=2, batch_objects=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.receiver = "sh"  # type: ignore[misc]
    opts = PushOptions.tuned(t, transfers=3, lanes=1)
    assert (opts.transfers, opts.receiver, opts.engine, opts.attempts, opts.batch_objects, opts.stall_s) == \
        (3, "python", "paramiko", 2, 7, STALL_S)
    assert PushOptions.tuned(Tuning()).attempts == ATTEMPTS


def test_an_unknown_word_is_one_line_exit_2(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="RELOCATE_RECEIVER='tar': must be one of auto, python, sh"):
        Tuning.from_env({"RELOCATE_RECEIVER": "tar"})
    cfg = tmp_path / "relocate.yaml"
    cfg.write_text("version: 1\ntarget: {ssh: {host: 127.0.0.1}, root: /srv/a}\n")
    run = cli("plan", "-f", str(cfg), env={"RELOCATE_RECEIVER": "tar"})
    assert run.exit_code == 2, run.stdout + run.stderr
    assert run.stderr.strip().splitlines() == ["relocate: error: RELOCATE_RECEIVER='tar': must be one of auto, python, sh"]
