"""An embedded, real SSH server for `relocate demo`.

Users trying relocate may have no root, no Docker and no openssh-server, yet
the demo must move data over real SSH. This module is that server, built on
asyncssh and always run as a *child process*: with an asyncssh server and a
paramiko client in one Python process the two fight over the GIL and transfers
crawl at about 2 MB/s (see DESIGN.md, pitfalls).

    python -m relocate.demo.sshserver --workdir DIR --port 0 --ready-file FILE

It serves, as the current user and only to the client key it generated:
exec requests (`/bin/sh -c CMD`, cwd DIR/home, binary stdin/stdout/stderr with
flow control, real exit status), SFTP rooted at /, and direct-tcpip forwarding
to loopback only. No password or keyboard-interactive auth, no shells, no
remote forwarding. SIGTERM or SIGINT shut it down cleanly.

The parent side is `start_embedded_sshd()`, which returns an `EmbeddedSshd`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import pwd
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import asyncssh

log = logging.getLogger("relocate.demo.sshserver")

# Flow-control settings. Measured from a paramiko client on 2 loopback cores:
# 270-370 MB/s up and 310-510 MB/s down for every mix of window 2-64 MiB,
# max packet 32 KiB-1 MiB and read size 64 KiB-1 MiB (differences within the
# noise); what mattered was running the server in its own process. We keep the
# larger values because a bigger window needs fewer window-adjust round trips
# on a real network, and bigger packets and reads mean fewer Python-level steps.
WINDOW_BYTES = 16 * 1024 * 1024
MAX_PACKET_BYTES = 256 * 1024
CHUNK_BYTES = 1024 * 1024

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})

# paramiko kills the whole transport if a channel closes while paramiko is
# re-keying, which it starts by itself after 2^29 bytes in either direction
# (paramiko issue 822). Every re-key resets paramiko's counters, so if the
# server re-keys first, paramiko never starts one, and a re-key the server
# starts holds our CLOSE back until it is done (asyncssh defers it), which
# paramiko handles fine.
REKEY_BYTES = 256 * 1024 * 1024


# --------------------------------------------------------------------------
# keys


def _write_private(path: Path, data: bytes) -> None:
    """Create a 0600 file atomically, so a key is never briefly world-readable."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _load_or_create_key(path: Path, comment: str) -> asyncssh.SSHKey:
    """Reuse the key at `path` so the host key (and known_hosts) stays stable
    across demo runs; create an ed25519 key there if it does not exist."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    _write_private(path, key.export_private_key("openssh"))
    return key


def _public_line(key: asyncssh.SSHKey) -> str:
    """'ssh-ed25519 AAAA...' with no comment, as known_hosts wants it."""
    algo, b64 = key.export_public_key("openssh").decode().split()[:2]
    return f"{algo} {b64}"


def _ensure_keys(workdir: Path) -> tuple[asyncssh.SSHKey, asyncssh.SSHKey]:
    host_key = _load_or_create_key(workdir / "host_key", "relocate-demo-host")
    client_key = _load_or_create_key(workdir / "client_key", "relocate-demo-client")
    _write_private(workdir / "client_key.pub", (_public_line(client_key) + "\n").encode())
    return host_key, client_key


def current_user() -> str:
    """The login name of the user running us (works without a controlling tty)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry, e.g. in some containers
        return os.environ.get("USER") or str(os.getuid())


# --------------------------------------------------------------------------
# the server


class _DemoServer(asyncssh.SSHServer):
    """Authentication and forwarding policy: one user, one key, loopback only."""

    def __init__(self, user: str, client_key: asyncssh.SSHKey) -> None:
        self._user = user
        self._client_public = client_key.public_data

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # asyncssh checks the signature itself; we only decide which key may.
        return username == self._user and key.public_data == self._client_public

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        # Tunnels exist for health checks of the app on the target itself;
        # anything else would make the demo host an open relay.
        return dest_host in LOOPBACK_HOSTS

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False


