"""One gate (issue 17): every change on the target is listed and asked for once, before the
first one, whatever kind of data makes it. A DNS-only move and a packages-only move ask
like an object move does, refuse without a terminal, and change nothing when refused."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import yaml

from helpers import aws_client, cli, make_config, subprocess_cli
from relocate.errors import UsageError
from relocate.execute import gate
from relocate.kinds import Context
from relocate.kinds.packages import HostPackages, PackagesKind

ZONE = f"gate-{secrets.token_hex(3)}.example"


def _dns_only(tmp_path: Path, moto: str, sshd) -> tuple[Path, Path]:
    r53 = aws_client("route53", moto)
    zid = r53.create_hosted_zone(Name=ZONE, CallerReference=ZONE)["HostedZone"]["Id"]
    # moto stores the SOA it creates as the text of a Python dict; real Route53 holds plain
    # SOA text (tests/test_dns.py seed_zone does the same)
    soa = {"Action": "UPSERT", "ResourceRecordSet": {"Name": f"{ZONE}.", "Type": "SOA", "TTL": 900, "ResourceRecords": [
        {"Value": "ns-2048.awsdns-64.com. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"}]}}
    r53.change_resource_record_sets(HostedZoneId=zid, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": f"www.{ZONE}", "Type": "A", "TTL": 300, "ResourceRecords": [{"Value": "198.51.100.7"}]}}, soa]})
    root = sshd.root / f"gate-{tmp_path.name}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    doc["source"]["dns"] = [{"zone": ZONE}]
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg, root / "dns" / f"{ZONE}.zone"


def test_dns_only_move_refuses_without_a_terminal(tmp_path: Path, moto: str, sshd) -> None:
    cfg, zone = _dns_only(tmp_path, moto, sshd)
    run = subprocess_cli("move", "-f", str(cfg), stdin="", cwd=tmp_path)
    assert run.exit_code == 2, run.stdout + run.stderr
    assert "refusing to move without confirmation" in run.stderr and "--yes" in run.stderr
    assert "Traceback" not in run.stderr
    assert not zone.exists()


def test_dns_only_move_asks_and_a_no_changes_nothing(tmp_path: Path, moto: str, sshd,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, zone = _dns_only(tmp_path, moto, sshd)
    asked: list[str] = []
    monkeypatch.setattr("relocate.cli.move_cmd.can_prompt", lambda: True)
    monkeypatch.setattr("typer.confirm", lambda q, default=False: asked.append(q) or False)
    run = cli("move", "-f", str(cfg))
    assert run.exit_code == 2, run.stdout + run.stderr
    assert len(asked) == 1 and asked[0].startswith("Make 1 change(s) on "), asked
    assert f"write zone file dns/{ZONE}.zone" in run.stderr, run.stderr
    assert "not confirmed: nothing was changed on " in run.stderr, run.stderr  # a "no" is said, not silent
    assert not zone.exists()

    monkeypatch.setattr("typer.confirm", lambda q, default=False: asked.append(q) or True)
    run = cli("move", "-f", str(cfg))
    assert run.exit_code == 0, run.stdout + run.stderr
    assert len(asked) == 2 and zone.exists()

    # nothing left to change: nothing to ask
    run = cli("move", "-f", str(cfg))
    assert run.exit_code == 0, run.stdout + run.stderr
    assert len(asked) == 2


@pytest.mark.parametrize("where", ["after", "env"])
def test_no_input_after_the_command_name_never_prompts(tmp_path: Path, moto: str, sshd, where: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # README: "with `--no-input`, `--yes` is required". It works after `move` as well as
    # before it (the root's option: tests/test_deadline_cli.py) and as RELOCATE_NO_INPUT,
    # even where a prompt is possible.
    cfg, zone = _dns_only(tmp_path, moto, sshd)
    asked: list[str] = []
    monkeypatch.setattr("relocate.cli.move_cmd.can_prompt", lambda: True)  # as on a terminal
    monkeypatch.setattr("typer.confirm", lambda q, default=False: asked.append(q) or True)
    if where == "after":
        run = cli("move", "--no-input", "-f", str(cfg))
    else:
        run = cli("move", "-f", str(cfg), env={"RELOCATE_NO_INPUT": "1"})
    assert run.exit_code == 2, run.stdout + run.stderr
    assert "refusing to move without confirmation" in run.stderr and "--yes" in run.stderr
    assert asked == [] and not zone.exists()


def _on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """`relocate ARGS` with a real terminal (a pty) for stdin, stdout and stderr, as
    `script -qec "relocate ..." /dev/null` gives it; (exit code, what the terminal showed)."""
    import os
    import pty
    import subprocess
    import sys

    main, side = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "relocate", *args], stdin=side, stdout=side, stderr=side,
                            cwd=cwd, env={**os.environ, **env})
    os.close(side)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the process closed its side
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    return proc.wait(timeout=120), shown.decode(errors="replace")


@pytest.mark.parametrize("args, env", [
    (["--no-input", "move"], {}),
    (["move", "--no-input"], {}),
    (["move"], {"RELOCATE_NO_INPUT": "1"}),
])
def test_no_input_on_a_terminal_says_input_is_off(tmp_path: Path, moto: str, sshd, args: list[str],
                                                  env: dict[str, str]) -> None:
    """On a terminal the refusal blamed the terminal ("no terminal to ask on"): --no-input is why."""
    cfg, zone = _dns_only(tmp_path, moto, sshd)
    code, shown = _on_a_terminal([*args, "-f", str(cfg)], env, tmp_path)
    assert code == 2, shown
    assert "refusing to move without confirmation: input is off (--no-input) (pass --yes)" in shown, shown
    assert "no terminal" not in shown and not zone.exists()


def test_rollback_accepts_no_input_after_its_name() -> None:
    from relocate.cli import build_command

    cmd = build_command().commands["rollback"]
    assert cmd.make_context("rollback", ["--no-input"]).params["no_input"] is True


def _host(missing: bool, root: bool = True) -> HostPackages:
    wanted = {"tar": "the move", "rsync": "the app"}
    return HostPackages("debian", "debian", root=root, sudo=False, wanted=wanted,
                        installed={"tar"} if missing else {"tar", "rsync"})


@pytest.mark.parametrize("host, change", [
    (_host(missing=True), "install 1 package(s) as root: rsync"),
    (_host(missing=True, root=False), "install 1 package(s) as root (sudo): rsync"),
    (_host(missing=False), ""),
])
def test_packages_step_says_how_it_changes_the_target(host: HostPackages, change: str) -> None:
    part = PackagesKind().plan(Context(config=None, aws=None, conn=None, target_id="t"), host)  # type: ignore[arg-type]
    assert [s.change for s in part.steps] == [change]


def test_packages_only_move_asks_and_refuses_without_a_terminal(tmp_path: Path, moto: str, sshd,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The sshd login is not root and has no sudo, so a real missing package blocks the
    plan before any gate; the host's package facts are replaced to say it is root, and the
    gate must stop the move before the package manager would run."""
    root = sshd.root / f"pk-{tmp_path.name}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root))
    doc = yaml.safe_load(cfg.read_text())
    doc["target"].update(prepare=True, packages=["relocate-gate-pkg"])
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    from relocate.kinds import packages

    real = packages.probe
    ran: list[str] = []

    def as_root(conn, config):
        host = real(conn, config)
        host.root = True
        return host

    monkeypatch.setattr(packages, "probe", as_root)
    monkeypatch.setattr(packages.PackagesKind, "apply", lambda self, ctx, host, step: ran.append(step.id))
    run = cli("move", "-f", str(cfg))
    assert run.exit_code == 2, run.stdout + run.stderr
    assert "refusing to move without confirmation" in run.stderr
    assert ran == [] and not (root / ".relocate" / "audit.log").exists()

    asked: list[str] = []
    monkeypatch.setattr("relocate.cli.move_cmd.can_prompt", lambda: True)
    monkeypatch.setattr("typer.confirm", lambda q, default=False: asked.append(q) or False)
    run = cli("move", "-f", str(cfg))
    assert run.exit_code == 2 and len(asked) == 1, run.stdout + run.stderr
    assert "install" in run.stderr and "relocate-gate-pkg" in run.stderr and "as root" in run.stderr
    assert ran == []


def test_gate_lists_every_change_and_asks_once() -> None:
    shown: list[str] = []
    asked: list[str] = []
    ok = gate.confirm(["a", "b"], action="move", target="h", yes=False, can_prompt=True,
                      ask=lambda q: asked.append(q) or True, show=shown.append)
    assert ok is not None and ok.changes == ("a", "b") and ok.how == "confirmed"
    assert shown == ["Changes on h:", "  - a", "  - b"] and asked == ["Make 2 change(s) on h?"]
    assert gate.confirm([], action="move", target="h", yes=False, can_prompt=False, ask=asked.append, show=shown.append).how \
        == "nothing to change"
    assert gate.confirm(["a"], action="move", target="h", yes=True, can_prompt=False, ask=asked.append, show=shown.append).how == "--yes"
    with pytest.raises(UsageError, match="refusing to roll back without confirmation"):
        gate.confirm(["a"], action="roll back", target="h", yes=False, can_prompt=False, ask=asked.append, show=shown.append)
    assert len(asked) == 1
    with pytest.raises(UsageError):
        gate.require(gate.Approval(("a",), "--yes"), ["a", "b"])  # a change nobody approved
    gate.require(gate.Approval(("a", "b"), "--yes"), ["b"])
