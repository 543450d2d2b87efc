"""Start and stop real servers for the tests (DESIGN.md, "Test with the real thing").

Plain functions, no pytest import, so the bench script and a REPL can use them
too. Every server binds 127.0.0.1 on a free port inside a temp dir, every
``start_*`` waits until the server really answers, and every returned object
has a ``stop()`` that is safe to call twice. A missing binary or a server that
will not come up raises ``ServerUnavailable`` with the reason (and log tail).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

HOST = "127.0.0.1"
# The non-root login/service user when the tests run as root (CI does): sshd
# refuses nothing for root, but relocate must work for an ordinary deploy user,
# and initdb/mariadbd refuse to run as root anyway.
TEST_USER = "relocatetest"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


class ServerUnavailable(Exception):
    """A server could not be started here (binary missing, or it never came up)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A port nobody listens on right now (small race accepted: tests own this box)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _which(name: str, *extra_dirs: Path) -> str:
    for d in extra_dirs:
        p = d / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not found:
        raise ServerUnavailable(f"{name} not found (looked in {[str(d) for d in extra_dirs]} and PATH)")
    return found


def _is_root() -> bool:
    return os.geteuid() == 0


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _wait(check: Callable[[], bool], what: str, timeout: float, proc: subprocess.Popen[bytes] | None,
          log: Path | None) -> None:
    """Poll ``check`` until true; fail early with the log if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerUnavailable(f"{what} exited with {proc.returncode}: {_tail(log) if log else ''}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise ServerUnavailable(f"{what} not ready after {timeout:.0f}s: {_tail(log) if log else ''}")


def _stop_group(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM the process group we started (start_new_session=True), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)


_user_ready = False


def ensure_test_user() -> pwd.struct_passwd:
    """Create the non-root TEST_USER once (idempotent); only called when root."""
    global _user_ready
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        r = subprocess.run(["useradd", "-m", "-s", "/bin/sh", TEST_USER], capture_output=True, text=True)
        if r.returncode not in (0, 9):  # 9: exists (a parallel session won the race)
            raise ServerUnavailable(f"useradd {TEST_USER} failed: {r.stderr.strip()}")
        pw = pwd.getpwnam(TEST_USER)
    if not _user_ready:
        # useradd leaves the password "!" (locked); sshd with UsePAM no refuses
        # locked accounts even for key auth. "*" = no password, but not locked.
        if _shadow_password(TEST_USER).startswith("!"):
            subprocess.run(["usermod", "-p", "*", TEST_USER], check=True, capture_output=True)
        # Others (and sshd reading authorized_keys as the user) must traverse home.
        os.chmod(pw.pw_dir, 0o755)
        _user_ready = True
    return pw


def _shadow_password(user: str) -> str:
    for line in Path("/etc/shadow").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == user:
            return rest.split(":", 1)[0]
    return ""


def _service_user() -> pwd.struct_passwd:
    """The user that logs in / owns server data: TEST_USER when root, else ourselves."""
    return ensure_test_user() if _is_root() else pwd.getpwuid(os.geteuid())


def _user_dir(workdir: Path, name: str) -> Path:
    """A fresh dir the service user owns and can reach.

    As root, pytest's tmp dirs live under a 0700 /tmp/pytest-of-root, which the
    service user cannot traverse, so the dir goes under its home instead.
    """
    if not _is_root():
        d = workdir / name
        d.mkdir(parents=True, exist_ok=False)
        return d
    pw = ensure_test_user()
    base = Path(pw.pw_dir) / "relocate-tests"
    base.mkdir(mode=0o755, exist_ok=True)
    os.chown(base, pw.pw_uid, pw.pw_gid)
    d = base / f"{name}-{secrets.token_hex(4)}"
    d.mkdir(mode=0o755)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def _as_user(argv: list[str]) -> list[str]:
    """Run argv as the service user (runuser when we are root)."""
    return ["runuser", "-u", TEST_USER, "--", *argv] if _is_root() else argv


def _chown_to_service(path: Path) -> None:
    if _is_root():
        pw = ensure_test_user()
        os.chown(path, pw.pw_uid, pw.pw_gid)


# --------------------------------------------------------------------------- sshd


@dataclass
class Sshd:
    host: str
    port: int
    user: str
    identity_file: Path
    host_key_fingerprint: str  # OpenSSH form, "SHA256:<base64 without padding>"
    host_key_line: str  # "ssh-ed25519 AAAA..."
    root: Path  # a dir the login user owns and can write: the target root
    authorized_keys: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _owned_dirs: list[Path] = field(default_factory=list, repr=False)

    def known_hosts_line(self) -> str:
        return f"[{self.host}]:{self.port} {self.host_key_line}"

    def stop(self) -> None:
        _stop_group(self.proc)
        for d in self._owned_dirs:
            shutil.rmtree(d, ignore_errors=True)

    def restart(self, down_for: float = 0.0, timeout: float = 15.0) -> list[int]:
        """Kill sshd and every connection it serves, stay down for `down_for` seconds,
        then start it again with the same config, port and keys. Per-connection sshd
        processes leave the listener's session (setsid) and rename themselves, so they
        are found as the listener's descendants. Returns the pids of those killed."""
        config = str(self.log.parent / "sshd_config")
        connections = sorted(_descendants(self.proc.pid), reverse=True) if self.proc is not None else []
        for pid in connections:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _stop_group(self.proc)
        time.sleep(down_for)
        self.proc = _spawn([_which("sshd", Path("/usr/sbin")), "-D", "-e", "-f", config], self.log)
        _wait(lambda: _ssh_banner(self.host, self.port), "sshd (restarted)", timeout, self.proc, self.log)
        return connections


