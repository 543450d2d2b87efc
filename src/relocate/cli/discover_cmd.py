"""`relocate discover`: what the AWS account holds, read-only; optionally a starter relocate.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from relocate import localfile
from relocate.cli import options, render
from relocate.errors import ExitCode, UsageError
from relocate.plan.build import human_bytes
from relocate.sources.discover import TIES, Discovery, all_regions, default_region, discover
from relocate.sources.aws import Aws
from relocate.config import AwsSpec

_TITLES = {
    "rds_instances": "RDS instances", "rds_clusters": "RDS/Aurora clusters", "ec2": "EC2 instances",
    "ssm": "SSM parameters", "secrets": "Secrets Manager secrets", "route53": "Route53 zones",
}


def _line(kind: str, item: dict[str, Any]) -> str:
    """One resource, one line: the facts that decide how it moves."""
    if kind in ("rds_instances", "rds_clusters"):
        extra = f", members {', '.join(item['members'])}" if item.get("members") else ""
        return f"{item['id']}: {item.get('engine')} {item.get('version')}, {item.get('storage_gb')} GB{extra}"
    if kind == "ec2":
        vols = ", ".join(f"{v.get('device')} {v.get('size_gb')} GB" for v in item.get("volumes") or ()) or "no volumes"
        return (f"{item.get('name') or '(no name)'} {item['id']}: {item.get('type')} {item.get('state')}, "
                f"public {item.get('public_ip') or '-'}, private {item.get('private_ip') or '-'}; {vols}")
    if kind == "route53":
        return f"{item['name']}: {item.get('records')} records" + (" (private)" if item.get("private") else "")
    if kind in ("ssm", "secrets"):
        return str(item["name"])
    fields = [str(v) for k, v in item.items() if k not in ("region",) and v not in (None, "", [])]
    return " ".join(fields[:3])


def show(console: Console, d: Discovery) -> None:
    console.print(f"[bold]Discovered[/bold] in {', '.join(d.regions)} (read-only; parameter and secret values never read)")
    buckets = d.items("s3")
    table = Table(title=f"S3 buckets ({len(buckets)})")
    for col in ("bucket", "region", "objects", "size", "from", "versioning", "encryption", "lifecycle", "website"):
        table.add_column(col, overflow="fold")
    for b in buckets:
        table.add_row(b["name"], b.get("region") or "?", str(b.get("objects") if b.get("objects") is not None else "?"),
                      human_bytes(b["bytes"]) if b.get("bytes") is not None else "?", b.get("size_from") or "-",
                      str(b.get("versioning")), str(b.get("encryption")), str(b.get("lifecycle_rules")), str(b.get("website")))
    console.print(table)
    for kind, title in _TITLES.items():
        items = d.items(kind)
        console.print(f"[bold]{title}[/bold] ({len(items)})")
        limit = 10 if kind in ("ssm", "secrets") else 50  # names only; long lists are in --json
        for item in items[:limit]:
            where = f" [{item['region']}]" if len(d.regions) > 1 and item.get("region") != "global" else ""
            console.print(f"  {_line(kind, item)}{where}", markup=False)
        if len(items) > limit:
            console.print(f"  ... and {len(items) - limit} more (--json lists all)")
    console.print("[bold]Services that tie the app to AWS[/bold] (need a replacement elsewhere)")
    for kind, why in TIES.items():
        items = d.items(kind)
        if items:
            console.print(f"  {kind} ({len(items)}): {why}", markup=False)
            for item in items[:10]:
                console.print(f"    {_line(kind, item)}", markup=False)
    if d.failures:
        console.print(f"[red bold]Not inventoried ({len(d.failures)})[/red bold]: the rest above is still accurate")
        for f in d.failures:
            console.print(f"  {f.kind} in {f.region}: {f.error}", markup=False)


def register(app: typer.Typer) -> None:
    @app.command("discover")
    def discover_cmd(
        region: Optional[list[str]] = typer.Option(None, "--region", help="Region to inventory (repeatable; default: your AWS config's)."),
        every_region: bool = typer.Option(False, "--all-regions", help="Inventory every region the account can use."),
        profile: Optional[str] = typer.Option(None, "--profile", help="AWS profile to read with."),
        endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help="An AWS-compatible endpoint (e.g. a test server)."),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write a commented starter relocate.yaml here."),
        force: bool = typer.Option(False, "--force", help="Overwrite the -o file if it exists."),
        count_objects: bool = typer.Option(False, "--count-objects", help="Count S3 objects by listing (exact) instead of CloudWatch metrics (up to 2 days old)."),
        as_json: bool = options.JSON,
    ) -> None:
        """Inventory the AWS account read-only. Exit 0, or 4 when some services could not be read (the rest is shown)."""
        if region and every_region:
            raise UsageError("--region and --all-regions exclude each other")
        from relocate.config import endpoint_error, region_error

        # relocate.yaml's own rules (its source.aws): exit 2 here, not botocore's error from the first client
        for flag, value, rule in [("--region", r, region_error) for r in region or ()] + [
                ("--endpoint-url", endpoint_url, endpoint_error)]:
            if value is not None and (err := rule(value)):
                raise UsageError(f"{flag}: {err}")
        if output is not None and output.exists() and not force:
            raise UsageError(f"{output} exists", hint="pass --force to overwrite it, or choose another -o")
        if output is not None:
            localfile.check_writable(output)  # before the account's slow inventory, not after
        regions = list(dict.fromkeys(region or ())) or [default_region(profile)]
        if every_region:
            regions = all_regions(Aws(AwsSpec(region=default_region(profile), profile=profile, endpoint_url=endpoint_url)))
        found = discover(regions, profile=profile, endpoint_url=endpoint_url, exact_sizes=count_objects)
        if output is not None:
            from relocate.starter import starter_yaml

            localfile.write_atomic(output, [starter_yaml(found, profile=profile, endpoint_url=endpoint_url)])
        if as_json:
            render.print_json(found.to_dict())
        else:
            console = render.stdout_console()
            show(console, found)
            if output is not None:
                console.print(f"wrote {output}: fill in the target, then run `relocate plan -f {output}`", markup=False)
        raise typer.Exit(int(ExitCode.DIFFERENCES if found.failures else ExitCode.OK))
