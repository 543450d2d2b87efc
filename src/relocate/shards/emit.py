"""`relocate shards emit`: the files an engine needs to run a sharded plan (pure: text in, text out).

Every engine runs the same worker: one POSIX sh script (WORKER, below) that installs relocate
when asked, writes the SSH key and known hosts from environment variables the engine fills
from ITS secret store, fetches the plan when the engine has no way to mount it, and execs
`relocate move PLAN --shard auto` (the engine's own index variable names the shard) or
`--finish`. Nothing here holds a secret value: the files name Secrets, never their content.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from relocate import __version__, localfile
from relocate.errors import ConfigError, UsageError
from relocate.plan.model import PLAN_FORMAT
from relocate.shards.section import check_section
from relocate.targets import shell

ENGINES = ("kubernetes", "github-actions", "aws-batch")
DEFAULT_IMAGE = "python:3.12-slim"
DEFAULT_INSTALL = f"relocate-cli=={__version__}"
# A worker's peak RSS stays under 256 MiB (issue 16): the request; the limit leaves room for
# the pip install that precedes it when the image lacks relocate.
MEMORY_REQUEST, MEMORY_LIMIT, MEMORY_LIMIT_MIB = "256Mi", "512Mi", 512
# bench/bench_shards.py (2026-12-04): a worker and its ssh spent 8.2 CPU-seconds per GiB moved,
# so 1 CPU carries about 130 MB/s; a worker on a faster link needs --cpu in proportion.
DEFAULT_CPU = "1"
# relocate's exit codes that retrying cannot change (README "Exit codes"): 1 bug, 2 usage or
# configuration, 3 blocked, 4 failed items or differences, 6 refused for safety. 5 (transient)
# and signals (137 = killed, OOM) are retried.
PERMANENT_EXIT_CODES = (1, 2, 3, 4, 6)
CONFIGMAP_LIMIT = 1_000_000  # bytes: etcd's 1 MiB object limit, less room for the manifest itself
GITHUB_MATRIX_LIMIT = 256  # jobs one matrix may generate
BATCH_ARRAY_LIMIT = 10_000  # AWS Batch array size: 2..10,000

# The worker, run as `sh -c WORKER relocate-worker MODE PLAN KEY KNOWN_HOSTS INSTALL [PLAN_URL]`.
# Its arguments arrive as separate argv entries (never spliced into the text), so a path with a
# quote in it is just another string; secret values arrive in the environment only.
WORKER = r"""set -eu
mode=$1 plan=$2 key=$3 known=$4 install=$5 url=${6:-}
home_path() { case $1 in "~/"*) printf '%s/%s' "$HOME" "${1#"~/"}" ;; *) printf '%s' "$1" ;; esac; }
key=$(home_path "$key") known=$(home_path "$known")
if [ -n "$install" ]; then
  # the package index or the network failing is transient: exit 5 lets the engine retry
  python3 -m pip install --no-cache-dir --quiet --disable-pip-version-check "$install" || exit 5
fi
umask 077
mkdir -p "$(dirname "$key")" "$(dirname "$known")"
printf '%s\n' "${TARGET_SSH_KEY:?the SSH key secret is not set}" > "$key"
if [ -n "${TARGET_KNOWN_HOSTS:-}" ]; then printf '%s\n' "$TARGET_KNOWN_HOSTS" > "$known"; fi
if [ -n "$url" ]; then
  # the engine's own credentials (a job role) read the plan; the source's keys, when given
  # apart, are exported only afterwards for relocate itself
  python3 -c 'import sys, boto3; b, _, k = sys.argv[1][len("s3://"):].partition("/"); boto3.client("s3").download_file(b, k, sys.argv[2])' "$url" "$plan" || exit 5
fi
if [ -n "${SOURCE_AWS_ACCESS_KEY_ID:-}" ]; then
  export AWS_ACCESS_KEY_ID="$SOURCE_AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="${SOURCE_AWS_SECRET_ACCESS_KEY:-}"
  unset AWS_SESSION_TOKEN
