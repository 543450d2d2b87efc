"""`relocate check` and `relocate profiles list|show|lint`: which providers' terms accept this app.

Thin: read the app section, call relocate.policy, render. Errors are mapped to
exit codes here as well as in `main`, so the commands behave the same when
driven through Typer directly (tests, embedding).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import typer
import yaml
from rich.console import Console
from rich.table import Table

from relocate.cli import jsondoc, options
from relocate.cli.jsondoc import print_json
from relocate.errors import ConfigError, ExitCode, RelocateError
from relocate.policy import render
from relocate.policy.app import AppProfile, Moderation, app_from_parts
from relocate.policy.engine import STALE_AFTER_DAYS, check, verdict_for
from relocate.policy.profiles import ProfileSet, lint_dir, load_profiles
from relocate.policy.schema import lint_warnings
from relocate.policy.verdict import FORMAT_VERSION, ProviderVerdict, event_dict



def _exit(code: ExitCode) -> None:
    # SystemExit, not typer.Exit: `relocate.cli.main` runs click with standalone_mode=False,
    # where click swallows typer.Exit and returns its code instead of exiting with it.
    sys.exit(int(code))


@contextlib.contextmanager
def _edge() -> Iterator[None]:
    """One line on stderr and the stable exit code for every expected error, and under
    JSON the error document on stdout, as the CLI's edge (cli/__init__.py `_fail`) gives
    every other command."""
    try:
        yield
    except RelocateError as exc:
        typer.echo(f"relocate: error: {exc.line()}", err=True)
        jsondoc.failed(int(exc.exit_code), exc.line())
        _exit(exc.exit_code)


@dataclass
class _Input:
    """What `check` judges: the app, and what it knows of the app's vendors without reading AWS."""

    app: AppProfile
    target: str | None = None
    names: list[str] = field(default_factory=list)  # parameter / secret / env variable NAMES (never values)
    config: Any = None  # the full relocate.yaml Config, when the file had one


