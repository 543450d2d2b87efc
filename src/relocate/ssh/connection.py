"""An SSH connection to a host, with host keys checked the way OpenSSH users expect.

- Known hosts come from `~/.ssh/known_hosts` (or `target.ssh.known_hosts`) and a
  `host_key: SHA256:...` pin; an unknown key is refused unless the user opts in
  (`--accept-new-host-key`, like OpenSSH's accept-new); a changed key is always refused.
- `~/.ssh/config` (HostName, User, Port, IdentityFile) and ssh-agent are honoured.
- Remote commands drain stdout and stderr together (paramiko issue 1778 deadlocks
  otherwise) and a missing exit status is a failure, never a success.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator

from relocate.ssh.deferred import defer

defer()  # before paramiko: it imports invoke as it starts (ssh/deferred.py)

import paramiko  # noqa: E402

from relocate.errors import ConfigError, HostKeyError, TargetError, TransientError
from relocate.secret import Secret
from relocate.settings import Login
from relocate.ssh.via import SshSpec
from relocate.targets import nolinks

log = logging.getLogger(__name__)  # --debug's log file only (cli._setup_logging)

if TYPE_CHECKING:  # openssh imports this module
    from relocate.ssh.openssh import OpenSsh

# Bigger windows and packets keep one channel busy on a fast link (paramiko's default
# 2 MiB window halves throughput on loopback); GCM first because it is the fastest
# cipher paramiko offers here.
WINDOW = 64 * 1024 * 1024
MAX_PACKET = 32768
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
CONNECT_TIMEOUT = 15.0

# What a dropped link raises from a channel or an SFTP call: callers outside this
# package catch these without importing paramiko.
LINK_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, paramiko.SSHException)


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect, after ~/.ssh/config is applied."""

    host: str  # what the user wrote (may be a ~/.ssh/config alias)
    hostname: str  # what we dial
    port: int
    user: str
    identity_files: tuple[str, ...]
    host_key: str | None
    known_hosts: Path
    host_key_alias: str | None = None

    @property
    def known_hosts_name(self) -> str:
        # As OpenSSH: keyed by HostKeyAlias, else the HostName actually dialled (not the alias),
        # so an entry `ssh alias` recorded is found, and one relocate records serves `ssh`.
        name = self.host_key_alias or self.hostname
        return name if self.port == 22 else f"[{name}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def resolve(spec: SshSpec) -> Endpoint:
    cfg_path = Path.home() / ".ssh" / "config"
    looked: dict[str, Any] = {}
    if cfg_path.exists():
        try:
            looked = paramiko.SSHConfig.from_path(str(cfg_path)).lookup(spec.host)
        except Exception as exc:  # a broken ssh config should say so, not crash
            raise ConfigError(f"{cfg_path}: cannot parse: {exc}") from None
    identity = [spec.identity_file] if spec.identity_file else list(looked.get("identityfile", []))
    user = spec.user or looked.get("user") or os.environ.get("USER") or "root"
    known = Path(os.path.expanduser(spec.known_hosts)) if spec.known_hosts else Path.home() / ".ssh" / "known_hosts"
    return Endpoint(
        host=spec.host,
        hostname=looked.get("hostname", spec.host),
        port=int(spec.port or looked.get("port", 22)),
        user=user,
        identity_files=tuple(os.path.expanduser(p) for p in identity),
        host_key=spec.host_key,
        known_hosts=known,
        host_key_alias=looked.get("hostkeyalias"),
    )


