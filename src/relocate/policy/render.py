"""Plain-text and Markdown renderings of verdicts. Pure: strings in, strings out.

The CLI adds colour and tables on a terminal; these forms are what CI logs, issue
comments and `--format markdown` get, and what tests read.
"""

from __future__ import annotations

from relocate.policy.schema import Provider
from relocate.policy.verdict import DependencyRisk, Finding, ProviderVerdict, Report


def cite(f: Finding) -> str:
    if f.document is None:
        return "no source: terms not reviewed"
    return f"{f.document.title}, {f.section} <{f.document.url}> (reviewed {f.document.reviewed})"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def top_line(v: ProviderVerdict, n: int = 2) -> str:
    shown = [f for f in v.top_findings(n) if f.effect != "note"]
    return "; ".join(f"{f.id} ({f.effect}{', waived' if f.waived else ''})" for f in shown) or "no concerns found in the terms read"


def alternatives(d: DependencyRisk) -> str:
    accepting = [p for p, verdict, _ in d.alternatives if verdict == "accept"]
    if accepting:
        return ", ".join(accepting)
    conditional = [p for p, verdict, _ in d.alternatives if verdict == "conditional"][:3]
    return "none accept" + (f"; conditional: {', '.join(conditional)}" if conditional else "")


def markdown(report: Report) -> str:
    out = ["# Acceptable-use check", "", f"> {report.disclaimer}", ""]
    out += [f"- {n}" for n in report.app_notes] + ([""] if report.app_notes else [])
    out += ["| # | provider | verdict | score | kinds | top findings |", "|---|---|---|---|---|---|"]
    for i, v in enumerate(report.verdicts, 1):
        out.append(f"| {i} | {_md(v.name)} (`{v.provider}`) | **{v.verdict}** | {v.score} | {', '.join(v.kinds)} | {_md(top_line(v))} |")
    if report.dependencies:
        out += ["", "## Dependencies", "", "| kind | current | verdict | at risk | alternatives |", "|---|---|---|---|---|"]
        for d in report.dependencies:
            out.append(f"| {d.kind} | {_md(d.current)} | {d.verdict} | {'yes' if d.at_risk else 'no'}: {_md(d.reason)} | {alternatives(d)} |")
    for v in report.verdicts:
        if v.verdict in ("reject", "conditional"):
            out += ["", f"## {v.name}: {v.verdict}", ""]
            out += [f"- `{f.id}` **{f.effect}**: {_md(f.summary)} Why: {_md(f.why)}. Source: {_md(cite(f))}"
                    for f in v.findings if f.effect in ("reject", "conditional")]
    warnings = [w for v in report.verdicts for w in v.warnings]
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {_md(w)}" for w in warnings]
    return "\n".join(out) + "\n"


def explain(v: ProviderVerdict, p: Provider) -> list[str]:
    """Every finding for one provider, with its citation: `relocate check --explain ID`."""
    out = [f"{v.name} ({v.provider}): {v.verdict}, score {v.score}, profile confidence {v.confidence}",
           f"jurisdiction: {p.country}" + (f" ({p.jurisdiction_note})" if p.jurisdiction_note else ""), ""]
    for f in sorted(v.findings, key=lambda f: ("reject", "unknown", "conditional", "risk", "note").index(f.effect)):
        out.append(f"[{f.effect}{', waived' if f.waived else ''}] {f.id}" + (f" (stance: {f.stance})" if f.stance else ""))
        out.append(f"    terms: {f.summary}")
        out.append(f"    why:   {f.why}")
        out.append(f"    source: {cite(f)}")
    if p.abuse:
        out += ["", f"abuse process: {p.abuse.summary}" + (f" Contact: {p.abuse.contact}" if p.abuse.contact else "")]
    if v.events:
        out += ["", "past enforcement against similar apps:"]
        out += [f"  {e.date} {e.target}: {e.what} <{e.source}>" for e in v.events]
    if v.warnings:
        out += ["", "warnings:"] + [f"  {w}" for w in v.warnings]
    out += ["", v.disclaimer]
    return out
