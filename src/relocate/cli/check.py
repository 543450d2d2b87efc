"""`relocate check` and `relocate profiles list|show|lint`: which providers' terms accept this app.

Thin: read the app section, call relocate.policy, render. Errors are mapped to
exit codes here as well as in `main`, so the commands behave the same when
driven through Typer directly (tests, embedding).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from relocate.cli.jsondoc import print_json
from relocate.errors import ConfigError, ExitCode, RelocateError
from relocate.policy import render
from relocate.policy.app import AppProfile, app_from_parts
from relocate.policy.engine import STALE_AFTER_DAYS, check, verdict_for
from relocate.policy.profiles import ProfileSet, lint_dir, load_profiles

_PROFILES_HELP = "Extra profiles directory (overrides shipped profiles by id); $RELOCATE_PROFILES also works."


def _exit(code: ExitCode) -> None:
    # SystemExit, not typer.Exit: `relocate.cli.main` runs click with standalone_mode=False,
    # where click swallows typer.Exit and returns its code instead of exiting with it.
    sys.exit(int(code))


@contextlib.contextmanager
def _edge() -> Iterator[None]:
    """One line on stderr and the stable exit code for every expected error."""
    try:
        yield
    except RelocateError as exc:
        typer.echo(f"relocate: error: {exc.line()}", err=True)
        _exit(exc.exit_code)


def _read_app(path: Path) -> tuple[AppProfile, str | None]:
    """The `app:` section and target.provider of relocate.yaml, via the shared config loader."""
    from relocate.config import load_config

    config = load_config(path)
    app = config.app
    return app_from_parts(list(app.content), app.moderation, dict(app.dependencies)), config.provider


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


def _table(report_verdicts: list, console: Console) -> None:
    table = Table(title="Acceptable use, ranked")
    for col in ("#", "provider", "verdict", "score", "kinds", "top findings"):
        table.add_column(col, overflow="fold")
    for i, v in enumerate(report_verdicts, 1):
        table.add_row(str(i), v.provider, f"[{_COLOUR[v.verdict]}]{v.verdict}[/]", str(v.score), ", ".join(v.kinds),
                      render.top_line(v))
    console.print(table)


def _check(file: Path, provider: list[str], kind: list[str], as_json: bool, fmt: str, explain: Optional[str],
           profiles: Optional[Path], today: Optional[str], stale_days: int) -> None:
    if fmt not in ("table", "markdown", "json"):
        raise ConfigError(f"--format: must be table, markdown or json (got {fmt!r})")
    app, target = _read_app(file)
    profileset = load_profiles(profiles)
    day = _today(today)
    if explain is not None:
        v = verdict_for(explain, app, profileset, day)
        if as_json or fmt == "json":
            print_json(v.to_dict())
        else:
            for line in render.explain(v, profileset.get(explain)):
                typer.echo(line)
        return
    report = check(app, profileset, today=day, providers=provider, kinds=kind, stale_after_days=stale_days)
    if as_json or fmt == "json":
        print_json(report.to_dict())
    elif fmt == "markdown":
        typer.echo(render.markdown(report), nl=False)
    else:
        console = _console()
        for note in report.app_notes:
            console.print(f"[yellow]note:[/] {note}")
        _table(list(report.verdicts), console)
        if target is not None:
            tv = verdict_for(target, app, profileset, day)
            console.print(f"target.provider {target}: [bold]{tv.verdict}[/bold] (score {tv.score}); "
                          f"`relocate check --explain {tv.provider}` for every finding")
        for d in report.dependencies:
            mark = "[red]at risk[/]" if d.at_risk else "[green]ok[/]"
            console.print(f"dependency {d.kind}: {d.current} -> {mark} ({d.reason}); alternatives: {render.alternatives(d)}")
        for w in (w for v in report.verdicts for w in v.warnings):
            console.print(f"warning: {w}", markup=False)
        console.print(f"[dim]{report.disclaimer} `relocate check --explain ID` shows every finding and its source.[/dim]")


def _provider_rows(ps: ProfileSet) -> list[dict]:
    return [{"id": p.id, "name": p.name, "kinds": list(p.kinds), "jurisdiction": p.country, "confidence": p.confidence,
             "categories_reviewed": sum(1 for c in p.clauses.values() if c.stance != "unknown"),
             "oldest_review": min(d.reviewed for d in p.documents.values()).isoformat()}
            for p in sorted(ps.providers.values(), key=lambda p: p.id)]


def _show(ps: ProfileSet, pid: str) -> dict:
    p = ps.get(pid)
    return {
        "id": p.id, "name": p.name, "aliases": list(p.aliases), "kinds": list(p.kinds),
        "jurisdiction": {"country": p.country, "note": p.jurisdiction_note}, "confidence": p.confidence, "origin": p.origin,
        "documents": [{**d.__dict__, "reviewed": d.reviewed.isoformat()} for d in p.documents.values()],
        "categories": {c: {"stance": p.clause(c).stance, "summary": p.clause(c).summary, "document": p.clause(c).document,
                           "section": p.clause(c).section} for c in ps.categories if not ps.categories[c].descriptor},
        "suspension": p.suspension.__dict__, "abuse": p.abuse.__dict__ if p.abuse else None,
        "enforcement": [e.__dict__ for e in p.enforcement],
    }


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check_cmd(
        file: Path = typer.Option(Path("relocate.yaml"), "-f", "--file", envvar="RELOCATE_FILE", help="relocate.yaml to read."),
        provider: Optional[list[str]] = typer.Option(None, "--provider", help="Only this provider (repeatable)."),
        kind: Optional[list[str]] = typer.Option(None, "--kind", help="Only providers offering this kind: compute, dns, cdn, ..."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
        fmt: str = typer.Option("table", "--format", help="table, markdown or json."),
        explain: Optional[str] = typer.Option(None, "--explain", metavar="ID", help="Every finding for one provider."),
        profiles: Optional[Path] = typer.Option(None, "--profiles", help=_PROFILES_HELP),
        today: Optional[str] = typer.Option(None, "--today", hidden=True, help="Evaluate as of this date (tests, CI)."),
        stale_days: int = typer.Option(STALE_AFTER_DAYS, "--stale-days", help="Warn when a document was reviewed longer ago."),
    ) -> None:
        """Rank providers by whether their written terms accept this app (not legal advice)."""
        with _edge():
            _check(file, provider or [], kind or [], as_json, fmt, explain, profiles, today, stale_days)

    group = typer.Typer(help="Acceptable-use provider profiles: list, show, lint.", no_args_is_help=True)
    app.add_typer(group, name="profiles")

    @group.command("list")
    def list_cmd(
        profiles: Optional[Path] = typer.Option(None, "--profiles", help=_PROFILES_HELP),
        categories: bool = typer.Option(False, "--categories", help="List the category vocabulary instead."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """List provider profiles (or categories)."""
        with _edge():
            ps = load_profiles(profiles)
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
                typer.echo(f"{r['id']:<14} {r['name']:<40} {r['jurisdiction']}  {r['confidence']:<6} "
                           f"{r['categories_reviewed']:>2} categories  reviewed {r['oldest_review']}  {', '.join(r['kinds'])}")

    @group.command("show")
    def show_cmd(
        provider_id: str = typer.Argument(..., metavar="ID"),
        profiles: Optional[Path] = typer.Option(None, "--profiles", help=_PROFILES_HELP),
    ) -> None:
        """Show one provider profile as JSON."""
        with _edge():
            print_json(_show(load_profiles(profiles), provider_id))

    @group.command("lint")
    def lint_cmd(directory: Optional[Path] = typer.Argument(None, metavar="[DIR]", help="Default: the shipped profiles.")) -> None:
        """Validate a profiles directory; every error is listed, path-qualified. Exit 2 on any error."""
        with _edge():
            ps, errors = lint_dir(directory)
            for e in errors:
                typer.echo(e)
            if errors:
                typer.echo(f"relocate: error: {len(errors)} profile error(s)", err=True)
                _exit(ExitCode.USAGE)
            typer.echo(f"ok: {len(ps.providers)} provider profile(s), {len(ps.categories)} categories")