_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\b(?:env|secret|ssm):([^\s#'\"]+)")


def config_names(config: Any) -> list[str]:
    """Names relocate.yaml itself gives, read without AWS: parameter paths, secret names, ${VAR} and env:/secret:/ssm: refs."""
    names = [p.path for p in config.parameters] + [s.name for s in config.secrets]
    names += [m.group(1) or m.group(2) for m in _REF.finditer(config.text)]
    return list(dict.fromkeys(names))


def _app_only_spec() -> Any:
    from relocate.config import SCHEMA
    from relocate.schema import Int, Map

    app = SCHEMA.fields["app"]
    return Map({"version": Int(min=1, max=1), "app": replace(app, required=())}, required=("app",))  # type: ignore[type-var]


def _read_file(path: Path) -> _Input:
    """relocate.yaml: the whole file when it has source/target, else a file holding only `app:`."""
    from relocate.config import load_config
    from relocate.schema import SafeLoader, environ, load_document

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", hint="give -f FILE, or describe the app with flags: --content ...") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    try:
        top = yaml.load(text, Loader=SafeLoader)  # noqa: S506 (the safe loader, libyaml's when built)
    except yaml.YAMLError:
        top = None  # let the config loader word the error
    if isinstance(top, dict) and "app" in top and not ({"source", "target"} & set(top)):
        data = load_document(text, _app_only_spec(), str(path), environ())
        a = data["app"]
        return _Input(app_from_parts(a.get("content"), a.get("moderation"), a.get("dependencies")))
    config = load_config(path)
    app = config.app
    return _Input(app_from_parts(list(app.content), app.moderation, dict(app.dependencies)), config.provider,
                  config_names(config), config)


def _split(values: Optional[list[str]]) -> list[str]:
    return [v.strip() for item in values or () for v in item.split(",") if v.strip()]


def _with_flags(base: AppProfile, q: "_Quick") -> AppProfile:
    """Flags override (or, without a file, make up) the app section."""
    m = base.moderation or Moderation()
    given: dict[str, Any] = {k: v for k, v in (("moderators", q.moderators), ("report_response_hours", q.response_hours),
                                ("daily_active_users", q.daily_active_users), ("posts_per_day", q.posts_per_day),
                                ("automated_filtering", q.automated_filtering), ("published_rules", q.published_rules),
                                ("notice_channel", q.notice_channel)) if v is not None}
    moderation = replace(m, **given) if given else base.moderation
    content = _split(q.content) or base.content
    return AppProfile(list(content), moderation, dict(base.dependencies))


@dataclass
class _Quick:
    content: Optional[list[str]] = None
    moderators: Optional[int] = None
    response_hours: Optional[float] = None
    daily_active_users: Optional[int] = None
    posts_per_day: Optional[int] = None
    automated_filtering: Optional[bool] = None
    published_rules: Optional[bool] = None
    notice_channel: Optional[bool] = None

    def any(self) -> bool:
        return any(v is not None for v in self.__dict__.values())


def _input(file: Optional[Path], quick: _Quick) -> _Input:
    for name in ("moderators", "response_hours", "daily_active_users", "posts_per_day"):
        value = getattr(quick, name)
        if value is not None and value < 0:
            raise ConfigError(f"--{name.replace('_', '-')}: must be zero or more")
    if file is None:
        default = Path("relocate.yaml")
        if quick.any() and not default.exists():
            return _Input(_with_flags(AppProfile(), quick))
        file = default
    got = _read_file(file)
    got.app = _with_flags(got.app, quick)
    return got


def _source_names(config: Any) -> list[str]:
    """`--read-names`: the NAMES of the SSM parameters under source.parameters (describe only, never values)."""
    from relocate.sources.aws import Aws
    from relocate.sources.inventory import list_parameters

    if config is None:
        raise ConfigError("--read-names needs a relocate.yaml with source.parameters or source.secrets")
    aws = Aws(config.aws)
    return [i.name for spec in config.parameters for i in list_parameters(aws, spec).items]


def _today(value: Optional[str]) -> dt.date:
    if value is None:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--today: not a date YYYY-MM-DD: {value!r}") from None


def _console() -> Console:
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)




_COLOUR = {"accept": "green", "conditional": "yellow", "unknown": "magenta", "reject": "red"}


def _table(report_verdicts: list[ProviderVerdict], console: Console) -> None:
    table = Table(title="Acceptable use, ranked")
    for col in ("#", "provider", "verdict", "score", "kinds", "top findings"):
        table.add_column(col, overflow="fold")
    for i, v in enumerate(report_verdicts, 1):
        table.add_row(str(i), v.provider, f"[{_COLOUR[v.verdict]}]{v.label}[/]", str(v.score), ", ".join(v.kinds),
                      render.top_line(v))
    console.print(table)


def _discovered(path: Optional[Path]) -> tuple[list[str], list[str]]:
    """`--discovered FILE`: what an earlier `relocate discover --json` saw (names and services; no AWS read now)."""
    if path is None:
        return [], []
    from relocate.policy.chain import from_discovery

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--discovered {path}: no such file") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--discovered {path}: not JSON ({exc})") from None
    try:
        return from_discovery(data)
    except ConfigError as exc:
        raise ConfigError(f"--discovered {path}: {exc.message}") from None


def _check(inp: _Input, provider: list[str], kind: list[str], fmt: str, explain: Optional[str],
           profiles: Optional[Path], today: Optional[str], stale_days: int, uses: list[str], read_names: bool,
           discovered: Optional[Path] = None) -> None:
    app = inp.app
    profileset = load_profiles(profiles, env=os.environ)
    day = _today(today)
    if inp.target is not None:
        # Before anything is printed, in every format: a table followed by an error (or a
        # JSON document and exit 0) would leave the typo looking like an answer.
        try:
            profileset.get(inp.target)
        except ConfigError as exc:
            where = f"{inp.config.path}: " if inp.config is not None else ""
            raise ConfigError(f"{where}target.provider: {exc.message}", hint=exc.hint) from None
    if explain is not None:
        v = verdict_for(explain, app, profileset, day)
        if fmt == "json":
            print_json({"format_version": FORMAT_VERSION, **v.to_dict()})
        else:
            for line in render.explain(v, profileset.get(explain)):
                typer.echo(line)
        return
    found_names, services = _discovered(discovered)
    names = list(inp.names) + found_names + (_source_names(inp.config) if read_names else [])
    report = check(app, profileset, today=day, providers=provider, kinds=kind, stale_after_days=stale_days,
                   names=names, services=services, uses=uses)
    if fmt == "json":
        print_json(report.to_dict())
    elif fmt == "markdown":
        target = verdict_for(inp.target, app, profileset, day) if inp.target is not None else None
        typer.echo(render.markdown(report, target), nl=False)
    else:
        console = _console()
        for note in report.app_notes:
            console.print(f"[yellow]note:[/] {note}")
        _table(list(report.verdicts), console)
        for v in report.verdicts:
            if v.incidents:
                for line in render.record_lines(v):
                    console.print(f"record {v.provider}: {line}", markup=False)
        if inp.target is not None:
            console.print(render.target_line(verdict_for(inp.target, app, profileset, day)), markup=False)
        for d in report.dependencies:
            console.print(f"vendor {render.chain_line(d)}", markup=False)
        # Every warning for a provider asked for by name (or the target); for the rest, a count: dozens of
        # "undated text" lines would bury the table. --explain ID and --json list them all.
        named = set(provider) | ({verdict_for(inp.target, app, profileset, day).provider} if inp.target else set())
        for v in report.verdicts:
            if v.provider in named or len(report.verdicts) == 1:
                for w in v.warnings:
                    console.print(f"warning: {w}", markup=False)
        rest = [v for v in report.verdicts if v.warnings and v.provider not in named and len(report.verdicts) > 1]
        if rest:
            console.print(f"{sum(len(v.warnings) for v in rest)} warning(s) about {len(rest)} provider(s) (stale, undated "
                          "or superseded texts, secondary sources): `--explain ID` or `--json` lists them", markup=False)
        console.print(f"[dim]{report.disclaimer} `relocate check --explain ID` shows every finding and its source.[/dim]")


