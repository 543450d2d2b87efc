"""Fuzzing relocate.yaml (issue 13): host names, ports, `to:` paths with `..`, NUL, very
long names and unicode controls give a one-line configuration error (exit 2) or a valid
configuration whose hosts the resolver accepts; never an internal error (exit 1), never
a traceback, never 2 s of CPU on one case. 1,000 seeded cases run in-process through the
loader; a few dozen go through the CLI as a user runs it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from relocate.config import parse_config
from relocate.errors import ConfigError, ExitCode
from relocate.ssh.via import resolve_via, ssh_spec

from helpers import cli

BASE: dict[str, Any] = {
    "version": 1,
    "app": {"name": "townsquare"},
    "source": {
        "aws": {"region": "us-east-1"},
        "s3": [{"bucket": "media", "prefix": "full/", "to": "data/media"},
               {"bucket": "media", "prefix": "thumbs/", "to": "data/thumbs"}],
        "parameters": [{"path": "/townsquare/prod/", "to": "shared/app.env"}],
        "secrets": [{"name": "townsquare/prod/api", "to": "shared/app.env"}],
        "hosts": [{"ssh": "ec2-user@10.0.3.7:22", "paths": ["/etc/townsquare"], "to": "data/host", "via": "jump"}],
        "databases": [{"url": "postgresql://app@db.internal:5432/townsquare", "password_from": "env:PW", "via": "jump"}],
        "bastions": {"jump": {"host": "bastion.example", "port": 22, "user": "ec2-user"}},
        "dns": [{"zone": "townsquare.example"}],
    },
    "target": {"ssh": {"host": "203.0.113.10", "port": 22, "user": "deploy"}, "root": "/srv/townsquare",
               "allow_symlinks": ["data/media"], "env_dir_mode": "0700"},
}

# Where a fuzzed value goes: (path in the document, kind of value).
SLOTS: list[tuple[tuple[Any, ...], str]] = [
    (("target", "ssh", "host"), "host"), (("source", "bastions", "jump", "host"), "host"),
    (("source", "hosts", 0, "ssh"), "sshref"), (("source", "hosts", 0, "via"), "sshref"),
    (("source", "databases", 0, "via"), "sshref"),
    (("target", "ssh", "port"), "port"), (("source", "bastions", "jump", "port"), "port"),
    (("source", "s3", 0, "to"), "path"), (("source", "s3", 1, "to"), "path"), (("source", "parameters", 0, "to"), "path"),
    (("source", "secrets", 0, "to"), "path"), (("source", "hosts", 0, "to"), "path"),
    (("source", "s3", 1, "prefix"), "text"), (("source", "s3", 0, "bucket"), "text"),
    (("target", "root"), "abspath"), (("target", "allow_symlinks", 0), "path"), (("target", "env_dir_mode"), "text"),
    (("source", "hosts", 0, "paths", 0), "abspath"),
]

CONTROLS = ["\x00", "\x01", "\x1b", "\x7f", "\u202e", "\u00ad", "\u200b", "\u2028", "\ufeff", "\n", "\t"]
segment = st.one_of(
    st.sampled_from(["data", "media", "..", ".", "", ".relocate", "shared", "app.env", "buckets", "releases", "current",
                     "a__b", "dns", "x" * 255, "y" * 256, "z" * 300, "ü" * 130, "audit.log", "lock"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(CONTROLS).map(lambda c: f"a{c}b"),
)
paths = st.lists(segment, min_size=1, max_size=6).map("/".join)
label = st.one_of(st.sampled_from(["a", "ex-ample", "-bad", "bad-", "_ok", "x" * 63, "y" * 64, "xn--bcher-kva", "bücher",
                                   "127", "0", ""]),
                  st.text(max_size=10), st.sampled_from(CONTROLS).map(lambda c: f"h{c}st"))
hosts = st.one_of(st.lists(label, min_size=1, max_size=5).map(".".join),
                  st.sampled_from(["a..b", "::1", "203.0.113.10", "256.1.1.1", "[::1]", "fe80::1%eth0", "a" * 254,
                                   "localhost.", ".", "..", "a.b.", "1.2.3"]))
ports = st.one_of(st.integers(-5, 70000), st.sampled_from(["22", "abc", "", "0x16", "1e3", " 22"]))
sshrefs = st.one_of(st.builds(lambda u, h, p: f"{u}@{h}:{p}", st.sampled_from(["ec2-user", "", "a b", "root"]), hosts, ports),
                    hosts, st.sampled_from(["jump", "nobody", "user@", "@host", "a@b@c"]))
values = {"host": hosts, "port": ports, "path": paths, "abspath": paths.map(lambda p: "/" + p), "sshref": sshrefs,
          "text": st.text(max_size=40)}
mutation = st.sampled_from(SLOTS).flatmap(lambda slot: st.tuples(st.just(slot[0]), values[slot[1]]))


def _apply(doc: dict[str, Any], muts: list[tuple[tuple[Any, ...], Any]]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for path, value in muts:
        node = out
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return out


def _text(doc: dict[str, Any]) -> str:
    # allow_unicode: controls reach the loader as escapes inside double-quoted scalars
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=10_000)


def _check_loaded(text: str) -> None:
    """ConfigError naming a field, or a config whose hosts the resolver will accept."""
    try:
        cfg = parse_config(text, Path("relocate.yaml"), {"PW": "x"})
    except ConfigError as exc:
        assert exc.exit_code == ExitCode.USAGE
        assert exc.message.startswith("relocate.yaml") and "\n" not in exc.message
        return
    # What once crashed later (UnicodeError from the idna codec in getaddrinfo): every
    # host that passes validation must encode, and every `to:` must be a path the target can hold.
    cfg.ssh.host.encode("idna")
    src = cfg.data["source"] or {}
    for h in src.get("hosts") or []:
        ssh_spec(h["ssh"]).host.encode("idna")
    for entry in [*(src.get("hosts") or []), *(src.get("databases") or [])]:
        if entry.get("via"):  # the load checked every via: (ssh/via.py), so the one resolver accepts it
            resolve_via(entry["via"], src.get("bastions")).host.encode("idna")
    for b in (*cfg.s3, *cfg.parameters, *cfg.secrets):
        assert "\0" not in b.to and b.to.split("/")[0] != ".relocate"
        assert all(len(seg.encode()) <= 255 for seg in b.to.split("/"))


def test_the_base_document_is_valid() -> None:
    cfg = parse_config(_text(BASE), Path("relocate.yaml"), {"PW": "x"})
    assert cfg.allowed_links == ("/srv/townsquare/data/media",) and cfg.env_dir_mode == 0o700


@seed(13)
@settings(max_examples=1000, deadline=2000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_fuzzed_relocate_yaml_loads_or_fails_with_one_line(muts) -> None:
    # CPU, not wall time: a pathological case (a backtracking pattern, a quadratic walk)
    # burns CPU, and a busy machine's wall clock would fail cases that did nothing wrong.
    started = time.process_time()
    _check_loaded(_text(_apply(BASE, muts)))
    assert time.process_time() - started < 2.0


def _cli_case(tmp_path: Path, muts, run) -> None:
    cfg = tmp_path / "relocate.yaml"
    cfg.write_text(_text(_apply(BASE, muts)), encoding="utf-8")
    started = time.monotonic()
    code, stderr = run(cfg)
    assert time.monotonic() - started < 30
    assert code in (0, 2, 3), (code, stderr)
    assert "Traceback" not in stderr and "internal error" not in stderr
    if code == 2:
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"relocate: error: {cfg}"), stderr  # the file as -f gave it


@seed(1313)
@settings(max_examples=36, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(st.lists(mutation, min_size=1, max_size=3))
def test_fuzzed_relocate_yaml_through_the_cli(tmp_path: Path, muts) -> None:
    """`relocate check` loads the whole file and touches no network: exit 0 or 2, never 1
    (main()'s own error mapping, in-process: a process start per case costs ~3 s here)."""
    def run(cfg: Path) -> tuple[int, str]:
        r = cli("check", "-f", str(cfg), "--json", env={"PW": "x"})
        return r.exit_code, r.stderr
    _cli_case(tmp_path, muts, run)


@seed(1314)
@settings(max_examples=6, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(st.lists(mutation, min_size=1, max_size=3))
def test_fuzzed_relocate_yaml_through_the_cli_process(tmp_path: Path, muts) -> None:
    def run(cfg: Path) -> tuple[int, str]:
        r = subprocess.run([sys.executable, "-m", "relocate", "check", "-f", str(cfg), "--json"], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "PW": "x", "NO_COLOR": "1"})
        return r.returncode, r.stderr
    _cli_case(tmp_path, muts, run)
