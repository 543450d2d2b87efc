"""`relocate shards emit`: ready-to-apply files that run a sharded plan under an engine."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from relocate.shards import emit as emitter

_ENGINE_HELP = "kubernetes (an Indexed Job and a finish Job), github-actions (a matrix workflow) or aws-batch (an array job)."


def register(app: typer.Typer) -> None:
    shards = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Sharded moves: emit the files Kubernetes, GitHub Actions or AWS Batch need to run "
                              "a plan made with `relocate plan --shards N` (docs/scale.md).")
    app.add_typer(shards, name="shards")

    @shards.command("emit")
    def emit_cmd(
        plan: Path = typer.Argument(..., help="A plan saved by `relocate plan --shards N -o plan.json`."),
        engine: str = typer.Option(..., "--engine", help=_ENGINE_HELP),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the files into this directory "
                                              "(each complete before any is renamed into place); default: print them."),
        name: Optional[str] = typer.Option(None, "--name", help="Name of the jobs and objects made (default relocate-<app name>)."),
        image: str = typer.Option(emitter.DEFAULT_IMAGE, "--image", help="Container image of the workers (kubernetes, "
                                  "aws-batch); it needs python3, or relocate itself with --install ''."),
        install: str = typer.Option(emitter.DEFAULT_INSTALL, "--install", help="What each worker pip-installs before it "
                                    "runs (a pip requirement, e.g. 'relocate-cli @ git+https://...'); '' when the image "
                                    "already has relocate."),
        parallelism: Optional[int] = typer.Option(None, "--parallelism", min=1, help="Shards running at once "
                                                  "(Kubernetes parallelism, GitHub max-parallel; default: all N)."),
        backoff_limit_per_index: int = typer.Option(3, "--backoff-limit-per-index", min=0, help="Retries of one "
                                                    "shard after a transient failure (exit 5, a lost node)."),
        max_failed_indexes: Optional[int] = typer.Option(None, "--max-failed-indexes", min=1, help="Kubernetes: fail "
                                                         "the Job once this many shards failed for good (default N: let "
                                                         "the others finish)."),
        cpu: str = typer.Option(emitter.DEFAULT_CPU, "--cpu", help="CPU request per worker (the limit is twice it; "
                                "AWS Batch rounds it to whole vCPUs)."),
        aws_secret: str = typer.Option("relocate-aws", "--aws-secret", help="Kubernetes Secret holding "
                                       "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (read-only source keys)."),
        ssh_secret: str = typer.Option("relocate-ssh", "--ssh-secret", help="Kubernetes Secret holding "
                                       "ssh-privatekey and known_hosts for the target."),
        age_secret: str = typer.Option("relocate-age", "--age-secret", help="Kubernetes Secret holding "
                                       "RELOCATE_AGE_IDENTITY (the snapshot key; the finish Job only)."),
        job_queue: Optional[str] = typer.Option(None, "--job-queue", help="AWS Batch job queue (required for aws-batch)."),
        plan_url: Optional[str] = typer.Option(None, "--plan-url", help="AWS Batch: s3://BUCKET/KEY the workers read "
                                               "the plan from with the job role (submit.sh uploads it; required)."),
        job_role_arn: Optional[str] = typer.Option(None, "--job-role-arn", help="AWS Batch: IAM role of the workers."),
        execution_role_arn: Optional[str] = typer.Option(None, "--execution-role-arn", help="AWS Batch: IAM role "
                                                         "that reads the Secrets Manager secrets for the container."),
        ssh_key_arn: Optional[str] = typer.Option(None, "--ssh-key-arn", help="AWS Batch: Secrets Manager ARN of the "
                                                  "target's SSH private key (required)."),
        known_hosts_arn: Optional[str] = typer.Option(None, "--known-hosts-arn", help="AWS Batch: Secrets Manager ARN "
                                                      "of the target's known_hosts lines."),
        aws_keys_arn: Optional[str] = typer.Option(None, "--aws-keys-arn", help="AWS Batch: Secrets Manager ARN of a "
                                                   "JSON secret with the source's AWS_ACCESS_KEY_ID and "
                                                   "AWS_SECRET_ACCESS_KEY (default: the job role reads the source)."),
        age_identity_arn: Optional[str] = typer.Option(None, "--age-identity-arn", help="AWS Batch: Secrets Manager "
                                                       "ARN of RELOCATE_AGE_IDENTITY."),
    ) -> None:
        """Write the files an engine needs to run every shard of PLAN, then its finish phase.

        Nothing in them is a secret value: they name Kubernetes Secrets, GitHub secrets or
        Secrets Manager ARNs. Exit 2 for a plan without shards or a missing engine flag."""
        facts = emitter.read_plan(plan)
        plan_name = str(plan) if not plan.is_absolute() else plan.name
        opts = emitter.EmitOptions(
            engine=engine, plan_name=plan_name, name=name, image=image, install=install, parallelism=parallelism,
            backoff_limit_per_index=backoff_limit_per_index, max_failed_indexes=max_failed_indexes, cpu=cpu,
            aws_secret=aws_secret, ssh_secret=ssh_secret, age_secret=age_secret, job_queue=job_queue,
            plan_url=plan_url, job_role_arn=job_role_arn, execution_role_arn=execution_role_arn,
            ssh_key_arn=ssh_key_arn, known_hosts_arn=known_hosts_arn, aws_keys_arn=aws_keys_arn,
            age_identity_arn=age_identity_arn)
        files = emitter.emit(facts, opts)
        if output is None:
            typer.echo(emitter.to_stdout(files), nl=False)
            return
        for path in emitter.write_files(files, output):
            typer.echo(f"wrote {path}", err=True)
