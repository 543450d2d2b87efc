"""README's layout section matches the folders (issue 17): every package folder under
src/relocate is named there, and every folder named there exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layout(doc: str, heading: str) -> set[str]:
    text = (ROOT / doc).read_text()
    block = text[text.index(heading):]
    block = block[block.index("```\nsrc/relocate/"):]
    block = block[:block.index("\n```", 4)]
    return set(re.findall(r"^  ([a-z_]+/)", block, re.M))


def _folders() -> set[str]:
    return {p.name + "/" for p in (ROOT / "src" / "relocate").iterdir()
            if p.is_dir() and not p.name.startswith(("_", ".")) and p.name != "__pycache__"}


def test_readme_layout_names_every_folder() -> None:
    assert _layout("README.md", "## Development") == _folders()


def test_architecture_doc_names_every_folder() -> None:
    assert _layout("docs/architecture.md", "## Folders") == _folders()


def test_architecture_doc_names_every_kind_module() -> None:
    from relocate.kinds import MODULES

    doc = (ROOT / "docs" / "architecture.md").read_text()
    for name in MODULES:
        assert f"kinds/{name}.py" in doc, name
