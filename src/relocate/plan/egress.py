"""What moving the data out will cost in AWS data-transfer-out fees, at published rates.

AWS bills transfer out by the SOURCE region (its Global Network FAQ: "we charge for data
transfer only based on the source Region"), so each bucket is priced at its own region's
rates, not relocate.yaml's. A region the rates file does not list is priced at the
dearest rates it has and says so: an estimate must never come out low by guessing.

The monthly free allowance (`free_gb`, 100 GB) is one per account, aggregated across all
regions and services: the figure "after the allowance" takes it once from all the regions
together, off the cheapest-priced GB being sent, since AWS does not say which region's GB
it covers (free_allowance_saving): never lower than the bill.

The rates live in a data file with dates (data/egress_rates.yaml) so updating them is an
edit, not a release note; `--egress-rates FILE` replaces them. Everything here is pure:
the parsed table and `today` are arguments (relocate/egress_file.py reads the file).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from relocate.errors import ConfigError

GB = 1024**3  # AWS bills data transfer per GB of 2^30 bytes
STALE_AFTER_DAYS = 365
UNKNOWN = "unknown"

Tiers = tuple[tuple[float | None, float], ...]  # ((up_to_gb | None, per_gb), ...)

# AWS, 5 March 2024: customers moving all their data off AWS may ask AWS Support for
# credits covering the data transfer out to the internet (the move must finish within 60
# days of approval). Not automatic: it must be requested before the move.
EXIT_WAIVER = ("AWS waives data-transfer-out fees for customers leaving AWS, on request (since March 2024): "
               "ask AWS Support for the credits BEFORE moving (approved moves must finish within 60 days)")


@dataclass(frozen=True)
class EgressRates:
    as_of: str  # the file's date: when its figures were last checked
    currency: str
    free_gb: float
    regions: dict[str, Tiers]
    region_as_of: dict[str, str]  # regions whose figures were checked on another date than as_of
    source: str  # file it came from, shown so the reader knows which numbers they see

    def checked(self, region: str) -> str:
        return self.region_as_of.get(region, self.as_of)

    @property
    def updated(self) -> str:
        """The file's own date: the latest check it records (ISO dates sort as text)."""
        return max([self.as_of, *self.region_as_of.values()])

    def dearest(self) -> str:
        """The region whose rates cost most (compared at 1 TB): where an unknown region is priced."""
        return max(self.regions, key=lambda r: (tiered_cost(1024.0, self.regions[r]), r))


def _tiers(raw: Any, where: str) -> Tiers:
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


def _date(value: Any, where: str) -> str:
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ConfigError(f"{where}: must be a date YYYY-MM-DD (got {value!r})") from None


