"""Rendering, kept apart from logic: rich tables on a terminal, plain text otherwise."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from relocate.cli.jsondoc import print_json as print_json  # re-exported: render.print_json
from relocate.execute.runner import MoveReport
from relocate.execute.verify import VerifyReport
from relocate.plan.build import human_bytes, left_out_message
from relocate.plan.model import Plan


def stdout_console() -> Console:
    # Off a terminal (CI logs, pipes) rich would assume 80 columns and fold every path.
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    return console


def stderr_console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)




def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def estimate_text(p: Plan) -> str:
    """The estimate: a range when a probe measured it (`plan --probe`), else the point."""
    r = p.estimate_range
    return f"{_duration(r['low_s'])}-{_duration(r['high_s'])}" if r else _duration(p.est_seconds)


def egress_line(e: dict[str, Any]) -> str:
    """The egress estimate: the total, then each source region's share (AWS bills by source region)."""
    rows = e.get("by_region") or []
    parts = [f"{r['region']} {human_bytes(r['bytes'])} {r['cost']:.2f}"
             + (f" at {r['rates_region']} rates" if r["rates_region"] != r["region"] else "")
             + (f" ({r['note']})" if r.get("note") else "") for r in rows]
    stale = f"; WARNING: {e['stale_note']}" if e.get("rates_stale") else ""
    return (f"AWS egress for {human_bytes(e['bytes'])}: about {e['cost']:.2f} {e['currency']} "
            f"({e['cost_after_free_allowance']:.2f} if the {e['free_gb']:g} GB monthly free allowance is unused); "
            f"by source region: {'; '.join(parts) or 'nothing to send'}; rates as of {e['as_of']} from {e['source']}{stale}. "
            f"{e.get('exit_waiver', '')}")


def _dir_mode_fix(change: str) -> str:
    """An env step's directory-mode change (kinds/env.py: `set directory D to mode M (it is
    N; target.env_dir_mode)`), or ""."""
    at = change.find("set directory ")
    return change[at:] if at >= 0 else ""


def _env_copy(todo: int, change: str, fix: str) -> str:
    """An env row's "to copy": the parameters and secrets written, or only the directory's mode."""
    if change.startswith("write "):
        return f"{todo} parameter(s)/secret(s)" + ("; directory mode" if fix else "")
    return "directory mode only (file unchanged)" if fix else f"{todo} parameter(s)/secret(s)"


def plan(console: Console, p: Plan) -> None:
    console.print(f"[bold]Plan[/bold] for {p.target}  (root {p.root})")
    if p.facts:
        f = p.facts
        free = human_bytes(f["free_bytes"]) if f.get("free_bytes") is not None else "?"
        console.print(f"target: {f.get('distro') or f.get('os')}, login {f.get('user')}, {free} free at {f.get('existing')}")
    table = Table(title="Steps", show_lines=False)
    for col in ("step", "from", "to (under root)", "items", "size", "to copy", "est."):
        table.add_column(col, overflow="fold")
    dir_modes: list[str] = []  # env steps' directory-mode changes, said under the table (README, target.env_dir_mode)
    for s in p.steps:
        fix = _dir_mode_fix(s.change) if s.kind == "env" else ""
        if fix:
            dir_modes.append(f"{s.dest}: {fix}")
        copy = (f"{s.todo_count} ({human_bytes(s.todo_bytes)})" if s.kind == "s3" else "check" if s.kind == "verify"
                else "nothing to do" if not s.todo_count
                else _env_copy(s.todo_count, s.change, fix) if s.kind == "env"
                else s.detail if s.kind == "prepare"  # the package names, not only how many
                else f"{s.todo_count} path(s) ({human_bytes(s.todo_bytes)})" if s.kind == "hostfiles"
                else (f"{s.todo_count} tables" if s.todo_count else s.detail) if s.kind == "databases" else str(s.todo_count))
        # every step whose bytes the total counts shows them (the rows add up to the total)
        size = human_bytes(s.bytes) if s.kind in ("s3", "databases", "hostfiles") or s.bytes else "-"
        table.add_row(s.kind, s.source, s.dest, str(s.count), size, copy, _duration(s.est_seconds))
    console.print(table)
    for line in dir_modes:
        console.print(f"env file {line}", markup=False, soft_wrap=True)
    console.print(f"total {human_bytes(p.total_bytes)}, to copy {human_bytes(p.todo_bytes)}, estimated {estimate_text(p)} "
                  f"at {p.estimate_basis}")
    if p.egress:
        console.print(egress_line(p.egress), markup=False)
    if p.schedule:
        sched = p.schedule
        console.print(f"deadline {sched['deadline']}: projected finish {sched['projected_finish']}, in this order:", markup=False)
        for slot in sched["steps"]:
            if slot.get("left"):  # `move --deadline` does not start it (plan/deadline.py may_start)
                console.print(f"  LEFT {slot['priority']:<8} {slot['step_id']}  not started: left for a later run "
                              f"(it would finish {slot['finish']})", markup=False)
            else:
                console.print(f"  {'ok  ' if slot['fits'] else 'MISS'} {slot['priority']:<8} {slot['step_id']}  finishes {slot['finish']}", markup=False)
    if p.verdict:
        v = p.verdict
        lean = f" (leaning {v.leaning})" if v.leaning else ""
        waived = f"; waived (--accept-risk): {', '.join(v.waived)}" if v.waived else ""
        console.print(f"acceptable use at {v.name}: [bold]{v.verdict}{lean}[/bold] (score {v.score}){escape(waived)}; "
                      f"providers whose terms accept this app: {', '.join(v.accepting) or 'none found'}")
        for d in v.chain:
            ok = [a["provider"] for a in d["alternatives"] if a["verdict"] == "accept"]
            console.print(f"  vendor {d['kind']}: {d['current']} -> {d['verdict']} [{', '.join(d['evidence'])}]; "
                          f"accepting instead: {', '.join(ok) or 'none'}", markup=False)
        console.print(f"[dim]{v.disclaimer}[/dim]")
    # The DNS cutover checklist is a to-do list in order, not a warning: shown on its own.
    warnings = [w for w in p.warnings if w.code != "cutover"]
    if warnings:
        console.print("[yellow]Warnings[/yellow]")
        for w in warnings:
            console.print(f"  - {w.message}", markup=False)
    cutover = [w for w in p.warnings if w.code == "cutover"]
    if cutover:
        console.print("[bold]Cutover checklist[/bold] (DNS)")
        for i, w in enumerate(cutover, 1):
            console.print(f"  {i}. {w.message}", markup=False)
    if p.blockers:
        console.print("[red bold]Blockers[/red bold]")
        for b in p.blockers:
            console.print(f"  - [{b.code}] {b.message}", markup=False)
    else:
        console.print("[green]Ready:[/green] nothing blocks the move.")