def _ssh_banner(host: str, port: int) -> bool:
    """sshd is up when it greets: a port that only accepts is not enough."""
    with socket.create_connection((host, port), timeout=2) as s:
        return s.recv(64).startswith(b"SSH-2.0-")


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, read from /proc (children re-parented by setsid keep their ppid)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def _keygen(path: Path, comment: str) -> str:
    """Generate an ed25519 keypair; return the public key line without comment."""
    keygen = _which("ssh-keygen")
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    os.chmod(path, 0o600)
    kind, blob = path.with_suffix(".pub").read_text().split()[:2]
    return f"{kind} {blob}"


def fingerprint(key_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line ("ssh-ed25519 AAAA...")."""
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def start_sshd(workdir: Path, authorized_user_keys: Sequence[str] = (), timeout: float = 15.0,
               extra_config: Sequence[str] = ()) -> Sshd:
    """OpenSSH sshd with its own config, host key and authorized_keys.

    ``authorized_user_keys``: extra public key lines to authorize besides the
    generated client key. ``extra_config``: more sshd_config lines (e.g. a SetEnv).
    """
    sshd_bin = _which("sshd", Path("/usr/sbin"))
    _which("ssh-keygen")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    user = _service_user()

    host_key = workdir / "ssh_host_ed25519_key"
    host_line = _keygen(host_key, "relocate-test-host")
    client_key = workdir / "id_ed25519"
    client_line = _keygen(client_key, "relocate-test-client")

    # sshd reads authorized_keys with the login user's privileges, so it must
    # sit where that user can reach: a user-owned dir next to the target root.
    home = _user_dir(workdir, "sshd")
    authorized = home / "authorized_keys"
    authorized.write_text("\n".join([client_line, *authorized_user_keys]) + "\n")
    os.chmod(authorized, 0o644)
    root = home / "root"
    root.mkdir(mode=0o755)
    _chown_to_service(root)

    if _is_root():
        # Privilege separation dir; normally made by systemd's RuntimeDirectory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    port = free_port()
    config = workdir / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress {HOST}",
        f"Port {port}",
        f"HostKey {host_key}",
        f"PidFile {workdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        f"AllowUsers {user.pw_name}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PermitUserEnvironment no",
        # No AcceptEnv line: like a stock server, no client env gets through.
        # Tests open many channels/connections at once; the defaults (10) flake.
        "MaxSessions 64",
        "MaxStartups 64:30:128",
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp",
        *extra_config,
        "",
    ]))
    log = workdir / "sshd.log"
    check = subprocess.run([sshd_bin, "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise ServerUnavailable(f"sshd -t rejected the config: {check.stderr.strip()}")
    proc = _spawn([sshd_bin, "-D", "-e", "-f", str(config)], log)
    server = Sshd(HOST, port, user.pw_name, client_key, fingerprint(host_line), host_line, root,
                  authorized, log, proc, [home])

    try:
        _wait(lambda: _ssh_banner(HOST, port), "sshd", timeout, proc, log)
    except BaseException:
        server.stop()
        raise
    return server


# --------------------------------------------------------------------------- moto


@dataclass
class Moto:
    endpoint_url: str
    server: object = field(repr=False)
    access_key: str = "testing"
    secret_key: str = "testing"

    def reset(self) -> None:
        """Forget every resource (moto's documented reset API)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.stop()  # type: ignore[attr-defined]


def start_moto(timeout: float = 15.0) -> Moto:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        raise ServerUnavailable(f"moto[server] not importable: {e}") from e
    port = free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    moto = Moto(f"http://{HOST}:{port}", server)

    def up() -> bool:
        with urllib.request.urlopen(f"{moto.endpoint_url}/moto-api/data.json", timeout=2) as r:
            return r.status == 200

    try:
        _wait(up, "moto", timeout, None, None)
    except BaseException:
        moto.stop()
        raise
    return moto


# --------------------------------------------------------------------------- seaweedfs


@dataclass
class SeaweedS3:
    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self) -> None:
        # weed lingers ~10s on SIGTERM flushing a throwaway store: don't wait.
        _stop_group(self.proc, timeout=2)


def s3_client(endpoint_url: str, access_key: str, secret_key: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                      connect_timeout=2, read_timeout=10))