fi
export RELOCATE_NO_INPUT=1
case $mode in
  shard) exec relocate move "$plan" --shard auto --yes ;;
  finish) exec relocate move "$plan" --finish --yes ;;
  *) echo "relocate-worker: unknown mode $mode" >&2; exit 2 ;;
esac
"""


@dataclass(frozen=True)
class PlanFacts:
    """What the emitted files need from plan.json and the relocate.yaml it carries."""

    shards: int
    app: str
    identity_file: str  # as relocate.yaml writes it (~/ expanded by the worker, on the worker)
    known_hosts: str
    text: str  # plan.json itself, for the ConfigMap
    config_text: str
    created_at: str


@dataclass(frozen=True)
class EmitOptions:
    engine: str
    plan_name: str = "plan.json"  # where the worker finds the plan (GitHub: the path in the repository)
    name: str | None = None
    image: str = DEFAULT_IMAGE
    install: str = DEFAULT_INSTALL
    parallelism: int | None = None  # default: every shard at once
    backoff_limit_per_index: int = 3
    max_failed_indexes: int | None = None  # default: let every other shard finish
    cpu: str = DEFAULT_CPU
    # Kubernetes Secrets, by name
    aws_secret: str = "relocate-aws"
    ssh_secret: str = "relocate-ssh"
    age_secret: str = "relocate-age"
    # AWS Batch
    job_queue: str | None = None
    plan_url: str | None = None
    job_role_arn: str | None = None
    execution_role_arn: str | None = None
    ssh_key_arn: str | None = None
    known_hosts_arn: str | None = None
    aws_keys_arn: str | None = None
    age_identity_arn: str | None = None


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the worker script, relocate.yaml) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def _yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, width=1000, default_flow_style=False)


def shard_count(data: dict[str, Any]) -> int | None:
    """N from a sharded plan.json (`plan --shards N`: its `shards.count`); None without shards."""
    shards = data.get("shards")
    n = shards.get("count") if isinstance(shards, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None


def read_plan(path: Path) -> PlanFacts:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a JSON plan file ({exc})") from None
    if not isinstance(data, dict) or data.get("format_version") != PLAN_FORMAT or not isinstance(data.get("config_text"), str):
        raise ConfigError(f"{path}: not a relocate plan (format_version {PLAN_FORMAT} expected)")
    # an edited or damaged section: exit 2 naming the field (emit reads only N, the workers the rest)
    check_section(data.get("shards"), str(path), count_only=True)
    n = shard_count(data)
    if n is None:
        raise ConfigError(f"{path}: the plan has no shards", hint="make it with `relocate plan --shards N -o plan.json`")
    try:
        config = yaml.safe_load(data["config_text"]) or {}
    except yaml.YAMLError as exc:  # one line: where and what, not PyYAML's drawing of the spot
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: the relocate.yaml it carries does not parse ({where}{getattr(exc, 'problem', None) or exc})") from None
    ssh = ((config.get("target") or {}).get("ssh") or {}) if isinstance(config, dict) else {}
    app = (config.get("app") or {}).get("name") if isinstance(config, dict) else None
    for field_name in ("identity_file", "known_hosts"):
        if "${" in str(ssh.get(field_name) or ""):  # the worker writes the file where relocate will read it
            raise UsageError(f"{path}: target.ssh.{field_name} is {ssh[field_name]!r}: the workers need a literal path",
                             hint="write it as ~/.ssh/... (each worker's own HOME) and plan again")
    return PlanFacts(shards=n, app=str(app or Path(str(data.get("config_path", "relocate"))).resolve().parent.name),
                     identity_file=str(ssh.get("identity_file") or "~/.ssh/id_ed25519"),
                     known_hosts=str(ssh.get("known_hosts") or "~/.ssh/known_hosts"),
                     text=text, config_text=data["config_text"], created_at=str(data.get("created_at", "")))


def resource_name(facts: PlanFacts, opts: EmitOptions) -> str:
    """A DNS-1123 label for every object emitted (Kubernetes names, Batch and workflow names):
    short enough that `<name>-shards-<index>-<suffix>` pod host names stay under 63 characters."""
    raw = opts.name or f"relocate-{facts.app}"
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:40].rstrip("-")
    if not name or (opts.name and name != opts.name):
        raise UsageError(f"--name {raw!r}: use 1-40 lower-case letters, digits and '-' (a DNS label)")
    return name


def _worker(mode: str, plan: str, facts: PlanFacts, opts: EmitOptions, url: str = "") -> list[str]:
    args = ["sh", "-c", WORKER, "relocate-worker", mode, plan, facts.identity_file, facts.known_hosts, opts.install]
    return args + [url] if url else args


def emit(facts: PlanFacts, opts: EmitOptions) -> dict[str, str]:
    """The engine's files: name -> text."""
    if opts.engine not in ENGINES:
        raise UsageError(f"--engine {opts.engine!r}: expected one of {', '.join(ENGINES)}")
    for flag, value in (("--parallelism", opts.parallelism), ("--max-failed-indexes", opts.max_failed_indexes)):
        if value is not None and not 1 <= value <= facts.shards:
            raise UsageError(f"{flag} {value}: expected 1 to {facts.shards} (the plan's shards)")
    if opts.backoff_limit_per_index < 0:
        raise UsageError("--backoff-limit-per-index: expected 0 or more")
    return {"kubernetes": _kubernetes, "github-actions": _github, "aws-batch": _batch}[opts.engine](facts, opts)