def _count_toward_rekey(chan: Any, nbytes: int) -> None:
    """Make received bytes count toward asyncssh's re-key limit.

    asyncssh only counts bytes it *sends* (`rekey_bytes`), so a long upload
    from paramiko would reach paramiko's own 2^29 limit first (see
    REKEY_BYTES). There is no public hook, hence the guarded private counter:
    if a future asyncssh renames it, we merely lose the protection.
    """
    conn = chan.get_connection()
    if isinstance(getattr(conn, "_rekey_bytes_sent", None), int):
        conn._rekey_bytes_sent += nbytes


async def _pump_in(stdin: asyncssh.SSHReader[bytes], child_in: asyncio.StreamWriter) -> None:
    """Channel -> child stdin, closing the child's stdin on the client's EOF
    (so `tar -x` or `sha256sum` sees end of input)."""
    chan = stdin.channel
    try:
        while True:
            data = await stdin.read(CHUNK_BYTES)
            if not data:
                break
            _count_toward_rekey(chan, len(data))
            child_in.write(data)
            await child_in.drain()  # flow control: stop reading the channel while the pipe is full
    except (BrokenPipeError, ConnectionResetError):
        pass  # the child stopped reading (e.g. `head`); its exit status tells the story
    finally:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            child_in.close()


async def _pump_out(child_out: asyncio.StreamReader, out: asyncssh.SSHWriter[bytes]) -> None:
    """Child stdout/stderr -> channel, respecting the client's window via drain()."""
    while True:
        data = await child_out.read(CHUNK_BYTES)
        if not data:
            return
        out.write(data)
        await out.drain()


def _exit_channel(chan: Any, returncode: int) -> None:
    """Report the real status: exit-status, or exit-signal when killed by one."""
    if returncode >= 0:
        chan.exit(returncode)
        return
    try:
        name = signal.Signals(-returncode).name.removeprefix("SIG")
    except ValueError:
        chan.exit(128 - returncode)
        return
    chan.exit_with_signal(name, False, f"killed by SIG{name}")


