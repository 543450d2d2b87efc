"""`plan --format markdown`: renders as Markdown (parsed back) and stays under the comment cap."""

from __future__ import annotations

from markdown_it import MarkdownIt

from relocate.cli.markdown import LIMIT, plan_markdown
from relocate.plan import deadline
from relocate.plan.model import Finding, Plan, Step

NASTY = "a|b *c* _d_ `e` [f](g) <h> #i \\j"


def _plan(n_steps: int, n_warnings: int) -> Plan:
    steps = [Step(id=f"s3:bucket-{i}/", kind="s3", source=f"s3://bucket-{i}/{NASTY}", dest=f"data/b{i}", count=i,
                  bytes=i * 1000, todo_count=i, todo_bytes=i * 1000, est_seconds=1.0, priority=("critical", "normal", "bulk")[i % 3])
             for i in range(n_steps)]
    steps.append(Step(id="verify", kind="verify", source="manifest", dest=".", est_seconds=5))
    return Plan(created_at="2021-01-10T12:00:00Z", config_path="relocate.yaml", config_text="", target="deploy@203.0.113.10:22/srv/app",
                root="/srv/app", fingerprint={}, fingerprint_digest="x", steps=steps,
                blockers=[Finding("disk", f"not enough disk {NASTY}")],
                warnings=[Finding("empty-source", f"warning {i} {NASTY}") for i in range(n_warnings)],
                estimate_basis="conservative defaults (20 MB/s, 4 ms per object)",
                egress={"bytes": 10 << 30, "cost": 0.9, "cost_after_free_allowance": 0.0, "free_gb": 100, "currency": "USD",
                        "rates_region": "us-east-1", "as_of": "2024-11-01", "source": "relocate/data/egress_rates.yaml", "note": ""})


def _tables(text: str) -> list[list[list[str]]]:
    """Each table as rows of cell texts, via a real CommonMark(+tables) parser."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables: list[list[list[str]]] = []
    row: list[str] | None = None
    for i, t in enumerate(tokens):
        if t.type == "table_open":
            tables.append([])
        elif t.type == "tr_open":
            row = []
        elif t.type in ("th_open", "td_open"):
            inline = tokens[i + 1]
            assert row is not None
            row.append("".join(c.content for c in inline.children or [] if c.type in ("text", "text_special")))
        elif t.type == "tr_close":
            tables[-1].append(row or [])
    return tables


def _inline_texts(text: str) -> list[str]:
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    return ["".join(c.content for c in t.children or [] if c.type in ("text", "text_special")) for t in tokens if t.type == "inline"]


def test_thousands_of_items_stay_under_the_cap_and_parse_back() -> None:
    plan = _plan(5000, 3000)
    deadline.apply(plan, 1_610_300_000.0, 1_610_300_000.0 + 1000)  # about 1000 steps fit
    text = plan_markdown(plan)
    assert len(text) <= LIMIT
    tables = _tables(text)
    assert len(tables) == 1
    header, *rows = tables[0]
    assert header == ["step", "priority", "from", "to", "items", "to copy", "est.", "deadline"]
    assert 100 < len(rows) < 5001
    # cells read back exactly, punctuation and all (escaping did not break the table)
    assert rows[0][2] == f"s3://bucket-0/{NASTY}" and rows[0][1] == "critical"
    assert all(len(r) == 8 for r in rows)
    texts = _inline_texts(text)
    assert any(f"{5001 - len(rows)} more steps not shown" in t for t in texts)  # 5000 s3 + verify
    assert any("more warnings not shown" in t for t in texts)
    assert any(t == f"[disk] not enough disk {NASTY}" for t in texts)  # blockers always shown
    assert any("projected finish" in t for t in texts) and any("AWS egress" in t for t in texts)


def test_small_plan_is_shown_whole() -> None:
    text = plan_markdown(_plan(3, 2))
    (table,) = _tables(text)
    assert len(table) == 1 + 4  # header, 3 s3 steps, verify
    assert "not shown" not in text
    assert [t for t in _inline_texts(text) if t.startswith("warning ")] == [f"warning {i} {NASTY}" for i in range(2)]