def check_host_key(ep: Endpoint, key: paramiko.PKey, accept_new: bool) -> None:
    """Refuse unknown and changed keys; the one place host trust is decided."""
    fp = fingerprint(key)
    how = f"pin it with target.ssh.host_key: \"{fp}\" after checking it on the host (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), or pass --accept-new-host-key"
    if ep.host_key:
        if ep.host_key != fp:
            raise HostKeyError(f"host key of {ep} is {fp}, but relocate.yaml pins {ep.host_key}: refusing (possible man-in-the-middle)")
        return
    known = paramiko.HostKeys()
    if ep.known_hosts.exists():
        try:
            known.load(str(ep.known_hosts))
        except (OSError, paramiko.SSHException) as exc:
            raise ConfigError(f"{ep.known_hosts}: cannot read known hosts: {exc}") from None
    entry = known.lookup(ep.known_hosts_name)
    if entry is not None and key.get_name() in entry:
        if entry[key.get_name()] != key:
            raise HostKeyError(
                f"host key of {ep} CHANGED: it now presents {fp}, unlike the key in {ep.known_hosts}: refusing "
                "(if the host was rebuilt, remove the old line with ssh-keygen -R and check the new key)"
            )
        return
    if not accept_new:
        raise HostKeyError(f"unknown host key for {ep}: {fp}", hint=how)
    ep.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(ep.known_hosts, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(f"{ep.known_hosts_name} {key.get_name()} {key.get_base64()}\n")


def _load_key(path: str, passphrase: Secret | None) -> paramiko.PKey:
    """`passphrase`: RELOCATE_SSH_KEY_PASSPHRASE, read by the CLI (settings.Login). Its
    value is never part of a message (paramiko's and cryptography's texts do not hold it)."""
    try:
        # bytes: cryptography refuses a str passphrase for OpenSSH-format keys (TypeError)
        return paramiko.PKey.from_path(path, passphrase.reveal().encode() if passphrase else None)
    except FileNotFoundError:
        raise ConfigError(f"target.ssh.identity_file: {path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"target.ssh.identity_file: {path}: permission denied") from None
    except (paramiko.PasswordRequiredException, TypeError):
        # TypeError: cryptography's word for a passphrase missing, or given for a key that
        # is not encrypted. The latter is not an error for ssh (one variable set for every
        # key of a job): load the key as it is.
        if passphrase is not None:
            return _load_key(path, None)
        raise ConfigError(f"{path}: the key is encrypted; set RELOCATE_SSH_KEY_PASSPHRASE or load it into ssh-agent") from None
    except ValueError as exc:
        # A wrong passphrase: cryptography's OpenSSH loader fails, then paramiko falls back
        # to the PEM loader, whose ValueError ("Valid PEM but no BEGIN/END delimiters ...
        # Are you sure this is a private key?") names neither. An encrypted key (one that
        # asks for a passphrase) that the given one does not open is that case.
        if passphrase is not None and _asks_passphrase(path):
            raise ConfigError(f"{path}: RELOCATE_SSH_KEY_PASSPHRASE does not decrypt this key",
                              hint="a wrong passphrase: set the key's own, or load the key into ssh-agent") from None
        raise ConfigError(f"{path}: not a usable private key ({exc})") from None
    except paramiko.SSHException as exc:  # after decryption: paramiko cannot use the key's format or type
        raise ConfigError(f"{path}: not a usable private key ({exc})") from None


def _asks_passphrase(path: str) -> bool:
    """Whether the key at `path` is encrypted: loading it without a passphrase says so."""
    try:
        paramiko.PKey.from_path(path, None)
    except (paramiko.PasswordRequiredException, TypeError):
        return True
    except Exception:  # unreadable or not a key at all: not a passphrase question
        return False
    return False


def _candidate_keys(ep: Endpoint, passphrase: Secret | None) -> Iterable[paramiko.PKey]:
    if ep.identity_files:
        for path in ep.identity_files:
            yield _load_key(path, passphrase)
    try:
        yield from paramiko.Agent().get_keys()
    except paramiko.SSHException:
        pass
    if not ep.identity_files:
        for name in ("id_ed25519", "id_ecdsa", "id_rsa"):
            default = Path.home() / ".ssh" / name
            if default.exists():
                try:
                    yield _load_key(str(default), passphrase)
                except ConfigError:
                    continue


@dataclass
class Result:
    status: int
    stdout: bytes
    stderr: bytes

    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


class Output:
    """A remote command's stdout as it drains (appended by the drain thread), which a
    caller can wait on for a marker: a long-lived receiver answers one batch at a time
    (execute/objects.py) without exiting. One growing buffer, searched from where the
    last answer ended, so waiting costs nothing per byte already answered."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._cond = threading.Condition()
        self.closed = False

    def append(self, chunk: bytes) -> None:
        with self._cond:
            self.data += chunk
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def value(self) -> bytes:
        with self._cond:
            return bytes(self.data)

    def read_until(self, marker: bytes, start: int, timeout: float) -> tuple[bytes, int]:
        """Bytes from offset `start` up to and including the first `marker` after it, and
        the offset past it. TransientError when the stream ends or `timeout` passes first."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.data.find(marker, start) >= 0 or self.closed, timeout):
                raise TransientError("no answer from the target (stalled connection?)", hint="running again resumes")
            at = self.data.find(marker, start)
            if at < 0:
                raise TransientError("the target's end closed before it answered (connection lost?)", hint="running again resumes")
            end = at + len(marker)
            return bytes(self.data[start:end]), end


def drain(read: Callable[[], bytes], into: list[bytes] | Output, sink: IO[bytes] | None = None) -> None:
    """A drain thread's loop: stdout and stderr are read side by side, never one after the
    other (reading one while the other fills its window deadlocks, DESIGN.md)."""
    try:
        while True:
            try:
                data = read()
            except (OSError, EOFError, ValueError, paramiko.SSHException):
                return
            if not data:
                return
            if sink is not None:
                sink.write(data)
            else:
                into.append(data)
    finally:
        if isinstance(into, Output):
            into.close()


class Draining:
    """What both kinds of running command share (Exec here, over paramiko, and
    openssh.OpenSshExec, over the `ssh` binary): stdout and stderr drained by threads."""

    _out: Output
    _err: list[bytes]
    _readers: list[threading.Thread]

    def _start_drains(self, read_out: Callable[[], bytes], read_err: Callable[[], bytes],
                      sink: IO[bytes] | None = None) -> None:
        self._out, self._err = Output(), []
        self._readers = [threading.Thread(target=drain, args=(read_out, self._out, sink), daemon=True),
                         threading.Thread(target=drain, args=(read_err, self._err), daemon=True)]
        for t in self._readers:
            t.start()

    @property
    def out(self) -> Output:
        return self._out


class Exec(Draining):
    """A running remote command: write to its stdin while stdout/stderr drain in threads."""

    def __init__(self, chan: paramiko.Channel, command: str, stdout_sink: IO[bytes] | None = None) -> None:
        self.chan = chan
        self.command = command
        self._start_drains(lambda: chan.recv(1 << 20), lambda: chan.recv_stderr(1 << 20), stdout_sink)

    def write(self, data: bytes | memoryview) -> None:
        try:
            self.chan.sendall(data)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise TransientError(f"connection lost while writing to the target ({exc})", hint="running again resumes") from None

    def end_input(self) -> None:
        """EOF on the command's stdin (a `sh -s` script runs to its end only after it)."""
        try:
            self.chan.shutdown_write()
        except (OSError, EOFError):
            pass

    def wait(self, timeout: float | None = None) -> Result:
        self.end_input()
        for t in self._readers:
            t.join(timeout)
        if not self.chan.status_event.wait(timeout if timeout is not None else 3600):
            raise TransientError("the target did not report an exit status (connection lost?)", hint="running again resumes")
        status = self.chan.recv_exit_status()
        try:
            self.chan.close()
        except (OSError, EOFError, paramiko.SSHException):  # the transport died after the status came
            pass
        return Result(status, self._out.value(), b"".join(self._err))

    def kill(self) -> None:
        """Abandon the command: close its channel without waiting for it to end (an
        interrupted restore). The target's sshd closes the command's stdin, so a client
        reading it (mysql, pg_restore) sees the end of its input and stops."""
        try:
            self.chan.close()
        except (OSError, EOFError, paramiko.SSHException):  # already gone
            pass


def shorten(command: str, limit: int = 240) -> str:
    """A command line for the debug log: its head, and how much was left out."""
    return command if len(command) <= limit else f"{command[:limit]}... ({len(command) - limit} more characters)"


def checked(endpoint: object, result: Result) -> Result:
    """`result`, or the error a failed command is: a guarded write's refusal (exit 6,
    naming the link) or one line with the command's last stderr line."""
    if result.status != 0:
        refused = nolinks.refusal(result.status, result.stderr)
        if refused is not None:  # a guarded write met a symlinked directory: exit 6, naming it
            raise refused
        err = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise TargetError(f"on {endpoint}: command failed (exit {result.status}): {err[-1] if err else 'no message'}")
    return result


class Connection:
    """One SSH transport to a host; open commands and SFTP sessions on it."""

    def __init__(self, spec: SshSpec, login: Login = Login(), *, via: "Connection | None" = None) -> None:
        self.endpoint = resolve(spec)
        self.login = login  # host-key trust, the key's passphrase, whether `ssh` may carry streams
        self.via = via  # a connected bastion: this host is reached through its direct-tcpip channel
        # The session's state for the transfer engine, declared here rather than hung on
        # the object: bulk logins started early (ssh/openssh.OpenSsh.prestart) and the
        # receiver the target was found to run (execute/objects.receiver_for).
        self.bulk_pending: OpenSsh | None = None
        self.receiver: str | None = None
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def clone(self) -> "Connection":
        """A fresh, unconnected Connection to the same endpoint with the same trust
        decision: bulk lanes and retries each get their own transport."""
        other = Connection.__new__(Connection)
        other.endpoint, other.login = self.endpoint, self.login
        other.via = self.via  # lanes of a tunnelled host go through the same bastion
        other.bulk_pending, other.receiver = None, None
        other._transport, other._sftp = None, None
        return other

    def ensure(self) -> None:
        """Reconnect if the transport died (e.g. the link dropped while bulk lanes, on
        their own connections, retried past it): the control steps after them go on."""
        if self._transport is None or not self._transport.is_active():
            self.close()
            self.connect()

    def abort(self) -> None:
        """Tear the transport down from another thread (the stall watchdog): blocked
        sends and waits on its channels fail at once instead of hanging."""
        transport = self._transport
        if transport is not None:
            try:
                transport.sock.close()
            except OSError:
                pass
            transport.close()

    def __enter__(self) -> "Connection":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        ep = self.endpoint
        try:
            via = self.via
            sock = (via.open_tunnel(ep.hostname, ep.port) if via is not None
                    else socket.create_connection((ep.hostname, ep.port), timeout=CONNECT_TIMEOUT))
        except OSError as exc:
            raise TransientError(f"cannot reach {ep} ({exc.strerror or exc})", hint="check the address and that sshd runs; running again retries") from None
        # Like OpenSSH: without TCP_NODELAY every short request/reply (channel open,
        # exit status) waits out a 40 ms delayed ACK; measured 50 ms per `true` here.
        if isinstance(sock, socket.socket):  # a `via:` bastion hands us a paramiko Channel instead
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock, default_window_size=WINDOW, default_max_packet_size=MAX_PACKET)
        opts = transport.get_security_options()
        opts.ciphers = tuple(c for c in PREFERRED_CIPHERS if c in opts.ciphers) + tuple(
            c for c in opts.ciphers if c not in PREFERRED_CIPHERS
        )
        try:
            transport.start_client(timeout=CONNECT_TIMEOUT)
            check_host_key(ep, transport.get_remote_server_key(), self.login.accept_new_host_key)
            self._authenticate(transport)
        except (HostKeyError, ConfigError, TargetError):
            transport.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise TransientError(f"SSH handshake with {ep} failed ({exc})", hint="running again retries") from None
        transport.set_keepalive(15)
        self._transport = transport
        log.debug("logged in to %s (%s)", ep, transport.remote_version)

    def _authenticate(self, transport: paramiko.Transport) -> None:
        ep = self.endpoint
        tried = 0
        for key in _candidate_keys(ep, self.login.passphrase):
            tried += 1
            try:
                transport.auth_publickey(ep.user, key)
            except paramiko.AuthenticationException:
                continue
            if transport.is_authenticated():
                return
        what = ", ".join(ep.identity_files) if ep.identity_files else "ssh-agent and ~/.ssh/id_*"
        raise TargetError(
            f"login to {ep} refused: none of {tried} key(s) from {what} was accepted",
            hint="check target.ssh.user and identity_file, and the host's authorized_keys",
        )

    @property
    def transport(self) -> paramiko.Transport:
        if self._transport is None or not self._transport.is_active():
            raise TransientError(f"the SSH connection to {self.endpoint} is closed", hint="running again resumes")
        return self._transport

    def start(self, command: str, stdout_sink: IO[bytes] | None = None) -> Exec:
        try:
            chan = self.transport.open_session(window_size=WINDOW, max_packet_size=MAX_PACKET)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransientError(f"cannot start a command on {self.endpoint} ({exc})", hint="running again resumes") from None
        # Command lines never hold a secret (values travel on stdin); the receiver's
        # program is the long tail of some, hence the cut.
        log.debug("on %s: %s", self.endpoint, shorten(command))
        return Exec(chan, command, stdout_sink)

    def run(self, command: str, stdin: bytes | None = None, *, timeout: float | None = 600, check: bool = True) -> Result:
        proc = self.start(command)
        if stdin:
            proc.write(stdin)
        result = proc.wait(timeout)
        log.debug("on %s: exit %s", self.endpoint, result.status)
        return checked(self.endpoint, result) if check else result

    def begin(self, command: str, stdin: bytes | None = None) -> Exec:
        """`run` in two halves: the command starts with all its stdin sent, and the caller
        does other work while the target answers; `finish` then waits and checks."""
        proc = self.start(command)
        if stdin:
            proc.write(stdin)
        proc.end_input()
        return proc

    def finish(self, proc: Exec, *, timeout: float | None = 600) -> Result:
        return checked(self.endpoint, proc.wait(timeout))

    def open_tunnel(self, host: str, port: int) -> paramiko.Channel:
        """A TCP stream to host:port as seen from this host (paramiko direct-tcpip, like
        `ssh -W`): reaches a jump target or a port that is not open to the world."""
        try:
            chan = self.transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT)
        except paramiko.ChannelException as exc:
            raise OSError(f"{self.endpoint} could not open {host}:{port} ({exc.text if hasattr(exc, 'text') else exc})") from None
        except (paramiko.SSHException, EOFError) as exc:
            raise OSError(f"tunnel through {self.endpoint} to {host}:{port} failed ({exc})") from None
        return chan

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(self.transport, window_size=WINDOW, max_packet_size=MAX_PACKET)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise TransientError(f"cannot open SFTP on {self.endpoint} ({exc})") from None
            if self._sftp is None:
                raise TargetError(f"{self.endpoint} offers no SFTP subsystem")
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None


@contextmanager
def session(spec: SshSpec, login: Login, via: SshSpec | None = None) -> Iterator[Connection]:
    """A connected session to `spec` (the target, a source host), through the bastion
    `via` when given (its direct-tcpip channel, like `ssh -J`; its host key is checked
    like any other). Both are closed on the way out."""
    bastion = Connection(via, login) if via is not None else None
    if bastion is not None:
        bastion.connect()
    try:
        conn = Connection(spec, login, via=bastion)
        conn.connect()
        try:
            yield conn
        finally:
            conn.close()
    finally:
        if bastion is not None:
            bastion.close()
