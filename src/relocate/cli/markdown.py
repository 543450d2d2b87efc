"""`relocate plan --format markdown`: the plan as a pull-request comment.

GitHub refuses comments over 65,536 characters, so the summary, blockers and the
deadline verdict always fit and the long lists (steps, warnings) are cut to the room
left, with a note saying how many were left out and where the full plan is.
"""

from __future__ import annotations

import re

from relocate.cli.render import _duration, egress_line, estimate_text
from relocate.plan.build import human_bytes
from relocate.plan.model import Plan

LIMIT = 65_000
_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-!|~])")


def esc(text: object) -> str:
    """Inline text that renders as itself: Markdown punctuation escaped, one line."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


class _Doc:
    def __init__(self, limit: int) -> None:
        self.lines: list[str] = []
        self.size = 0
        self.limit = limit

    def add(self, line: str = "") -> None:
        self.lines.append(line)
        self.size += len(line) + 1

    def fits(self, line: str, until: int) -> bool:
        return self.size + len(line) + 1 <= min(until, self.limit)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _capped(doc: _Doc, lines: list[str], until: int, what: str) -> None:
    """Add lines while the document stays under `until` characters (room is kept for what follows)."""
    for i, line in enumerate(lines):
        if not doc.fits(line, until):
            doc.add()
            doc.add(f"_{len(lines) - i} more {what} not shown (comment size limit); "
                    "the saved plan file (`relocate plan -o plan.json`) has them all._")
            return
        doc.add(line)


def plan_markdown(p: Plan, limit: int = LIMIT) -> str:
    doc = _Doc(limit)
    status = "**Ready**: nothing blocks the move." if p.ready else f"**Blocked**: {len(p.blockers)} blocker(s)."
    doc.add(f"## relocate plan for {esc(p.target)}")
    doc.add()
    doc.add(status)
    doc.add()
    doc.add(f"- total {esc(human_bytes(p.total_bytes))}, to copy {esc(human_bytes(p.todo_bytes))}, "
            f"estimated {esc(estimate_text(p))} at {esc(p.estimate_basis)}")
    if p.egress:
        doc.add(f"- {esc(egress_line(p.egress))}")
    if p.verdict:
        lean = f" (leaning {p.verdict.leaning})" if p.verdict.leaning else ""
        waived = f"; waived (--accept-risk): {', '.join(p.verdict.waived)}" if p.verdict.waived else ""
        doc.add(f"- acceptable use at {esc(p.verdict.name)}: **{esc(p.verdict.verdict)}{esc(lean)}** "
                f"(score {esc(p.verdict.score)}){esc(waived)}")
        for d in p.verdict.chain:
            ok = [a["provider"] for a in d["alternatives"] if a["verdict"] == "accept"]
            doc.add(f"- vendor {esc(d['kind'])}: {esc(d['current'])} **{esc(d['verdict'])}** ({esc(', '.join(d['evidence']))}); "
                    f"accepting instead: {esc(', '.join(ok) or 'none')}")
    if p.schedule:
        sched = p.schedule
        doc.add(f"- deadline {esc(sched['deadline'])}: projected finish {esc(sched['projected_finish'])}; "
                f"{len(sched['misses'])} step(s) miss it, {len(sched['critical_misses'])} critical")
    reserve = 2_000  # room for the truncation notes of the sections below
    if p.blockers:
        doc.add()
        doc.add("### Blockers")
        doc.add()
        _capped(doc, [f"- \\[{esc(b.code)}\\] {esc(b.message)}" for b in p.blockers], int(limit * 0.4), "blockers")
    rows = []
    for s in p.steps:
        fits = ""
        if p.schedule:
            slot = next((x for x in p.schedule["steps"] if x["step_id"] == s.id), None)
            fits = "" if slot is None else ("ok" if slot["fits"] else "**misses**")
        cells = [s.kind, s.priority or "-", s.source, s.dest, s.count, human_bytes(s.todo_bytes) if s.kind == "s3" else "-",
                 _duration(s.est_seconds)]
        rows.append("| " + " | ".join(esc(c) for c in cells) + (f" | {fits} |" if p.schedule else " |"))
    doc.add()
    doc.add(f"### Steps ({len(p.steps)})")
    doc.add()
    head = ["step", "priority", "from", "to", "items", "to copy", "est."] + (["deadline"] if p.schedule else [])
    doc.add("| " + " | ".join(head) + " |")
    doc.add("|" + "---|" * len(head))
    warn_room = min(reserve + sum(len(w.message) + 8 for w in p.warnings), limit // 5)
    _capped(doc, rows, limit - warn_room, "steps")
    if p.warnings:
        doc.add()
        doc.add(f"### Warnings ({len(p.warnings)})")
        doc.add()
        _capped(doc, [f"- {esc(w.message)}" for w in p.warnings], limit - 300, "warnings")
    return doc.text()