def _provider_rows(ps: ProfileSet) -> list[dict[str, Any]]:
    return [{"id": p.id, "name": p.name, "kinds": list(p.kinds), "jurisdiction": p.country, "confidence": p.confidence,
             "categories_reviewed": sum(1 for c in p.clauses.values() if c.stance != "unknown"),
             "oldest_review": min(d.reviewed for d in p.documents.values()).isoformat(),
             "read_in_full": not p.unread_governing()}
            for p in sorted(ps.providers.values(), key=lambda p: p.id)]


def _show(ps: ProfileSet, pid: str) -> dict[str, Any]:
    p = ps.get(pid)
    return {
        "id": p.id, "name": p.name, "aliases": list(p.aliases), "kinds": list(p.kinds),
        "jurisdiction": {"country": p.country, "note": p.jurisdiction_note}, "confidence": p.confidence, "origin": p.origin,
        "documents": [{**d.__dict__, "reviewed": d.reviewed.isoformat(), "copy": d.copy.__dict__ if d.copy else None}
                      for d in p.documents.values()],
        "categories": {c: {"stance": p.clause(c).stance, "summary": p.clause(c).summary, "document": p.clause(c).document,
                           "section": p.clause(c).section} for c in ps.categories if not ps.categories[c].descriptor},
        "suspension": p.suspension.__dict__, "abuse": p.abuse.__dict__ if p.abuse else None,
        "governing": list(p.governing) if p.governing is not None else None,
        "moderation": p.moderation.__dict__ if p.moderation else None,
        "detect": {"env_prefixes": list(p.detect.env_prefixes), "aws_services": list(p.detect.aws_services)},
        "record": [event_dict(e) for e in p.record],
    }


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check_cmd(
        ctx: typer.Context,
        file: Optional[Path] = typer.Option(None, "-f", "--file", envvar="RELOCATE_FILE",
                                            help="relocate.yaml to read (default ./relocate.yaml); a file holding only "
                                                 "`app:` is enough. Without it, describe the app with the flags below."),
        provider: Optional[list[str]] = typer.Option(None, "--provider", metavar="ID,ID",
                                                     help="Only these providers (comma-separated or repeated)."),
        kind: Optional[list[str]] = typer.Option(None, "--kind", metavar="K,K",
                                                 help="Only providers offering one of these kinds, comma-separated or "
                                                      "repeated: compute, dns, cdn, sms, identity, ... (default: hosting kinds)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON document (has a format_version)."),
        fmt: str = typer.Option("table", "--format", help="table, markdown or json."),
        explain: Optional[str] = typer.Option(None, "--explain", metavar="ID",
                                              help="Every finding for one provider, with the dated copy each was read from."),
        content: Optional[list[str]] = typer.Option(None, "--content", metavar="A,B",
                                                    help="app.content categories, comma-separated (overrides the file)."),
        moderators: Optional[int] = typer.Option(None, "--moderators", metavar="N", help="app.moderation.moderators."),
        response_hours: Optional[float] = typer.Option(None, "--response-hours", metavar="H",
                                                       help="app.moderation.report_response_hours."),
        daily_active_users: Optional[int] = typer.Option(None, "--daily-active-users", metavar="N",
                                                         help="app.moderation.daily_active_users (the app's size)."),
        posts_per_day: Optional[int] = typer.Option(None, "--posts-per-day", metavar="N", help="app.moderation.posts_per_day."),
        automated_filtering: Optional[bool] = typer.Option(None, "--automated-filtering/--no-automated-filtering",
                                                           help="app.moderation.automated_filtering."),
        published_rules: Optional[bool] = typer.Option(None, "--published-rules/--no-published-rules",
                                                       help="app.moderation.published_rules."),
        notice_channel: Optional[bool] = typer.Option(None, "--notice-channel/--no-notice-channel",
                                                      help="app.moderation.notice_channel (a way to report content)."),
        uses: Optional[list[str]] = typer.Option(None, "--uses", metavar="V,W",
                                                 help="SaaS vendors the app depends on (twilio, okta, ...), comma-separated."),
        read_names: bool = typer.Option(False, "--read-names", help="Also list the NAMES of the SSM parameters under "
                                        "source.parameters (an AWS read; values are never read)."),
        discovered: Optional[Path] = typer.Option(None, "--discovered", metavar="FILE",
                                                  help="Output of `relocate discover --json`: vendors from its parameter "
                                                       "and secret names and the services it found (ses, route53, ...)."),
        profiles: Optional[Path] = options.PROFILES,
        today: Optional[str] = typer.Option(None, "--today", hidden=True, help="Evaluate as of this date (tests, CI)."),
        stale_days: int = typer.Option(STALE_AFTER_DAYS, "--stale-days",
                                       help="Warn when a document's copy was captured longer ago than this."),
    ) -> None:
        """Rank providers by whether their written terms and record accept this app, and check its vendor chain (not legal advice)."""
        with _edge():
            if fmt not in ("table", "markdown", "json"):
                raise ConfigError(f"--format: must be table, markdown or json (got {fmt!r})")
            quick = _Quick(content, moderators, response_hours, daily_active_users, posts_per_day, automated_filtering,
                           published_rules, notice_channel)
            inp = _input(file, quick)
            _check(inp, _split(provider), _split(kind), options.json_or_format(as_json, fmt, "table", ctx), explain, profiles, today, stale_days,
                   _split(uses), read_names, discovered)

    group = typer.Typer(help="Acceptable-use provider profiles: list, show, lint.", no_args_is_help=True)
    app.add_typer(group, name="profiles")

    @group.command("list")
    def list_cmd(
        profiles: Optional[Path] = options.PROFILES,
        categories: bool = typer.Option(False, "--categories", help="List the category vocabulary instead."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """List provider profiles (or categories)."""
        with _edge():
            ps = load_profiles(profiles, env=os.environ)
            if categories:
                rows: list[dict[str, Any]] = [{"id": c.id, "title": c.title, "definition": c.definition, "descriptor": c.descriptor,
                         "exposes": list(c.exposes)} for c in ps.categories.values()]
                if as_json:
                    print_json({"categories": rows})
                else:
                    for r in rows:
                        typer.echo(f"{r['id']:<28} {r['definition']}")
                return
            rows = _provider_rows(ps)
            if as_json:
                print_json({"providers": rows})
                return
            for r in rows:
                typer.echo(f"{r['id']:<16} {r['name'][:40]:<40} {r['jurisdiction']}  {r['confidence']:<6} "
                           f"{r['categories_reviewed']:>2} categories  {'read in full' if r['read_in_full'] else 'read in part'}"
                           f"  reviewed {r['oldest_review']}  {', '.join(r['kinds'])}")

    @group.command("show")
    def show_cmd(
        provider_id: str = typer.Argument(..., metavar="ID"),
        profiles: Optional[Path] = options.PROFILES,
    ) -> None:
        """Show one provider profile as JSON."""
        with _edge():
            print_json(_show(load_profiles(profiles, env=os.environ), provider_id))

    @group.command("lint")
    def lint_cmd(directory: Optional[Path] = typer.Argument(None, metavar="[DIR]", help="Default: the shipped profiles.")) -> None:
        """Validate a profiles directory; every error is listed, path-qualified. Exit 2 on any error."""
        with _edge():
            ps, errors = lint_dir(directory)
            for e in errors:
                typer.echo(e)
            for w in (w for p in ps.providers.values() for w in lint_warnings(p)):
                typer.echo(f"warning: {w}")
            if errors:
                typer.echo(f"relocate: error: {len(errors)} profile error(s)", err=True)
                _exit(ExitCode.USAGE)
            typer.echo(f"ok: {len(ps.providers)} provider profile(s), {len(ps.categories)} categories")
