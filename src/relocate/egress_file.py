"""Read the AWS data-transfer-out rates file (the shipped one, or `--egress-rates FILE`);
plan/egress.py, which prices with it, stays pure."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from relocate.errors import ConfigError
from relocate.plan.egress import EgressRates, parse_rates
from relocate.schema import SafeLoader


def load_rates(path: Path | None = None) -> EgressRates:
    if path is None:
        text = resources.files("relocate").joinpath("data/egress_rates.yaml").read_text(encoding="utf-8")
        source = "relocate/data/egress_rates.yaml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--egress-rates {path}: cannot read ({exc.strerror or exc})") from None
        source = str(path)
    try:
        doc = yaml.load(text, Loader=SafeLoader)  # noqa: S506 (the safe loader, libyaml's when built)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_rates(doc, source)
