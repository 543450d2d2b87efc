"""The relocate.yaml shown in README.md (the full example and each section's fragment,
merged into it) passes the same strict validation as a user's file."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from relocate.config import parse_config

README = Path(__file__).resolve().parents[1] / "README.md"


def _merge(base: dict, frag: dict) -> None:
    for key, value in frag.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def test_readme_yaml_examples_validate(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 3, "README should show relocate.yaml and its sections"
    full = yaml.safe_load(blocks[0])
    assert full.get("version") == 1, "the first yaml block is the complete example"
    for block in blocks[1:]:
        _merge(full, yaml.safe_load(block))
    config = parse_config(yaml.safe_dump(full, sort_keys=False), tmp_path / "relocate.yaml", env={})
    # each section the README documents made it through validation
    assert config.s3 and config.parameters and config.secrets
    for section in ("databases", "hosts", "dns"):
        assert config.data["source"][section], section
    assert config.data["deploy"]["runtime"] == "command"
