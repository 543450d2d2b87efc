"""The RELOCATE_* variables are read once, at the CLI edge, into one frozen settings value
(relocate/settings.py) that is handed down (issue 17): the library reads none of them."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from helpers import cli
from relocate.errors import UsageError
from relocate.secret import Secret
from relocate.settings import ATTEMPTS, STALL_S, Login, Settings, Transfer, Tuning


@pytest.mark.parametrize("env, want", [
    ({}, Tuning()),
    ({"RELOCATE_RECEIVER": "sh", "RELOCATE_BULK_SSH": "paramiko", "RELOCATE_S3_GETS": "threads"},
     Tuning(bulk_ssh="paramiko", receiver="sh", s3_gets="threads")),
    ({"RELOCATE_STALL_TIMEOUT": "5", "RELOCATE_RETRY_ATTEMPTS": "2", "RELOCATE_RETRY_BACKOFF": "0.5",
      "RELOCATE_BATCH_OBJECTS": "3"}, Tuning(stall_s=5.0, attempts=2, backoff_s=0.5, batch_objects=3)),
    ({"RELOCATE_STALL_TIMEOUT": "soon"}, Tuning()),  # a number that does not parse: the default stands, as before
    ({"RELOCATE_PAGE_CACHE": "Keep"}, Tuning(page_cache="keep")),
])
def test_tuning_from_the_environment(env: dict[str, str], want: Tuning) -> None:
    assert Tuning.from_env(env) == want


@pytest.mark.parametrize("name", ["RELOCATE_STALL_TIMEOUT", "RELOCATE_RETRY_BACKOFF", "RELOCATE_RETRY_ATTEMPTS",
                                  "RELOCATE_BATCH_OBJECTS", "RELOCATE_SHARD_CHUNK", "RELOCATE_SHARD_LOCK_STALE_S"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "0"])
def test_a_number_out_of_range_is_ignored_like_one_that_does_not_parse(name: str, value: str) -> None:
    """docs/transfer.md, "Tuning": RELOCATE_STALL_TIMEOUT=0 aborted every lane at once (every
    batch failed its 5 tries, then exit 5 "running again resumes", which it never could)."""
    if name == "RELOCATE_RETRY_BACKOFF" and value == "0":  # no wait between tries: allowed
        assert Tuning.from_env({name: value}).backoff_s == 0.0
        return
    assert Tuning.from_env({name: value}) == Tuning()
    assert Transfer.tuned(Tuning.from_env({name: value})) == Transfer.tuned(Tuning())


def test_a_number_in_range_is_taken() -> None:
    t = Tuning.from_env({"RELOCATE_STALL_TIMEOUT": "0.5", "RELOCATE_RETRY_ATTEMPTS": "1", "RELOCATE_BATCH_OBJECTS": "1",
                         "RELOCATE_SHARD_CHUNK": "1", "RELOCATE_SHARD_LOCK_STALE_S": "0.25"})
    assert (t.stall_s, t.attempts, t.batch_objects, t.shard_chunk, t.shard_lock_stale_s) == (0.5, 1, 1, 1, 0.25)


def test_tuning_is_frozen_and_applied_to_the_engine() -> None:
    t = Tuning(receiver="python", bulk_ssh="paramiko", attempts=2, batch_objects=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.receiver = "sh"  # type: ignore[misc]
    opts = Transfer.tuned(t, transfers=3, lanes=1)
    assert (opts.transfers, opts.receiver, opts.engine, opts.attempts, opts.batch_objects, opts.stall_s) == \
        (3, "python", "paramiko", 2, 7, STALL_S)
    assert Transfer.tuned(Tuning()).attempts == ATTEMPTS
    assert not Transfer.tuned(Tuning()).keep_cache and not Transfer.tuned(Tuning(page_cache="drop")).keep_cache
    assert Transfer.tuned(Tuning(page_cache="keep")).keep_cache


def test_an_unknown_word_is_one_line_exit_2(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="RELOCATE_RECEIVER='tar': must be one of auto, python, sh"):
        Tuning.from_env({"RELOCATE_RECEIVER": "tar"})
    cfg = tmp_path / "relocate.yaml"
    cfg.write_text("version: 1\ntarget: {ssh: {host: 127.0.0.1}, root: /srv/a}\n")
    run = cli("plan", "-f", str(cfg), env={"RELOCATE_RECEIVER": "tar"})
    assert run.exit_code == 2, run.stdout + run.stderr
    assert run.stderr.strip().splitlines() == ["relocate: error: RELOCATE_RECEIVER='tar': must be one of auto, python, sh"]


def test_settings_carry_every_variable_the_library_uses(tmp_path: Path) -> None:
    extra, flag = tmp_path / "env-profiles", tmp_path / "flag-profiles"
    env = {"RELOCATE_SSH_KEY_PASSPHRASE": "pass word", "RELOCATE_AGE_IDENTITY": "AGE-SECRET-KEY-1XYZ",
           "RELOCATE_PROFILES": str(extra), "RELOCATE_BULK_SSH": "paramiko", "RELOCATE_RETRY_ATTEMPTS": "3"}
    s = Settings.from_env(env, accept_new_host_key=True, profiles=flag, transfers=5, lanes=2, bwlimit=1e6)
    assert s.login == Login(accept_new_host_key=True, passphrase=Secret("pass word"), openssh=False)
    assert s.age_identity == Secret("AGE-SECRET-KEY-1XYZ")
    assert s.profile_dirs == (extra, flag)
    assert (s.transfer.transfers, s.transfer.lanes, s.transfer.bwlimit, s.transfer.engine, s.transfer.attempts) == \
        (5, 2, 1e6, "paramiko", 3)
    assert "pass word" not in repr(s) and "XYZ" not in repr(s)  # secrets stay Secrets in the value
    bare = Settings.from_env({})
    assert (bare.login.passphrase, bare.age_identity, bare.profile_dirs, bare.login.openssh) == (None, None, (), True)


# Where the library may still touch the process environment, and why: none of them is a
# RELOCATE_* variable (those arrive in Settings).
ENVIRON_READERS = {
    "ssh/connection.py",  # $USER: the login name when neither relocate.yaml nor ~/.ssh/config give one, as ssh does
    "execute/pg.py", "execute/mysql.py",  # the database tools' child environment (PATH, locale)
    "sources/rds.py",  # password_from: env:VAR names a variable in relocate.yaml
    "schema.py",  # ${VAR} in relocate.yaml
}


def test_the_library_reads_no_relocate_variable() -> None:
    import relocate

    src = Path(relocate.__file__).parent
    readers = set()
    for path in src.rglob("*.py"):
        rel = str(path.relative_to(src))
        if rel.split("/")[0] in ("cli", "demo"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
                    and node.attr in ("environ", "getenv", "environb")):
                readers.add(rel)
    assert readers, "the scan found no os.environ at all: it is looking in the wrong place"
    assert readers <= ENVIRON_READERS, f"reads the environment below the CLI: {sorted(readers - ENVIRON_READERS)}"
    for rel in ENVIRON_READERS:  # and those never for a RELOCATE_* variable
        lines = [line for line in (src / rel).read_text().splitlines() if "environ" in line or "getenv" in line]
        assert lines and not [line for line in lines if "RELOCATE_" in line], rel


def test_an_encrypted_key_opens_with_the_passphrase_the_cli_read(tmp_path: Path) -> None:
    import subprocess

    from relocate.errors import ConfigError
    from relocate.ssh.connection import _load_key

    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw 1", "-f", str(key)], check=True)
    login = Settings.from_env({"RELOCATE_SSH_KEY_PASSPHRASE": "pw 1"}).login
    assert _load_key(str(key), login.passphrase).get_name() == "ssh-ed25519"
    with pytest.raises(ConfigError, match="the key is encrypted; set RELOCATE_SSH_KEY_PASSPHRASE"):
        _load_key(str(key), Settings.from_env({}).login.passphrase)
    with pytest.raises(ConfigError) as e:  # a wrong one: one line saying so, no traceback
        _load_key(str(key), Settings.from_env({"RELOCATE_SSH_KEY_PASSPHRASE": "wrong"}).login.passphrase)
    assert "RELOCATE_SSH_KEY_PASSPHRASE does not decrypt this key" in e.value.line()


@pytest.mark.parametrize("keygen", [["-t", "ed25519"], ["-t", "ecdsa"], ["-t", "rsa", "-b", "2048"],
                                    ["-t", "rsa", "-b", "2048", "-m", "PEM"], ["-t", "ecdsa", "-m", "PEM"]])
def test_a_wrong_passphrase_is_named_for_every_key_format(tmp_path: Path, keygen: list[str]) -> None:
    # OpenSSH-format keys failed with cryptography's PEM fallback text ("Valid PEM but no
    # BEGIN/END delimiters ... Are you sure this is a private key?"), PEM ones with
    # "Incorrect password": both are a passphrase that does not open the key.
    import subprocess

    from relocate.errors import ConfigError
    from relocate.ssh.connection import _load_key

    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", *keygen, "-N", "right-pass-1", "-f", str(key)], check=True)
    with pytest.raises(ConfigError) as e:
        _load_key(str(key), Secret("wrong-pass-2"))
    line = e.value.line()
    assert line.startswith(f"{key}: RELOCATE_SSH_KEY_PASSPHRASE does not decrypt this key"), line
    assert "wrong-pass-2" not in line and "right-pass-1" not in line and "BEGIN/END" not in line
    assert _load_key(str(key), Secret("right-pass-1")) is not None


def test_a_passphrase_for_a_key_without_one_is_not_needed(tmp_path: Path) -> None:
    # as ssh does: one RELOCATE_SSH_KEY_PASSPHRASE for a job does not break a plain key
    # (it said "the key is encrypted; set RELOCATE_SSH_KEY_PASSPHRASE", which it was not)
    import subprocess

    from relocate.errors import ConfigError
    from relocate.ssh.connection import _load_key

    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    assert _load_key(str(key), Secret("any")).get_name() == "ssh-ed25519"
    (tmp_path / "junk").write_text("not a key\n")
    with pytest.raises(ConfigError, match="not a usable private key"):  # not a passphrase question
        _load_key(str(tmp_path / "junk"), Secret("any"))


def test_verify_takes_the_age_identity_from_the_environment_at_the_cli(tmp_path: Path) -> None:
    from relocate.snapshot import store

    cfg = tmp_path / "relocate.yaml"
    cfg.write_text("version: 1\ntarget: {ssh: {host: 127.0.0.1, port: 1}, root: /srv/a}\n")
    snap = store.begin(tmp_path / ".relocate" / "snapshots")
    store.commit(snap, {"id": snap.id, "buckets": [], "env_files": [], "components": {}})
    run = cli("verify", "-f", str(cfg), env={"RELOCATE_AGE_IDENTITY": "not-a-key"})
    assert run.exit_code == 2, run.stdout + run.stderr
    assert "$RELOCATE_AGE_IDENTITY is not an age identity" in run.stderr
