"""What moving the data out will cost in AWS data-transfer-out fees, at published rates.

The rates live in a data file with its date (data/egress_rates.yaml) so updating them
is an edit, not a release note; `--egress-rates FILE` replaces them. Computing the
estimate is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from relocate.errors import ConfigError

GB = 1024**3  # AWS bills data transfer per GB of 2^30 bytes


@dataclass(frozen=True)
class EgressRates:
    as_of: str
    currency: str
    free_gb: float
    default: str
    regions: dict[str, tuple[tuple[float | None, float], ...]]  # region -> ((up_to_gb | None, per_gb), ...)
    source: str  # file it came from, shown so the reader knows which numbers they see


def _tiers(raw: Any, where: str) -> tuple[tuple[float | None, float], ...]:
    if not isinstance(raw, dict) or not isinstance(raw.get("tiers"), list) or not raw["tiers"]:
        raise ConfigError(f"{where}: needs `tiers: [[up_to_gb, usd_per_gb], ...]`")
    out: list[tuple[float | None, float]] = []
    for i, tier in enumerate(raw["tiers"]):
        ok = (isinstance(tier, list) and len(tier) == 2 and (tier[0] is None or isinstance(tier[0], (int, float)))
              and isinstance(tier[1], (int, float)) and tier[1] >= 0)
        if not ok:
            raise ConfigError(f"{where}.tiers[{i}]: must be [up_to_gb or null, usd_per_gb]")
        out.append((None if tier[0] is None else float(tier[0]), float(tier[1])))
    if out[-1][0] is not None:
        raise ConfigError(f"{where}.tiers: the last tier must be [null, usd_per_gb] (the rest)")
    return tuple(out)


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
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("regions"), dict) or not doc["regions"]:
        raise ConfigError(f"{source}: needs `as_of`, `regions: {{REGION: {{tiers: ...}}}}` (see relocate/data/egress_rates.yaml)")
    if not doc.get("as_of"):
        raise ConfigError(f"{source}: needs `as_of: YYYY-MM-DD` (the date the rates were read)")
    regions = {str(k): _tiers(v, f"{source}: regions.{k}") for k, v in doc["regions"].items()}
    default = str(doc.get("default") or next(iter(regions)))
    if default not in regions:
        raise ConfigError(f"{source}: default: {default} is not one of the regions")
    free = doc.get("free_gb", 0)
    if not isinstance(free, (int, float)) or free < 0:
        raise ConfigError(f"{source}: free_gb must be a number >= 0")
    return EgressRates(str(doc["as_of"]), str(doc.get("currency") or "USD"), float(free), default, regions, source)


def tiered_cost(gb: float, tiers: tuple[tuple[float | None, float], ...]) -> float:
    cost, floor = 0.0, 0.0
    for up_to, rate in tiers:
        top = gb if up_to is None else min(gb, up_to)
        if top > floor:
            cost += (top - floor) * rate
        if up_to is None or gb <= up_to:
            break
        floor = up_to
    return cost


def estimate(nbytes: int, region: str, rates: EgressRates) -> dict[str, Any]:
    used = region if region in rates.regions else rates.default
    tiers = rates.regions[used]
    gb = nbytes / GB
    full = tiered_cost(gb, tiers)
    after_free = tiered_cost(max(gb - rates.free_gb, 0.0), tiers)
    return {
        "bytes": nbytes, "gb": round(gb, 3), "currency": rates.currency,
        "cost": round(full, 2), "cost_after_free_allowance": round(after_free, 2), "free_gb": rates.free_gb,
        "region": region, "rates_region": used, "as_of": rates.as_of, "source": rates.source,
        "note": "" if used == region else f"no rates for {region}; used {used}",
    }
