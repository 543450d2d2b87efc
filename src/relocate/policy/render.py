"""Plain-text and Markdown renderings of verdicts. Pure: strings in, strings out.

The CLI adds colour and tables on a terminal; these forms are what CI logs, issue
comments and `--format markdown` get, and what tests read.
"""

from __future__ import annotations

from relocate.policy.schema import Provider
from relocate.policy.verdict import EFFECTS, DependencyRisk, Finding, ProviderVerdict, Report


def cite(f: Finding) -> str:
    if f.document is None:
        if f.events:
            return "; ".join(f"{e.date} {e.kind} <{e.source}> ({e.source_kind})" for e in f.events)
        return "no source: terms not reviewed"
    d = f.document
    dated = f", dated {d.text_date}" if d.text_date else ", undated"
    where = f.section or ("no clause found" + (" (read in full)" if d.complete else " in the parts read")
                          if f.stance in ("not_stated", "unknown") else "no section recorded")
    return f"{d.title}{dated}, {where} <{d.url or 'no URL recorded'}>"


def copy_line(f: Finding) -> str:
    """Which copy of the document the finding was read from, and whether that copy was read in full."""
    if f.document is None:
        return "no document"
    return f.document.reading() + ("" if f.document.kind == "primary" else " (secondary source, not the provider's text)")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def top_line(v: ProviderVerdict, n: int = 2) -> str:
    shown = [f for f in v.top_findings(n) if f.effect != "note"]
    return "; ".join(f"{f.id} ({f.effect}{', waived' if f.waived else ''})" for f in shown) or "no concerns found in the terms read"


def alternatives(d: DependencyRisk) -> str:
    accepting = d.accepting()
    if accepting:
        return ", ".join(accepting)
    conditional = [p for p, verdict, _ in d.alternatives if verdict == "conditional"][:3]
    return "none accept" + (f"; conditional: {', '.join(conditional)}" if conditional else "")


def record_lines(v: ProviderVerdict) -> list[str]:
    """The record as it bears on this app: one line per incident, strongest first."""
    out = []
    for i in v.incidents:
        out.append(f"{i.describe()} [{i.mark}]")
    return out


def chain_line(d: DependencyRisk) -> str:
    ev = ", ".join(d.evidence) if d.evidence else "declared"
    return f"{d.kind}: {d.current} -> {d.verdict}{' (at risk)' if d.at_risk else ''} [{ev}]; accepting instead: {alternatives(d)}"


def target_line(v: ProviderVerdict) -> str:
    """relocate.yaml's target.provider under the ranking (table and markdown alike)."""
    return f"target.provider {v.provider}: {v.label} (score {v.score}); `relocate check --explain {v.provider}` for every finding"


def markdown(report: Report, target: ProviderVerdict | None = None) -> str:
    """What the table output shows, as Markdown: the ranking, target.provider's verdict, the
    vendor chain, each provider's findings that move its verdict and its record, every warning."""
    out = ["# Acceptable-use check", "", f"> {report.disclaimer}", ""]
    out += [f"- {n}" for n in report.app_notes] + ([""] if report.app_notes else [])
    out += ["| # | provider | verdict | score | kinds | top findings |", "|---|---|---|---|---|---|"]
    for i, v in enumerate(report.verdicts, 1):
        out.append(f"| {i} | {_md(v.name)} (`{v.provider}`) | **{v.label}** | {v.score} | {', '.join(v.kinds)} | {_md(top_line(v))} |")
    if target is not None:
        out += ["", _md(target_line(target))]
    if report.dependencies:
        out += ["", "## Vendor chain", "", "| kind | vendor | verdict | found from | alternatives that accept |",
                "|---|---|---|---|---|"]
        for d in report.dependencies:
            out.append(f"| {d.kind} | {_md(d.current)} | {d.verdict}{' (at risk)' if d.at_risk else ''}: {_md(d.reason)} | "
                       f"{_md(', '.join(d.evidence))} | {_md(alternatives(d))} |")
    for v in report.verdicts:
        rec = record_lines(v)
        if v.verdict in ("reject", "conditional") or rec:  # the table lists every provider's record
            out += ["", f"## {_md(v.name)}: {v.label}", ""]
            for f in v.findings:
                if f.effect in ("reject", "conditional") and not f.waived:
                    quote = f' "{_md(f.quote)}"' if f.quote else ""
                    out.append(f"- `{f.id}` **{f.effect}**: {_md(f.summary)}{quote} Why: {_md(f.why)}. Source: {_md(cite(f))}")
            if rec:
                out += ["", "Record:", ""] + [f"- {_md(r)}" for r in rec]
    warnings = [w for v in report.verdicts for w in v.warnings]
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {_md(w)}" for w in warnings]
    return "\n".join(out) + "\n"


def explain(v: ProviderVerdict, p: Provider) -> list[str]:
    """Every finding for one provider, with its citation and the copy it was read from: `check --explain ID`."""
    out = [f"{v.name} ({v.provider}): {v.label}, score {v.score}, profile confidence {v.confidence}",
           f"jurisdiction: {p.country}" + (f" ({p.jurisdiction_note})" if p.jurisdiction_note else ""),
           "governing documents: " + (", ".join(p.governing) if p.governing is not None else "not listed (v1 profile)"), ""]
    for f in sorted(v.findings, key=lambda f: EFFECTS.index(f.effect)):
        out.append(f"[{f.effect}{', waived' if f.waived else ''}] {f.id}" + (f" (stance: {f.stance})" if f.stance else ""))
        out.append(f"    terms: {f.summary}")
        if f.quote:
            out.append(f'    quote: "{f.quote}"')
        out.append(f"    why:   {f.why}")
        out.append(f"    source: {cite(f)}")
        out.append(f"    copy:  {copy_line(f)}")
    if v.moderation is not None:
        m = v.moderation
        out += ["", f"moderation: {'adequate' if m.adequate else 'short'} for {v.name} "
                    f"(expects {', '.join(m.expects)}; {m.cure_source}: {m.cure_hours:g} h)"]
        out += [f"  - {s}" for s in m.shortfalls]
    if p.abuse:
        out += ["", f"abuse process: {p.abuse.summary}" + (f" Contact: {p.abuse.contact}" if p.abuse.contact else "")]
    if v.incidents:
        out += ["", "record (incidents concerning apps like this one):"] + [f"  {r}" for r in record_lines(v)]
        out += [f"    {e.date} {e.kind} {e.target}: {e.what} <{e.source}> ({e.source_kind})" for e in v.events]
    if v.warnings:
        out += ["", "warnings:"] + [f"  {w}" for w in v.warnings]
    out += ["", v.disclaimer]
    return out