# --------------------------------------------------------------------------- Kubernetes


def _kubernetes(facts: PlanFacts, opts: EmitOptions) -> dict[str, str]:
    if len(facts.text) + len(facts.config_text) > CONFIGMAP_LIMIT:
        raise UsageError(f"plan.json is {len(facts.text) / 2**20:.1f} MiB, over a ConfigMap's 1 MiB limit",
                         hint="plan with fewer listed prefixes or shards, or use --engine aws-batch (the plan is read from S3)")
    name = resource_name(facts, opts)
    labels = {"app.kubernetes.io/name": "relocate", "app.kubernetes.io/instance": name}
    n = facts.shards
    configmap = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"{name}-plan", "labels": labels},
        # relocate.yaml rides along for the reader: `move plan.json` reads the copy inside the plan
        "data": {"plan.json": facts.text, "relocate.yaml": facts.config_text},
    }
    exits = {"containerName": "relocate", "operator": "In", "values": list(PERMANENT_EXIT_CODES)}
    disrupted = {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}  # drains, preemption: not a failure
    shards = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{name}-shards", "labels": labels},
        "spec": {
            "completionMode": "Indexed",  # JOB_COMPLETION_INDEX = the shard
            "completions": n,
            "parallelism": opts.parallelism or n,
            "backoffLimitPerIndex": opts.backoff_limit_per_index,
            "maxFailedIndexes": opts.max_failed_indexes or n,
            "podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": exits}, disrupted]},
            "template": _pod(facts, opts, "shard", name, labels),
        },
    }
    finish = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{name}-finish", "labels": labels},
        "spec": {
            "suspend": True,  # created with the rest, started by `kubectl patch` once every shard completed
            "completions": 1,
            "backoffLimit": opts.backoff_limit_per_index,
            "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": exits}, disrupted]},
            "template": _pod(facts, opts, "finish", name, labels),
        },
    }
    header = _k8s_header(name, facts, opts)
    docs = _yaml([configmap, shards, finish])
    return {"kubernetes.yaml": header + docs}


def _pod(facts: PlanFacts, opts: EmitOptions, mode: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    def secret(key: str, var: str, secret_name: str, optional: bool = False) -> dict[str, Any]:
        return {"name": var, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key, "optional": optional}}}

    env = [secret("ssh-privatekey", "TARGET_SSH_KEY", opts.ssh_secret),
           secret("known_hosts", "TARGET_KNOWN_HOSTS", opts.ssh_secret, True)]
    if mode == "finish":  # the snapshot's secrets are encrypted with it (only the final phase writes env files)
        env.append(secret("RELOCATE_AGE_IDENTITY", "RELOCATE_AGE_IDENTITY", opts.age_secret, True))
    container = {
        "name": "relocate",
        "image": opts.image,
        "command": _worker(mode, "/etc/relocate/plan.json", facts, opts),
        "workingDir": "/work",  # the local journal and snapshot (relative snapshot.dir): scratch, the target is the record
        "env": env,
        "envFrom": [{"secretRef": {"name": opts.aws_secret}}],  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY[, AWS_SESSION_TOKEN]
        "resources": {"requests": {"cpu": opts.cpu, "memory": MEMORY_REQUEST},
                      "limits": {"cpu": _twice(opts.cpu), "memory": MEMORY_LIMIT}},
        "volumeMounts": [{"name": "plan", "mountPath": "/etc/relocate", "readOnly": True},
                         {"name": "work", "mountPath": "/work"}],
    }
    return {
        "metadata": {"labels": {**labels, "relocate/phase": mode}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{"name": "plan", "configMap": {"name": f"{name}-plan"}},
                        {"name": "work", "emptyDir": {}}],
        },
    }