def parse_rates(doc: Any, source: str) -> EgressRates:
    """The rates table from the parsed YAML document `doc` (read from `source`)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("regions"), dict) or not doc["regions"]:
        raise ConfigError(f"{source}: needs `as_of`, `regions: {{REGION: {{tiers: ...}}}}` (see relocate/data/egress_rates.yaml)")
    if not doc.get("as_of"):
        raise ConfigError(f"{source}: needs `as_of: YYYY-MM-DD` (the date the rates were read)")
    as_of = _date(doc["as_of"], f"{source}: as_of")
    regions = {str(k): _tiers(v, f"{source}: regions.{k}") for k, v in doc["regions"].items()}
    region_as_of = {str(k): _date(v["as_of"], f"{source}: regions.{k}.as_of")
                    for k, v in doc["regions"].items() if isinstance(v, dict) and v.get("as_of")}
    free = doc.get("free_gb", 0)
    if not isinstance(free, (int, float)) or free < 0:
        raise ConfigError(f"{source}: free_gb must be a number >= 0")
    return EgressRates(as_of, str(doc.get("currency") or "USD"), float(free), regions, region_as_of, source)


def tiered_cost(gb: float, tiers: Tiers) -> float:
    cost, floor = 0.0, 0.0
    for up_to, rate in tiers:
        top = gb if up_to is None else min(gb, up_to)
        if top > floor:
            cost += (top - floor) * rate
        if up_to is None or gb <= up_to:
            break
        floor = up_to
    return cost


def _segments(gb: float, tiers: Tiers) -> list[tuple[float, float]]:
    """The (gb, usd_per_gb) pieces of `gb` sent out at `tiers`: what tiered_cost adds up."""
    out: list[tuple[float, float]] = []
    floor = 0.0
    for up_to, rate in tiers:
        top = gb if up_to is None else min(gb, up_to)
        if top > floor:
            out.append((top - floor, rate))
        if up_to is None or gb <= up_to:
            break
        floor = up_to
    return out


def free_allowance_saving(gb_by_rates: list[tuple[float, Tiers]], free_gb: float) -> float:
    """The least the monthly free allowance can take off the bill: `free_gb` GB once,
    across all regions together (one allowance per account, aggregated across AWS services
    and regions: data/egress_rates.yaml), never once per region.

    AWS does not say which region's gigabytes the allowance covers (nor at which tier), so
    they are taken where they save least: the cheapest-priced GB being sent, whichever
    region and tier they fall in. Any reading of the rule (first GB free, the allowance
    off each region's first or last tier, from the dearest region first) saves at least
    that much, so the figure after the allowance is never lower than the bill. Exact GB,
    never rounded before the subtraction."""
    left, saving = free_gb, 0.0
    for amount, rate in sorted((piece for gb, tiers in gb_by_rates for piece in _segments(gb, tiers)), key=lambda p: p[1]):
        if left <= 0:
            break
        take = min(amount, left)
        saving += take * rate
        left -= take
    return saving


def bytes_by_region(steps: Any, home_region: str) -> dict[str | None, int]:
    """What each source region sends: a bucket from its own region ("" = S3 did not say:
    None, priced as unknown), everything else (databases, host files) from relocate.yaml's."""
    out: dict[str | None, int] = {}
    for s in steps:
        if s.todo_bytes:
            region = (s.region or None) if s.kind == "s3" else home_region
            out[region] = out.get(region, 0) + s.todo_bytes
    return out


def estimate(bytes_by_region: dict[str | None, int], rates: EgressRates, today: dt.date) -> dict[str, Any]:
    """The cost of sending out `bytes_by_region` ({source region or None if unknown: bytes}),
    each region at its own tiered rates, as of `today` (which decides whether the rates are stale)."""
    rows: list[dict[str, Any]] = []
    exact: list[tuple[float, Tiers]] = []  # each row's GB and the rates it is priced at, unrounded
    for region, nbytes in sorted(bytes_by_region.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        name = region or UNKNOWN
        used = region if region in rates.regions else rates.dearest()
        gb = nbytes / GB
        note = "" if used == region else (
            f"region unknown (S3 did not say); priced at the dearest listed rates ({used})" if region is None
            else f"no rates for {region} in {rates.source}; priced at the dearest listed ({used})")
        rows.append({"region": name, "bytes": nbytes, "gb": round(gb, 3), "rates_region": used,
                     "rates_as_of": rates.checked(used), "cost": round(tiered_cost(gb, rates.regions[used]), 2),
                     "note": note})
        exact.append((gb, rates.regions[used]))
    total = sum(r["cost"] for r in rows)
    # The free allowance is one per account across all regions: its GB come off the bill
    # wherever they save least (free_allowance_saving), so the figure "after the allowance"
    # is never lower than the bill can be. From the exact costs, rounded once at the end.
    after = sum(tiered_cost(gb, tiers) for gb, tiers in exact) - free_allowance_saving(exact, rates.free_gb)
    # `as_of` is when the rates used were checked (the oldest of them), and only those can be
    # stale. With nothing to send no rate is used: nothing is priced, so no warning, and
    # `as_of` is the file's own date, never its oldest entry (which read as stale rates).
    used_dates = sorted({r["rates_as_of"] for r in rows if r["bytes"]})
    oldest = used_dates[0] if used_dates else rates.updated
    age = (today - dt.date.fromisoformat(oldest)).days
    stale = bool(used_dates) and age > STALE_AFTER_DAYS
    nbytes = sum(bytes_by_region.values())
    return {
        "bytes": nbytes, "gb": round(nbytes / GB, 3), "currency": rates.currency,
        "cost": round(total, 2), "cost_after_free_allowance": min(round(max(after, 0.0), 2), round(total, 2)), "free_gb": rates.free_gb,
        "by_region": rows, "as_of": oldest, "rates_stale": stale,
        "stale_note": (f"the rates used were checked on {oldest}, {age} days ago: AWS may have changed them "
                       f"(check its pricing page; --egress-rates FILE overrides)") if stale else "",
        "source": rates.source, "exit_waiver": EXIT_WAIVER,
    }
