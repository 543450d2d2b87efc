"""relocate.ssh is the one SSH package: the only paramiko import, one `via:` grammar."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

import relocate
from relocate.config import parse_config
from relocate.errors import ConfigError, ExitCode
from relocate.ssh.via import SshSpec, resolve_via

SRC = Path(relocate.__file__).parent
ALLOWED = ("ssh", "demo")  # demo/sshserver.py is the embedded demo server's own


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_paramiko_is_imported_only_under_relocate_ssh() -> None:
    importers = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if any(n == "paramiko" or n.startswith("paramiko.") for n in _imports(p))}
    assert importers, "the scan found no paramiko import at all: it is looking in the wrong place"
    outside = sorted(p for p in importers if p.split("/")[0] not in ALLOWED)
    assert outside == [], f"paramiko imported outside relocate/ssh: {outside}"
    # the package's __init__ and its grammar stay pure: config.py and the planner import them
    assert "paramiko" not in _imports(SRC / "ssh" / "__init__.py") | _imports(SRC / "ssh" / "via.py")


def _doc(via_host: object, via_db: object, bastions: dict | None = None) -> str:
    src: dict = {"hosts": [{"ssh": "ec2-user@10.0.0.5", "via": via_host, "paths": ["/etc/app"], "to": "data/host"}],
                 "databases": [{"url": "postgres://app@db.internal/app", "password_from": "env:PW", "via": via_db}]}
    if bastions:
        src["bastions"] = bastions
    return yaml.safe_dump({"version": 1, "source": src, "target": {"ssh": {"host": "h"}, "root": "/srv/a"}})


def test_one_via_grammar_for_source_hosts_and_databases(tmp_path: Path) -> None:
    bastions = {"jump": {"host": "10.0.0.9", "user": "ops", "port": 2222}}
    cfg = parse_config(_doc("jump", "ops@10.0.0.9:2222", bastions), tmp_path / "relocate.yaml", {"PW": "x"})
    src = cfg.data["source"]
    by_name = resolve_via(src["hosts"][0]["via"], src["bastions"])
    by_address = resolve_via(src["databases"][0]["via"], src["bastions"])
    assert by_name == by_address == SshSpec(host="10.0.0.9", port=2222, user="ops")
    # a mapping is accepted wherever `via:` is, databases included
    cfg = parse_config(_doc({"host": "10.0.0.9"}, {"host": "10.0.0.9", "port": 2200}), tmp_path / "relocate.yaml", {"PW": "x"})
    assert resolve_via(cfg.data["source"]["databases"][0]["via"], None).port == 2200


@pytest.mark.parametrize("where", ["hosts", "databases"])
def test_a_via_naming_no_bastion_is_refused_at_load_in_either_section(tmp_path: Path, where: str) -> None:
    good = "ops@10.0.0.9"
    text = _doc("jmup", good, {"jump": {"host": "10.0.0.9"}}) if where == "hosts" else _doc(good, "jmup", {"jump": {"host": "10.0.0.9"}})
    with pytest.raises(ConfigError) as err:
        parse_config(text, tmp_path / "relocate.yaml", {"PW": "x"})
    assert err.value.exit_code == ExitCode.USAGE
    assert f"source.{where}[0].via" in err.value.message and "not a name under source.bastions (jump)" in err.value.message
    bad_port = _doc("ops@10.0.0.9:99999", good) if where == "hosts" else _doc(good, "ops@10.0.0.9:99999")
    with pytest.raises(ConfigError, match=rf"source.{where}\[0\].via: the port must be between 1 and 65535"):
        parse_config(bad_port, tmp_path / "relocate.yaml", {"PW": "x"})