def _cores(cpu: str) -> float:
    """A Kubernetes CPU quantity (1, 0.5, 500m) in cores."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", cpu.strip())
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"--cpu {cpu!r}: expected a CPU quantity like 1, 0.5 or 500m")
    return float(m.group(1)) / (1000 if m.group(2) else 1)


def _twice(cpu: str) -> str:
    return f"{2 * _cores(cpu):g}"


def _k8s_header(name: str, facts: PlanFacts, opts: EmitOptions) -> str:
    return f"""\
# relocate shards for {facts.app}: {facts.shards} workers as an Indexed Job, then one finish Job.
# Made by `relocate shards emit --engine kubernetes` (relocate {__version__}) from the plan of {facts.created_at}.
# No secret value is in this file; create the Secrets it names first (values from files, never argv):
#   kubectl create secret generic {opts.aws_secret} --from-env-file=aws.env   # AWS_ACCESS_KEY_ID=..., AWS_SECRET_ACCESS_KEY=...
#   kubectl create secret generic {opts.ssh_secret} --from-file=ssh-privatekey=id_ed25519 --from-file=known_hosts=known_hosts
#   kubectl create secret generic {opts.age_secret} --from-file=RELOCATE_AGE_IDENTITY=age.key   # if the plan moves env files
# Order: the finish Job is created suspended and runs only once every shard completed:
#   kubectl apply --server-side -f kubernetes.yaml
#   kubectl wait --for=condition=complete --timeout=24h job/{name}-shards
#   kubectl patch job/{name}-finish --type=merge -p '{{"spec":{{"suspend":false}}}}'
#   kubectl wait --for=condition=complete --timeout=6h job/{name}-finish
# A failed shard (see `kubectl get job/{name}-shards -o jsonpath='{{.status.failedIndexes}}'`) is
# run again by deleting the Job and applying this file again: finished shards find nothing to do.
"""


# --------------------------------------------------------------------------- GitHub Actions


def _github(facts: PlanFacts, opts: EmitOptions) -> dict[str, str]:
    n = facts.shards
    if n > GITHUB_MATRIX_LIMIT:
        raise UsageError(f"the plan has {n} shards; a GitHub Actions matrix runs at most {GITHUB_MATRIX_LIMIT} jobs",
                         hint=f"plan with --shards {GITHUB_MATRIX_LIMIT} or fewer, or use --engine kubernetes")
    name = resource_name(facts, opts)
    plan = opts.plan_name

    def steps(mode: str) -> list[dict[str, Any]]:
        env = {"TARGET_SSH_KEY": "${{ secrets.TARGET_SSH_KEY }}", "TARGET_KNOWN_HOSTS": "${{ secrets.TARGET_KNOWN_HOSTS }}"}
        if mode == "shard":
            env["RELOCATE_SHARD"] = "${{ matrix.shard }}"  # what `--shard auto` reads first
        else:
            env["RELOCATE_AGE_IDENTITY"] = "${{ secrets.RELOCATE_AGE_IDENTITY }}"
        argv = [mode, plan, facts.identity_file, facts.known_hosts, opts.install]
        return [
            {"uses": "actions/checkout@v4"},
            {"uses": "actions/setup-python@v5", "with": {"python-version": "3.12"}},
            {"name": "shard ${{ matrix.shard }}" if mode == "shard" else "finish: the final phase and the merged verification",
             "run": f"set -- {shell.line(argv)}\n{WORKER}", "shell": "sh", "env": env},
        ]

    workflow = {
        "name": f"relocate shards ({name})",
        "on": {"workflow_dispatch": None},
        "permissions": {"contents": "read"},
        "concurrency": name,  # one run at a time: a second would race the first for the same shards
        "env": {"AWS_ACCESS_KEY_ID": "${{ secrets.AWS_ACCESS_KEY_ID }}",
                "AWS_SECRET_ACCESS_KEY": "${{ secrets.AWS_SECRET_ACCESS_KEY }}"},
        "jobs": {
            "shard": {
                "runs-on": "ubuntu-latest",
                "timeout-minutes": 360,  # GitHub-hosted runners stop a job at 6 hours: plan enough shards
                "strategy": {"fail-fast": False, "max-parallel": opts.parallelism or n,
                             "matrix": {"shard": list(range(n))}},
                "steps": steps("shard"),
            },
            "finish": {"needs": "shard", "runs-on": "ubuntu-latest", "timeout-minutes": 360, "steps": steps("finish")},
        },
    }
    header = f"""\