def verify(console: Console, r: VerifyReport, *, against: str | None = None) -> None:
    """`against`: what the target was compared with, for the last line (default: the snapshot)."""
    how = f" ({r.checked_on_arrival} hashed by the target as they landed, now checked by size)" if r.checked_on_arrival else ""
    # soft_wrap: a path is printed whole on one line (copyable, greppable), never folded
    # at the console's width (issue 13).
    console.print(f"verify: {r.matched} matching{how}, {len(r.missing)} missing, {len(r.differing)} differing"
                  + (f", {len(r.failed)} never written (the move could not write them)" if r.failed else ""))
    for path in r.missing[:20]:
        console.print(f"  missing   {path}", markup=False, soft_wrap=True)
    for path in r.differing[:20]:
        console.print(f"  differing {path}", markup=False, soft_wrap=True)
    for item in r.failed[:20]:
        console.print(f"  failed    {item['path']}: {item['error']}", markup=False, soft_wrap=True)
    for path, status in r.env.items():
        console.print(f"  env file {path}: {status}", markup=False, soft_wrap=True)
    for c in r.checks:
        console.print(f"  {'ok ' if c.ok else 'BAD'} {c.label}" + (f": {c.detail}" if c.detail else ""), markup=False, soft_wrap=True)
    for out in r.left_out:
        console.print(f"  not moved: {left_out_message(out)}", markup=False, soft_wrap=True)
    console.print(f"[green]OK: the target matches {escape(against or 'the snapshot')}.[/green]" if r.ok
                  else "[red]Differences found.[/red]")


def move(console: Console, r: MoveReport) -> None:
    if r.nothing_done:
        console.print(f"nothing to do: {r.objects_skipped} objects already on the target and verified"
                      + (f"; env files unchanged: {', '.join(r.env_unchanged)}" if r.env_unchanged else "")
                      + (f"; unchanged: {', '.join(r.unchanged)}" if r.unchanged else "")
                      + ("" if r.snapshot else "; no new snapshot"), markup=False)
        if r.snapshot:  # none yet, or the latest did not record the target as it is: a fresh one (runner.py)
            console.print(f"snapshot: {r.snapshot} ({r.snapshot_why})", markup=False)
            if r.verify:
                verify(console, r.verify)
        return
    console.print(f"moved {r.objects_sent} objects ({human_bytes(r.bytes_sent)}), {r.objects_skipped} already there")
    for path in r.env_written:
        console.print(f"wrote env file {path} (mode 0600)", markup=False)
    for w in r.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    for f in r.failed:  # a line may name an object's key: printed as it is, whole ("[draft].pdf" is no markup)
        console.print(f"[red]failed:[/red] {escape(f)}", soft_wrap=True)
    for item in r.left:
        console.print(f"left for a later run: {item}", markup=False)
    if r.snapshot:
        console.print(f"snapshot: {r.snapshot}", markup=False)
    if r.verify:
        verify(console, r.verify)