class _ExecHandler:
    """Runs one exec request as `/bin/sh -c CMD` and wires it to the channel."""

    def __init__(self, home: Path, children: set[asyncio.subprocess.Process]) -> None:
        self._home = home
        self._children = children

    async def __call__(
        self, stdin: asyncssh.SSHReader[bytes], stdout: asyncssh.SSHWriter[bytes], stderr: asyncssh.SSHWriter[bytes]
    ) -> None:
        chan: Any = stdout.channel  # an SSHServerChannel: exec requests come only from the server side
        command = chan.get_command()
        if not command:  # a shell or a subsystem other than sftp
            stderr.write(b"relocate demo sshd: only exec requests and sftp are served\n")
            chan.exit(1)
            return
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=self._home, limit=2 * CHUNK_BYTES,
            start_new_session=True,  # so shutdown can signal the whole pipeline
        )
        self._children.add(proc)
        try:
            await self._serve(proc, stdin, stdout, stderr)
        finally:
            self._children.discard(proc)
            if proc.returncode is None:  # client went away mid-command
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)

    async def _serve(self, proc: asyncio.subprocess.Process, stdin: asyncssh.SSHReader[bytes],
                     stdout: asyncssh.SSHWriter[bytes], stderr: asyncssh.SSHWriter[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None  # all three are PIPEs
        feeder = asyncio.ensure_future(_pump_in(stdin, proc.stdin))
        # The command is done when its output is drained and it has exited;
        # the client need not send EOF (`echo hi` never reads stdin).
        await asyncio.gather(_pump_out(proc.stdout, stdout), _pump_out(proc.stderr, stderr))
        returncode = await proc.wait()
        if not feeder.done():
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        _exit_channel(stdout.channel, returncode)


def _write_ready_file(path: Path, info: dict[str, object]) -> None:
    """Tmp + rename, so the parent never reads a half-written file."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)


async def serve(workdir: Path, port: int, ready_file: Optional[Path]) -> None:
    """Run the server until SIGTERM/SIGINT."""
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    host_key, client_key = _ensure_keys(workdir)
    user = current_user()
    children: set[asyncio.subprocess.Process] = set()

    acceptor = await asyncssh.listen(
        "127.0.0.1", port,
        server_host_keys=[host_key],
        server_factory=lambda: _DemoServer(user, client_key),
        session_factory=_ExecHandler(home, children),
        sftp_factory=asyncssh.SFTPServer,  # rooted at /: the user's own files
        encoding=None,  # binary streams
        window=WINDOW_BYTES,
        max_pktsize=MAX_PACKET_BYTES,
        rekey_bytes=REKEY_BYTES,
        allow_scp=False,
        agent_forwarding=False, x11_forwarding=False,
        keepalive_interval=30,
    )
    bound = acceptor.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    if ready_file is not None:
        _write_ready_file(ready_file, {
            "port": bound,
            "host_key_fingerprint": host_key.get_fingerprint("sha256"),
            "host_key_line": _public_line(host_key),
            "identity_file": str((workdir / "client_key").resolve()),
            "user": user,
            "pid": os.getpid(),
        })
    log.info("listening on 127.0.0.1:%d as %s", bound, user)

    await stop.wait()
    log.info("shutting down")
    acceptor.close()
    for proc in list(children):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(acceptor.wait_closed(), timeout=5)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relocate.demo.sshserver",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s demo-sshd %(levelname)s %(message)s")
    if not args.verbose:
        # asyncssh logs every connection at INFO; the demo's output should stay readable.
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
    asyncio.run(serve(args.workdir.resolve(), args.port,
                      args.ready_file.resolve() if args.ready_file else None))
    return 0


# --------------------------------------------------------------------------
# the parent side


@dataclass
class EmbeddedSshd:
    """A running demo SSH server (a child process) and how to reach it."""

    host: str
    port: int
    user: str
    identity_file: Path
    host_key_fingerprint: str
    host_key_line: str
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def known_hosts_line(self) -> str:
        """The line OpenSSH and paramiko expect in known_hosts for this host:port."""
        return f"[{self.host}]:{self.port} {self.host_key_line}"

    def write_known_hosts(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.known_hosts_line + "\n")

    def stop(self, timeout: float = 10) -> None:
        """Terminate the server and wait for it; kill it if it will not go."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "EmbeddedSshd":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _child_env() -> dict[str, str]:
    """Make sure the child imports this same relocate, installed or not."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def start_embedded_sshd(workdir: Path, timeout: float = 20) -> EmbeddedSshd:
    """Start the demo SSH server as a child process and wait until it listens.

    Raises RuntimeError (with the child's stderr) if it dies or is not ready
    within `timeout` seconds.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "sshd.ready.json"
    stderr_path = workdir / "sshd.log"
    with contextlib.suppress(FileNotFoundError):
        ready.unlink()  # a stale file from an earlier run would point at a dead port
    with open(stderr_path, "wb") as stderr:  # a file, not a pipe nobody drains
        process = subprocess.Popen(
            [sys.executable, "-m", "relocate.demo.sshserver",
             "--workdir", str(workdir), "--port", "0", "--ready-file", str(ready)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            env=_child_env(), close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError(f"demo SSH server exited with status {process.returncode}:\n"
                               f"{_tail(stderr_path)}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"demo SSH server not ready after {timeout:g}s:\n"
                               f"{_tail(stderr_path)}")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    return EmbeddedSshd(
        host="127.0.0.1", port=int(info["port"]), user=info["user"],
        identity_file=Path(info["identity_file"]),
        host_key_fingerprint=info["host_key_fingerprint"],
        host_key_line=info["host_key_line"], process=process,
    )


if __name__ == "__main__":
    sys.exit(main())