# .github/workflows/{name}.yml: relocate's {n} shards as a matrix, then the finish job once all succeeded.
# Made by `relocate shards emit --engine github-actions` (relocate {__version__}) from the plan of {facts.created_at}.
# Commit the plan at {plan} (it holds relocate.yaml as written, never a secret value) and this file,
# add the repository secrets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, TARGET_SSH_KEY, TARGET_KNOWN_HOSTS
# and RELOCATE_AGE_IDENTITY, then start it: gh workflow run {name}.yml
# A failed shard: "Re-run failed jobs" runs only those; finished shards are never redone.
"""
    # PyYAML quotes the key 'on' (a boolean in YAML 1.1); GitHub reads either form
    return {f"{name}.yml": header + _yaml([workflow])}


# --------------------------------------------------------------------------- AWS Batch


def _batch(facts: PlanFacts, opts: EmitOptions) -> dict[str, str]:
    missing = [flag for flag, value in (("--job-queue", opts.job_queue), ("--plan-url", opts.plan_url),
                                        ("--ssh-key-arn", opts.ssh_key_arn)) if not value]
    if missing:
        raise UsageError(f"--engine aws-batch needs {', '.join(missing)}")
    assert opts.plan_url is not None and opts.job_queue is not None
    if not re.fullmatch(r"s3://[^/]+/.+", opts.plan_url):
        raise UsageError(f"--plan-url {opts.plan_url!r}: expected s3://BUCKET/KEY")
    for flag, arn in (("--ssh-key-arn", opts.ssh_key_arn), ("--known-hosts-arn", opts.known_hosts_arn),
                      ("--aws-keys-arn", opts.aws_keys_arn), ("--age-identity-arn", opts.age_identity_arn)):
        if arn and not arn.startswith("arn:"):
            raise UsageError(f"{flag} {arn!r}: expected a Secrets Manager ARN (arn:aws:secretsmanager:...)")
    n = facts.shards
    if n > BATCH_ARRAY_LIMIT:
        raise UsageError(f"the plan has {n} shards; an AWS Batch array job holds at most {BATCH_ARRAY_LIMIT}")
    name = resource_name(facts, opts)
    secrets = [{"name": "TARGET_SSH_KEY", "valueFrom": opts.ssh_key_arn}]
    if opts.known_hosts_arn:
        secrets.append({"name": "TARGET_KNOWN_HOSTS", "valueFrom": opts.known_hosts_arn})
    if opts.aws_keys_arn:  # a JSON secret {"AWS_ACCESS_KEY_ID": ..., "AWS_SECRET_ACCESS_KEY": ...}
        secrets += [{"name": f"SOURCE_{k}", "valueFrom": f"{opts.aws_keys_arn}:{k}::"}
                    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    if opts.age_identity_arn:
        secrets.append({"name": "RELOCATE_AGE_IDENTITY", "valueFrom": opts.age_identity_arn})
    container: dict[str, Any] = {
        "image": opts.image,
        # Ref::mode is Batch parameter substitution: "shard" unless the submission says "finish"
        "command": [*_worker("Ref::mode", "plan.json", facts, opts, opts.plan_url)],
        "resourceRequirements": [{"type": "VCPU", "value": str(max(1, round(_cores(opts.cpu))))},
                                 {"type": "MEMORY", "value": str(MEMORY_LIMIT_MIB)}],
        "secrets": secrets,
    }
    if opts.job_role_arn:
        container["jobRoleArn"] = opts.job_role_arn
    if opts.execution_role_arn:
        container["executionRoleArn"] = opts.execution_role_arn
    definition = {
        "jobDefinitionName": name,
        "type": "container",
        "platformCapabilities": ["EC2"],
        "parameters": {"mode": "shard"},
        "containerProperties": container,
        "retryStrategy": {"attempts": 1 + opts.backoff_limit_per_index, "evaluateOnExit": [
            {"onExitCode": "5", "action": "RETRY"},  # transient: running again resumes
            {"onStatusReason": "Host EC2*", "action": "RETRY"},  # the instance went away (spot)
            {"onExitCode": "*", "action": "EXIT"},
        ]},
    }
    shards: dict[str, Any] = {"jobName": f"{name}-shards", "jobQueue": opts.job_queue, "jobDefinition": name}
    if n >= 2:
        shards["arrayProperties"] = {"size": n}  # AWS_BATCH_JOB_ARRAY_INDEX = the shard
    else:  # Batch arrays hold 2 or more children: one shard is a plain job told its index
        shards["containerOverrides"] = {"environment": [{"name": "RELOCATE_SHARD", "value": "0"}]}
    finish = {
        "jobName": f"{name}-finish", "jobQueue": opts.job_queue, "jobDefinition": name,
        "parameters": {"mode": "finish"},
        # a plain jobId dependency on an array job waits for every child (N_TO_N would pair children
        # of two arrays); submit.sh replaces this placeholder with the shards' job id
        "dependsOn": [{"jobId": "SHARDS_JOB_ID"}],
    }
    submit = f"""\
