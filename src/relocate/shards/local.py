"""`move plan.json --shard K --on-target`: the worker runs on the target host itself.

It reads S3 and writes target.root on its own file system: no SSH hop, so N new
servers can each pull their own share. Everything the worker does to the target is a
shell command (the receivers, the records, the lock, the audit line), so a connection
whose commands run here, under /bin/sh, is all it takes: the same code, minus SSH.
"""

from __future__ import annotations

from relocate.ssh.openssh import OpenSshExec
from relocate.ssh.connection import Connection


class LocalConnection:
    """The part of targets.ssh.Connection the shard worker and the transfer engine use,
    for commands run on this machine. There is no SFTP: the worker writes its records
    with shell commands (shards/state.py)."""

    endpoint = "local"
    via = None

    def __init__(self) -> None:
        self.receiver: str | None = None  # execute/objects.receiver_for caches its answer here
        self.bulk_pending = None

    def clone(self) -> "LocalConnection":
        return LocalConnection()

    def connect(self) -> None:
        pass

    def ensure(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "LocalConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def start(self, command: str, stdout_sink: object = None) -> OpenSshExec:
        # OpenSshExec is a local process with the Exec surface (write, wait, kill): here
        # the process is the command itself, not `ssh`.
        return OpenSshExec(["sh", "-c", command])

    # the same run as over SSH: start, feed stdin, wait, a guarded write's refusal or one
    # line naming the failure (it uses only self.start and self.endpoint)
    run = Connection.run