def start_seaweedfs(workdir: Path, timeout: float = 60.0, attempts: int = 3) -> SeaweedS3:
    """``weed server`` (master+volume+filer+S3) with one admin identity.

    It takes eight ports, each found free a moment before weed binds it: another process
    (a second SeaweedFS, a bench) can take one in between, and weed then exits at once.
    Such a start is tried again on fresh ports; one that hangs is not."""
    for attempt in range(attempts):
        try:
            return _start_seaweedfs_once(Path(workdir), timeout)
        except ServerUnavailable as exc:
            if "exited with" not in str(exc) or attempt == attempts - 1:
                raise
            shutil.rmtree(Path(workdir) / "weed-data", ignore_errors=True)
    raise AssertionError("unreachable")


def _start_seaweedfs_once(workdir: Path, timeout: float) -> SeaweedS3:
    weed = _which("weed", Path(sys.executable).parent)
    data = workdir / "weed-data"
    data.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = "relocate-test", secrets.token_hex(16)
    s3_config = workdir / "s3.json"
    s3_config.write_text(json.dumps({"identities": [{
        "name": "relocate-test",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    os.chmod(s3_config, 0o600)
    p = {k: free_port() for k in ("master", "master_grpc", "volume", "volume_grpc",
                                  "filer", "filer_grpc", "s3", "s3_grpc")}
    argv = [
        weed, "server", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
        f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
        # 64 MiB volumes, count auto-sized from free disk: works on small disks.
        "-master.volumeSizeLimitMB=64", "-volume.max=0",
        f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
        f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
        # Default socket path is /tmp/seaweedfs-filer-<port>.sock: keep ours private.
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}", f"-s3.config={s3_config}",
        # Side services with fixed default ports would clash between instances.
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    log = workdir / "weed.log"
    proc = _spawn(argv, log)
    server = SeaweedS3(f"http://{HOST}:{p['s3']}", access_key, secret_key, log, proc)
    client = s3_client(server.endpoint_url, access_key, secret_key)

    def writable() -> bool:
        # ListBuckets answers before volumes exist; a put proves writes work.
        client.list_buckets()
        probe = f"probe-{secrets.token_hex(4)}"
        client.create_bucket(Bucket=probe)
        try:
            client.put_object(Bucket=probe, Key="k", Body=b"ok")
            ok = client.get_object(Bucket=probe, Key="k")["Body"].read() == b"ok"
            client.delete_object(Bucket=probe, Key="k")
        finally:
            client.delete_bucket(Bucket=probe)
        return ok

    try:
        _wait(writable, "seaweedfs", timeout, proc, log)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class S3Server:
    """One S3 endpoint, whichever server (moto or SeaweedFS) is behind it."""

    name: str  # "moto" | "seaweedfs"
    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)

    def client(self) -> Any:
        """A boto3 S3 client (us-east-1, path-style) for seeding and checking buckets."""
        return s3_client(self.endpoint_url, self.access_key, self.secret_key)

    def new_bucket(self, prefix: str = "t") -> str:
        """Create a uniquely named bucket (SeaweedFS keeps state across tests)."""
        name = f"{prefix}-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name


# --------------------------------------------------------------------------- postgres


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    socket_dir: Path
    data_dir: Path
    log: Path
    bin_dir: Path = PG_BIN
    _base: Path | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    dsn = url

    def env(self) -> dict[str, str]:
        """Environment for psql/pg_dump subprocesses (password via env, never argv)."""
        return {**os.environ, "PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
                "PGPASSWORD": self.password, "PGDATABASE": self.database}

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        subprocess.run(_as_user([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir),
                                 "-m", "immediate", "-w"]), capture_output=True, timeout=60)
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)


def start_postgres(workdir: Path, timeout: float = 60.0) -> Postgres:
    """initdb + pg_ctl as a non-root user; scram password auth on 127.0.0.1."""
    initdb = _which("initdb", PG_BIN)
    pg_ctl = _which("pg_ctl", PG_BIN)
    bin_dir = Path(initdb).parent
    if _is_root():
        _which("runuser")
    base = _user_dir(Path(workdir), "postgres")
    data, sock, log = base / "data", base / "sock", base / "postgres.log"
    sock.mkdir()
    _chown_to_service(sock)
    password = secrets.token_hex(12)
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    os.chmod(pwfile, 0o600)
    _chown_to_service(pwfile)
    r = subprocess.run(_as_user([initdb, "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
                                 "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                       capture_output=True, text=True, timeout=120)
    pwfile.unlink()
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise ServerUnavailable(f"initdb failed: {r.stderr.strip()[-2000:]}")
    port = free_port()
    # fsync off: throwaway cluster, and these 2-core CI boxes have slow disks.
    opts = (f"-p {port} -k {sock} -c listen_addresses={HOST} -c fsync=off "
            "-c full_page_writes=off -c synchronous_commit=off")
    server = Postgres(HOST, port, "postgres", password, "postgres", sock, data, log, bin_dir, base)
    r = subprocess.run(_as_user([pg_ctl, "start", "-D", str(data), "-l", str(log), "-o", opts,
                                 "-w", "-t", str(int(timeout))]),
                       capture_output=True, text=True, timeout=timeout + 10)
    if r.returncode != 0:
        tail = _tail(log)
        server.stop()
        raise ServerUnavailable(f"pg_ctl start failed: {r.stderr.strip()} {tail}")
    return server


# --------------------------------------------------------------------------- mariadb


@dataclass
class MariaDB:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    socket: Path
    data_dir: Path
    defaults_file: Path  # [client] file for `mariadb --defaults-extra-file=...` (0600)
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _base: Path | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mysql://{self.user}:{self.password}@{self.host}:{self.port}/"

    dsn = url

    def stop(self) -> None:
        _stop_group(self.proc, timeout=20)
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)


def start_mariadb(workdir: Path, timeout: float = 60.0) -> MariaDB:
    """mariadb-install-db + mariadbd as a non-root user, a password superuser over TCP."""
    install_db = _which("mariadb-install-db")
    mariadbd = _which("mariadbd", Path("/usr/sbin"))
    client = _which("mariadb")
    if _is_root():
        _which("runuser")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    user = _service_user()
    base = _user_dir(workdir, "mariadb")
    data, log, sock = base / "data", base / "mariadb.log", base / "mysqld.sock"
    r = subprocess.run(_as_user([install_db, "--no-defaults", f"--datadir={data}", f"--user={user.pw_name}",
                                 "--auth-root-authentication-method=socket", "--skip-test-db"]),
                       capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise ServerUnavailable(f"mariadb-install-db failed: {(r.stdout + r.stderr).strip()[-2000:]}")

    db_user, password = "relocate", secrets.token_hex(12)
    # The superuser comes from an init file (runs at every start, before
    # clients connect), so the password never appears on a command line.
    init = base / "init.sql"
    init.write_text(
        f"CREATE USER IF NOT EXISTS '{db_user}'@'%' IDENTIFIED BY '{password}';\n"
        f"GRANT ALL PRIVILEGES ON *.* TO '{db_user}'@'%' WITH GRANT OPTION;\n"
    )
    os.chmod(init, 0o600)
    _chown_to_service(init)
    port = free_port()
    defaults = workdir / f"mariadb-client-{secrets.token_hex(4)}.cnf"
    defaults.write_text(f"[client]\nuser={db_user}\npassword={password}\nhost={HOST}\nport={port}\nprotocol=tcp\n")
    os.chmod(defaults, 0o600)

    argv = _as_user([mariadbd, "--no-defaults", f"--datadir={data}", f"--port={port}",
                     f"--bind-address={HOST}", f"--socket={sock}", f"--pid-file={base / 'mariadbd.pid'}",
                     f"--tmpdir={base}", f"--init-file={init}", f"--log-error={log}",
                     "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0", "--skip-log-bin"])
    proc = _spawn(argv, base / "mariadbd.out")
    server = MariaDB(HOST, port, db_user, password, sock, data, defaults, log, proc, base)

    def up() -> bool:
        q = subprocess.run([client, f"--defaults-extra-file={defaults}", f"--port={port}",
                            "--connect-timeout=2", "-N", "-e", "select 1"],
                           capture_output=True, text=True, timeout=10)
        return q.returncode == 0 and q.stdout.strip() == "1"

    try:
        _wait(up, "mariadbd", timeout, proc, log)
    except BaseException:
        server.stop()
        raise
    return server


# --------------------------------------------------------------------------- podman (compose runtime)

BUSYBOX_IMAGE = "localhost/relocate-busybox:test"
# Debian's rootless podman as this machine allows it: crun refuses the hybrid cgroup
# layout here ("cgroups in hybrid mode not supported"), runc with cgroupfs does not;
# no systemd journal for events.
_CONTAINERS_CONF = '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'


@dataclass
class Podman:
    user: str
    image: str

    def as_user(self, *argv: str, timeout: float = 120, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv as the SSH login user with its own HOME (its podman storage)."""
        home = pwd.getpwnam(self.user).pw_dir
        cmd = ["env", "-u", "XDG_RUNTIME_DIR", f"HOME={home}", *argv]  # as in its SSH session
        if _is_root():
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd="/", input=stdin)
        return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))


def _read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def start_podman(workdir: Path) -> Podman:
    """Rootless podman for the SSH login user, with an image built here from nothing but
    Debian's busybox-static (FROM scratch: busybox and its applet links), imported once."""
    for tool in ("podman", "podman-compose", "runc", "newuidmap"):
        if shutil.which(tool) is None and not Path("/usr/bin", tool).exists():
            raise ServerUnavailable(f"{tool} missing (Debian packages podman podman-compose runc uidmap slirp4netns)")
    busybox = Path("/bin/busybox")
    if not Path("/usr/share/doc/busybox-static").exists() or not busybox.exists():
        raise ServerUnavailable("busybox-static missing (Debian package busybox-static): the image's only binary")
    user = _service_user()
    if _is_root():
        # rootless podman maps the container's users onto the login's subordinate ids;
        # useradd adds them only when /etc/subuid existed before the user did
        if not any(line.startswith(user.pw_name + ":") for line in _read_lines(Path("/etc/subuid"))):
            subprocess.run(["usermod", "--add-subuids", "100000-165535", "--add-subgids", "100000-165535", user.pw_name],
                           check=True, capture_output=True)
        # rootless port forwarding (slirp4netns) opens /dev/net/tun; udev makes it 0666 on
        # Debian, this VM's devtmpfs leaves it 0600
        tun = Path("/dev/net/tun")
        if tun.exists() and tun.stat().st_mode & 0o777 != 0o666:
            tun.chmod(0o666)
    conf = Path(user.pw_dir) / ".config" / "containers" / "containers.conf"
    # only the dedicated test login's (as root); a developer's own podman setup is theirs
    if _is_root() and (not conf.exists() or conf.read_text() != _CONTAINERS_CONF):
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(_CONTAINERS_CONF)
        for p in (conf.parent.parent, conf.parent, conf):
            os.chown(p, user.pw_uid, user.pw_gid)
    pm = Podman(user.pw_name, BUSYBOX_IMAGE)
    rootfs = workdir / "busybox-rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "httpd", "mkdir", "echo", "cat", "sleep", "ls"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
    # on stdin: the login user need not reach this (root's) temp dir
    r = pm.as_user("podman", "import", "--change", 'CMD ["/bin/sh"]', "-", BUSYBOX_IMAGE, timeout=300, stdin=rootfs.read_bytes())
    if r.returncode != 0:
        raise ServerUnavailable(f"podman import failed: {r.stderr.strip()[-400:]}")
    r = pm.as_user("podman", "run", "--rm", "--network", "none", BUSYBOX_IMAGE, "echo", "engine-ok", timeout=120)
    if r.returncode != 0 or "engine-ok" not in r.stdout:
        raise ServerUnavailable(f"podman cannot run a container here: {(r.stderr or r.stdout).strip()[-400:]}")
    return pm