#!/bin/sh
# relocate's {n} shards on AWS Batch, then the finish job once every child succeeded.
# Made by `relocate shards emit --engine aws-batch` (relocate {__version__}) from the plan of {facts.created_at}.
# Usage: sh submit.sh PLAN.json   (uploads it to {opts.plan_url}, where the workers read it)
set -eu
plan=${{1:?usage: sh submit.sh PLAN.json}}
aws s3 cp "$plan" {shell.line([opts.plan_url])}
cd "$(dirname "$0")"
aws batch register-job-definition --cli-input-json file://job-definition.json
shards=$(aws batch submit-job --cli-input-json file://submit-shards.json --query jobId --output text)
echo "shards: $shards"
aws batch submit-job --cli-input-json file://submit-finish.json --depends-on "jobId=$shards" --query jobId --output text
"""
    def dump(doc: dict[str, Any]) -> str:
        return json.dumps(doc, indent=2) + "\n"

    return {"job-definition.json": dump(definition), "submit-shards.json": dump(shards),
            "submit-finish.json": dump(finish), "submit.sh": submit}


# --------------------------------------------------------------------------- output


def write_files(files: dict[str, str], directory: Path) -> list[Path]:
    """Every file written completely beside its final name, then renamed into place: a
    failure leaves no half-written file, and the renames follow only once all are written.
    A directory that cannot be made or written is exit 2 naming it (localfile)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise localfile.cannot_write(directory, exc) from None
    staged: list[tuple[Path, Path]] = []
    try:
        for name, text in files.items():
            final = directory / name
            staged.append((localfile.stage(final, [text], mode=0o755 if name.endswith(".sh") else 0o644), final))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged:
        localfile.commit(tmp, final)
    return [final for _, final in staged]


def to_stdout(files: dict[str, str]) -> str:
    """One file as it is; several, each after a `# ==> NAME <==` line (use -o DIR to apply them)."""
    if len(files) == 1:
        return next(iter(files.values()))
    return "".join(f"# ==> {name} <==\n{text}" for name, text in files.items())
