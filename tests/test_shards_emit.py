"""`relocate shards emit`: what each engine is given is valid for that engine, checked offline
against the engine's own schema: the Kubernetes objects against the OpenAPI schema of a pinned
Kubernetes version (kubernetes-validate, strict: unknown fields are errors), the workflow with
actionlint, the AWS Batch requests against botocore's service model for `batch`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import botocore.session
import kubernetes_validate
import pytest
import yaml
from botocore.validate import ParamValidator

from helpers import cli
from test_ci_docs import _TOO_NEW_FOR_IT, _actionlint

from relocate.shards import emit

K8S_VERSION = "1.31"  # pinned: Indexed Jobs with backoffLimitPerIndex and pod failure policies (beta, on by default)
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:relocate/ssh-AbCdEf"
CONFIG = """\
version: 1
app: {name: townsquare}
source:
  aws: {region: us-east-1}
  s3: [{bucket: media, to: data/media}]
  secrets: [{name: townsquare/prod/api, to: shared/app.env}]
target:
  ssh: {host: 203.0.113.10, user: deploy, identity_file: ~/.ssh/relocate key, host_key: "SHA256:abc"}
  root: /srv/townsquare
"""


def _plan(tmp_path: Path, shards: int = 4) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"format_version": 1, "created_at": "2026-12-04T21:00:00Z", "config_path": "relocate.yaml",
                                "config_text": CONFIG, "steps": [], "shards": {"count": shards}}))
    return path


def _emit(tmp_path: Path, engine: str, *flags: str, shards: int = 4) -> dict[str, str]:
    out = tmp_path / f"out-{engine}"
    run = cli("shards", "emit", "--engine", engine, str(_plan(tmp_path, shards)), "-o", str(out), *flags,
              env={"AWS_SECRET_ACCESS_KEY": "very-secret-value-123"})
    assert run.exit_code == 0, run.stderr
    files = {p.name: p.read_text() for p in sorted(out.iterdir())}
    assert not [n for n in files if n.startswith(".")], "a temporary file was left behind"
    for text in files.values():  # never a secret value of the machine that emitted them
        assert "very-secret-value-123" not in text
    return files


BATCH_FLAGS = ("--job-queue", "relocate-queue", "--plan-url", "s3://plans/townsquare/plan.json", "--ssh-key-arn", ARN,
               "--known-hosts-arn", ARN, "--aws-keys-arn", ARN, "--age-identity-arn", ARN,
               "--job-role-arn", "arn:aws:iam::123456789012:role/relocate")


# --------------------------------------------------------------------------- Kubernetes


def _k8s_docs(tmp_path: Path, *flags: str) -> list[dict]:
    files = _emit(tmp_path, "kubernetes", *flags)
    assert list(files) == ["kubernetes.yaml"]
    return list(yaml.safe_load_all(files["kubernetes.yaml"]))


def test_kubernetes_objects_validate_against_the_pinned_schema(tmp_path: Path) -> None:
    docs = _k8s_docs(tmp_path, "--parallelism", "2")
    assert [d["kind"] for d in docs] == ["ConfigMap", "Job", "Job"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    configmap, shards, finish = docs
    assert json.loads(configmap["data"]["plan.json"])["shards"] == {"count": 4}
    assert configmap["data"]["relocate.yaml"] == CONFIG
    spec = shards["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 2)
    assert spec["backoffLimitPerIndex"] == 3 and spec["maxFailedIndexes"] == 4
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailIndex" and rules[0]["onExitCodes"]["values"] == [1, 2, 3, 4, 6]
    assert 5 not in rules[0]["onExitCodes"]["values"]  # transient: retried
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["resources"]["requests"]["memory"] == "256Mi"
    assert container["command"][4:9] == ["shard", "/etc/relocate/plan.json", "~/.ssh/relocate key", "~/.ssh/known_hosts",
                                         f"relocate-cli=={emit.__version__}"]
    assert {"secretRef": {"name": "relocate-aws"}} in container["envFrom"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert refs == {"TARGET_SSH_KEY": "relocate-ssh", "TARGET_KNOWN_HOSTS": "relocate-ssh"}
    assert pod["volumes"][0] == {"name": "plan", "configMap": {"name": f"{configmap['metadata']['name']}"}}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "plan")
    assert f"{mount['mountPath']}/plan.json" == container["command"][5] and mount["readOnly"]
    # the finish Job: created suspended, started once the shards are complete (the header says how)
    assert finish["spec"]["suspend"] is True and finish["spec"]["template"]["spec"]["containers"][0]["command"][4] == "finish"
    assert "RELOCATE_AGE_IDENTITY" in {e["name"] for e in finish["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_kubernetes_schema_check_really_checks(tmp_path: Path) -> None:
    shards = _k8s_docs(tmp_path)[1]
    shards["spec"]["completions"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(shards, K8S_VERSION, strict=True)
    shards = _k8s_docs(tmp_path)[1]
    shards["spec"]["completionsPerIndex"] = 1  # unknown field: strict mode refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(shards, K8S_VERSION, strict=True)


def test_kubernetes_header_orders_the_finish_after_the_shards(tmp_path: Path) -> None:
    text = _emit(tmp_path, "kubernetes", "--name", "parler-media")["kubernetes.yaml"]
    header = [ln[4:] for ln in text.splitlines() if ln.startswith("#   kubectl")]
    assert header[-4:] == [
        "kubectl apply --server-side -f kubernetes.yaml",
        "kubectl wait --for=condition=complete --timeout=24h job/parler-media-shards",
        """kubectl patch job/parler-media-finish --type=merge -p '{"spec":{"suspend":false}}'""",
        "kubectl wait --for=condition=complete --timeout=6h job/parler-media-finish",
    ]


# --------------------------------------------------------------------------- GitHub Actions


def test_github_workflow_passes_actionlint(tmp_path: Path) -> None:
    files = _emit(tmp_path, "github-actions", "--parallelism", "3", shards=5)
    (name, text), = files.items()
    assert name == "relocate-townsquare.yml"
    problems = [p for p in _actionlint(text) if not _TOO_NEW_FOR_IT.search(p["message"])]
    assert problems == [], "\n".join(f"{p['line']}:{p['column']}: {p['message']} [{p['kind']}]" for p in problems)
    flow = yaml.safe_load(text)
    strategy = flow["jobs"]["shard"]["strategy"]
    assert strategy == {"fail-fast": False, "max-parallel": 3, "matrix": {"shard": [0, 1, 2, 3, 4]}}
    assert flow["jobs"]["finish"]["needs"] == "shard"
    step = flow["jobs"]["shard"]["steps"][-1]
    assert step["env"]["RELOCATE_SHARD"] == "${{ matrix.shard }}"
    assert step["env"]["TARGET_SSH_KEY"] == "${{ secrets.TARGET_SSH_KEY }}"
    # a broken workflow is reported, or the check above proves nothing
    assert _actionlint(text.replace("needs: shard", "needs: shards"))


def test_the_workflow_step_passes_its_arguments_quoted(tmp_path: Path) -> None:
    # the step's `set -- ...` line hands the worker its paths (one with a space) intact: run
    # it in dash, where `relocate` cannot be found, after it wrote the key where relocate.yaml says
    step = yaml.safe_load(_emit(tmp_path, "github-actions", "--install", "")["relocate-townsquare.yml"])["jobs"]["shard"]["steps"][-1]
    home = tmp_path / "home"
    run = subprocess.run(["dash", "-c", step["run"]], env={"HOME": str(home), "PATH": "/usr/bin:/bin",
                                                            "TARGET_SSH_KEY": "KEY", "RELOCATE_SHARD": "1"},
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 127 and "relocate: not found" in run.stderr, run.stderr
    assert (home / ".ssh" / "relocate key").read_text() == "KEY\n" and not (home / ".ssh" / "known_hosts").exists()


# --------------------------------------------------------------------------- AWS Batch


def _batch_model() -> tuple[ParamValidator, object]:
    return ParamValidator(), botocore.session.get_session().get_service_model("batch")


def _check(operation: str, params: dict) -> str:
    validator, model = _batch_model()
    report = validator.validate(params, model.operation_model(operation).input_shape)
    return report.generate_report() if report.has_errors() else ""


def test_aws_batch_requests_match_botocores_batch_model(tmp_path: Path) -> None:
    files = _emit(tmp_path, "aws-batch", *BATCH_FLAGS, shards=6)
    assert set(files) == {"job-definition.json", "submit-shards.json", "submit-finish.json", "submit.sh"}
    definition = json.loads(files["job-definition.json"])
    shards, finish = json.loads(files["submit-shards.json"]), json.loads(files["submit-finish.json"])
    assert _check("RegisterJobDefinition", definition) == ""
    assert _check("SubmitJob", shards) == "" and _check("SubmitJob", finish) == ""
    assert shards["arrayProperties"] == {"size": 6}
    assert finish["dependsOn"] == [{"jobId": "SHARDS_JOB_ID"}] and finish["parameters"] == {"mode": "finish"}
    secrets = {s["name"]: s["valueFrom"] for s in definition["containerProperties"]["secrets"]}
    assert secrets["TARGET_SSH_KEY"] == ARN and secrets["SOURCE_AWS_ACCESS_KEY_ID"] == f"{ARN}:AWS_ACCESS_KEY_ID::"
    assert definition["containerProperties"]["command"][4] == "Ref::mode"
    assert '--depends-on "jobId=$shards"' in files["submit.sh"]
    # the check is real: a misspelt field and a wrong type are reported
    assert "Unknown parameter" in _check("SubmitJob", {**shards, "arraySize": 6})
    assert "Invalid type" in _check("SubmitJob", {**shards, "arrayProperties": {"size": "6"}})


def test_aws_batch_one_shard_is_a_plain_job_told_its_index(tmp_path: Path) -> None:
    shards = json.loads(_emit(tmp_path, "aws-batch", *BATCH_FLAGS, shards=1)["submit-shards.json"])
    assert "arrayProperties" not in shards  # Batch arrays hold 2 to 10,000 children
    assert shards["containerOverrides"]["environment"] == [{"name": "RELOCATE_SHARD", "value": "0"}]
    assert _check("SubmitJob", shards) == ""


# --------------------------------------------------------------------------- the worker and bad input


def test_the_worker_script_runs_in_dash(tmp_path: Path) -> None:
    # dash (Debian's sh) parses it, expands ~/ against the worker's HOME and writes the key 0600
    home = tmp_path / "home"
    argv = ["dash", "-c", emit.WORKER, "relocate-worker", "bogus", "plan.json", "~/.ssh/relocate key", "~/.ssh/kh", ""]
    run = subprocess.run(argv, env={"HOME": str(home), "PATH": "/usr/bin:/bin", "TARGET_SSH_KEY": "KEY",
                                    "TARGET_KNOWN_HOSTS": "HOSTS"}, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "unknown mode bogus" in run.stderr
    key = home / ".ssh" / "relocate key"
    assert key.read_text() == "KEY\n" and (key.stat().st_mode & 0o777) == 0o600
    assert (home / ".ssh" / "kh").read_text() == "HOSTS\n"


@pytest.mark.parametrize("args, message", [
    (["--engine", "nomad"], "--engine 'nomad'"),
    (["--engine", "aws-batch"], "needs --job-queue, --plan-url, --ssh-key-arn"),
    (["--engine", "kubernetes", "--parallelism", "9"], "--parallelism 9: expected 1 to 4"),
    (["--engine", "kubernetes", "--cpu", "lots"], "--cpu 'lots'"),
    (["--engine", "kubernetes", "--name", "Bad_Name"], "--name 'Bad_Name'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    run = cli("shards", "emit", str(_plan(tmp_path)), "-o", str(out), *args)
    assert run.exit_code == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_key_path_from_a_variable_is_refused(tmp_path: Path) -> None:
    # the worker writes the key where relocate.yaml says; ${VAR} would be expanded only by relocate
    path = _plan(tmp_path)
    path.write_text(path.read_text().replace("~/.ssh/relocate key", '\\"${SSH_KEY}\\"'))
    run = cli("shards", "emit", "--engine", "kubernetes", str(path))
    assert run.exit_code == 2 and "target.ssh.identity_file" in run.stderr and "literal path" in run.stderr


def test_a_plan_whose_config_does_not_parse_is_one_line(tmp_path: Path) -> None:
    path = _plan(tmp_path)
    path.write_text(path.read_text().replace("~/.ssh/relocate key", "${SSH_KEY}"))  # unquoted in a flow mapping
    run = cli("shards", "emit", "--engine", "kubernetes", str(path))
    assert run.exit_code == 2 and len(run.stderr.strip().splitlines()) == 1 and "does not parse (line 8" in run.stderr


def test_a_plan_without_shards_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"format_version": 1, "config_text": CONFIG, "steps": []}))
    run = cli("shards", "emit", "--engine", "kubernetes", str(path))
    assert run.exit_code == 2 and "no shards" in run.stderr and "plan --shards N" in run.stderr


def test_stdout_shows_every_file(tmp_path: Path) -> None:
    run = cli("shards", "emit", "--engine", "aws-batch", str(_plan(tmp_path)), *BATCH_FLAGS)
    assert run.exit_code == 0, run.stderr
    assert [ln for ln in run.stdout.splitlines() if ln.startswith("# ==> ")] == [
        "# ==> job-definition.json <==", "# ==> submit-shards.json <==", "# ==> submit-finish.json <==", "# ==> submit.sh <=="]
