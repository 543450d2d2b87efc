"""A plan with nothing to send prices nothing: no stale-rates warning, and its "rates as
of" is the rates file's own date (its latest check), the date a plan moving us-east-1
data shows too. Pure estimate, then `relocate plan` on real servers (moto, sshd)."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path
from typing import Any

from helpers import aws_client, cli, make_config
from relocate.egress_file import load_rates
from relocate.plan import egress


def test_nothing_to_price_is_never_stale_and_dated_by_the_file() -> None:
    rates = load_rates()
    # the shipped file: us-east-1 re-checked after the file's base date, which is over a year older
    assert rates.updated == rates.checked("us-east-1") and rates.updated > rates.as_of
    far = dt.date.fromisoformat(rates.updated) + dt.timedelta(days=5 * 365)
    for nothing in ({}, {"us-east-1": 0}, {None: 0}):
        est = egress.estimate(nothing, rates, far)
        assert est["bytes"] == 0 and est["cost"] == 0
        assert not est["rates_stale"] and est["stale_note"] == "", est
        assert est["as_of"] == rates.updated, est
    # data priced at old rates is still stale: only "nothing to price" changed
    assert egress.estimate({"us-east-1": egress.GB}, rates, far)["rates_stale"]


def test_a_plan_of_env_steps_only_has_no_stale_rates_warning(tmp_path: Path, moto: str, sshd: Any) -> None:
    aws_client("ssm", moto).put_parameter(Name=f"/egress0/{tmp_path.name}/x", Value="v", Type="String")
    root = sshd.root / f"eg0-{secrets.token_hex(3)}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      parameters=[{"path": f"/egress0/{tmp_path.name}/", "to": "shared/app.env"}])
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    plan = run.json()
    assert plan["egress"]["bytes"] == 0 and not plan["egress"]["rates_stale"], plan["egress"]
    assert plan["egress"]["as_of"] == load_rates().updated
    assert not any(w["code"] == "egress-rates-stale" for w in plan["warnings"]), plan["warnings"]
    text = cli("plan", "-f", str(cfg))
    assert f"rates as of {load_rates().updated}" in text.stdout and "WARNING" not in text.stdout, text.stdout

    # a plan sending us-east-1 data gives the same date
    s3 = aws_client("s3", moto)
    bucket = f"eg0-{secrets.token_hex(3)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      buckets=[{"bucket": bucket, "to": "data"}])
    data = cli("plan", "-f", str(cfg), "--json").json()["egress"]
    assert data["bytes"] == 4 and data["as_of"] == plan["egress"]["as_of"], data
