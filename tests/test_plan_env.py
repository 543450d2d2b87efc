"""What `relocate plan` counts for an env file, against real servers (SSM and Secrets
Manager from moto, the target a real OpenSSH sshd): the parameters and secrets it is made
from, said as such, never "variables" (a JSON secret gives one variable per key, known
only once the move reads its value, which the plan never does)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from helpers import aws_client, cli, make_config

SECRET_VALUE = "s3cr3t-" + secrets.token_hex(8)


def test_env_step_counts_parameters_and_secrets_not_variables(moto: str, sshd: Any, tmp_path: Path) -> None:
    ssm, sm = aws_client("ssm", moto), aws_client("secretsmanager", moto)
    for name in ("mode", "region", "db/host"):
        ssm.put_parameter(Name=f"/envcount/prod/{name}", Value=f"v-{name}", Type="String")
    # one secret, three variables
    sm.create_secret(Name="envcount/prod/api", SecretString=json.dumps({"A_KEY": SECRET_VALUE, "B_KEY": "b", "C_KEY": "c"}))
    root = sshd.root / f"envcount-{tmp_path.name}"
    cfg = make_config(tmp_path / "relocate.yaml", endpoint=moto, sshd=sshd, root=str(root),
                      parameters=[{"path": "/envcount/prod/", "to": "shared/app.env"}],
                      secrets=[{"name": "envcount/prod/api", "to": "shared/app.env"}])
    run = cli("plan", "-f", str(cfg), "--json")
    assert run.exit_code == 0, run.stdout + run.stderr
    step = {s["id"]: s for s in run.json()["steps"]}["env:shared/app.env"]
    assert (step["count"], step["todo_count"]) == (4, 4)  # 3 parameters + 1 secret
    assert step["detail"].startswith("from 3 parameter(s) and 1 secret(s) (counted, not their variables"), step["detail"]
    text = cli("plan", "-f", str(cfg))
    assert text.exit_code == 0 and SECRET_VALUE not in text.stdout + run.stdout  # the plan never reads a value
    assert "4 parameter(s)/secret(s)" in text.stdout and " vars" not in text.stdout, text.stdout

    moved = cli("move", "-f", str(cfg), "--yes")
    assert moved.exit_code == 0, moved.stdout + moved.stderr
    written = [line.split("=", 1)[0] for line in (root / "shared" / "app.env").read_text().splitlines()
               if line and not line.startswith("#")]
    # six variables from the four counted sources: the count is not of variables
    assert sorted(written) == ["A_KEY", "B_KEY", "C_KEY", "DB_HOST", "MODE", "REGION"], written
