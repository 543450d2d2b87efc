"""The library face of `plan`, `move` and `verify`: the CLI calls these and renders.

`plan` and `move` build the same Plan through `prepare`; `move` then executes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from relocate import gcfreeze, localfile
from relocate.kinds import Context, Kind, load_kinds
from relocate.config import Config, load_config, parse_config
from relocate.errors import ConfigError, DriftError, RelocateError, UsageError
from relocate.execute.gather import Gathered, gather, list_source, target_id
from relocate.plan.build import build_plan
from relocate.plan.model import Plan, PlanVerdict, VerdictFinding
from relocate.settings import Settings
from relocate.sources.aws import Aws
from relocate.ssh.openssh import OpenSsh
from relocate.ssh.connection import Connection, session


def provider_verdict(config: Config, opts: Settings, today: dt.date | None = None,
                     names: Iterable[str] = ()) -> PlanVerdict | None:
    """The acceptable-use verdict for target.provider, and the app's vendor chain, shaped for the plan.

    `names`: the NAMES of the source's parameters and secrets (from the gather step; never values),
    from which the vendor chain is found (docs/policy.md "Vendor chain").
    """
    if not config.provider:
        return None
    from relocate.policy import engine, profiles  # a move without target.provider never loads the policy code
    from relocate.policy.app import app_from_parts
    from relocate.policy.schema import HOST_KINDS

    app = app_from_parts(list(config.app.content), config.app.moderation, config.app.dependencies)
    profileset = profiles.load_profile_dirs(opts.profile_dirs)
    today = today or dt.date.today()
    verdict = engine.verdict_for(config.provider, app, profileset, today, accepted_risks=opts.accepted_risks)
    all_verdicts = engine.evaluate(app, profileset, today=today)
    deps = engine.dependency_risks(app, profileset, all_verdicts, names=names)
    # every waived finding too, however low it ranks: what a plan accepted is on its record
    top = verdict.top_findings(5)
    top += [f for f in verdict.findings if f.waived and f not in top]
    return PlanVerdict(
        provider=verdict.provider,
        name=verdict.name,
        verdict=verdict.verdict,
        leaning=verdict.leaning,
        score=verdict.score,
        blocking_findings=[VerdictFinding(f.id, f"{verdict.name}: {f.why} [{f.document.url if f.document and f.document.url else 'no source'}]")
                           for f in verdict.findings if f.effect == "reject"],
        top_findings=[f.to_dict() for f in top],
        warnings=list(verdict.warnings) + [f"vendor {d.kind}={d.current}: {d.reason}" for d in deps if d.at_risk],
        accepting=[v.provider for v in all_verdicts if v.verdict == "accept" and set(v.kinds) & set(HOST_KINDS)][:8],
        chain=[d.to_dict() for d in deps],
        disclaimer=verdict.disclaimer,
    )


def check_waivers(config: Config, opts: Settings, ids: Iterable[str], today: dt.date | None = None) -> None:
    """`--accept-risk ID` (and RELOCATE_ACCEPT_RISK) names findings of target.provider's verdict
    for this app: an id that is none of them (a typo, another provider's) would waive nothing
    while the user believes a risk was accepted, so it is refused (exit 2) before any connection."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return
    if not config.provider:
        raise UsageError(f"--accept-risk {ids[0]}: relocate.yaml has no target.provider, so there is no "
                         "acceptable-use finding to waive")
    from relocate.policy import engine, profiles
    from relocate.policy.app import app_from_parts

    app = app_from_parts(list(config.app.content), config.app.moderation, config.app.dependencies)
    verdict = engine.verdict_for(config.provider, app, profiles.load_profile_dirs(opts.profile_dirs),
                                 today or dt.date.today(), accepted_risks=ids)
    known = {f.id for f in verdict.findings}
    for rid in ids:
        if rid not in known:
            raise UsageError(f"--accept-risk {rid}: not a finding of target.provider {verdict.provider} for this app",
                             hint=f"`relocate check --explain {verdict.provider}` lists its finding ids")


def source_names(inventory: Any) -> list[str]:
    """The names (never values) of the parameters and secrets the gather step listed."""
    names = [i.name for p in inventory.parameters for i in p.items]
    return names + [s.spec.name for s in inventory.secrets]


@dataclass
class Prepared:
    config: Config
    aws: Aws
    conn: Connection
    gathered: Gathered
    plan: Plan
    ctx: Context
    kinds: list[Kind]
    kind_data: dict[str, Any]  # each kind's gather, by kind name


def check_snapshot_places(config: Config, opts: Settings) -> None:
    """snapshot.dir and the key file can be used (or made) on this machine, checked before
    any connection and without making anything: a move's snapshot and journal go there
    once it holds the target's lock, too late to fail (it failed as an internal error with
    the lock taken and `.relocate/` made on the target, after a plan that said Ready).
    Exit 2 naming the field, as a bad relocate.yaml value is (README), not a plan blocker:
    blockers are what the target lacks. An existing key file is read as the move will
    read it (mode 0600, an AGE-SECRET-KEY line), as is $RELOCATE_AGE_IDENTITY."""
    from relocate.snapshot import crypto

    localfile.check_usable(config.snapshot_dir, f"{config.path}: snapshot.dir", directory=True)
    if opts.age_identity is None:  # with it, no key file is read or written
        localfile.check_usable(config.key_file, f"{config.path}: snapshot.key_file", directory=False)
    crypto.load_identity(config.key_file, create=False, given=opts.age_identity)


@contextmanager
def prepare(config: Config, opts: Settings, *, sharded: bool = False) -> Iterator[Prepared]:
    """Read the source and probe the target (read-only), then build the Plan
    (`sharded`: for `plan --shards N`, build_plan's)."""
    check_snapshot_places(config, opts)  # before any connection: `plan` says so too, and `move` before the lock
    aws = Aws(config.aws)
    bulk = opts.bulk_login if opts.login.openssh else 0
    with ExitStack() as stack:
        # No automatic collection from the listing's start (boto3's import on its thread,
        # the parsing) to the gather's end: gcfreeze.py; ~0.15 s of a 10,000-object rerun.
        with gcfreeze.paused():
            listed = list_source(config, aws)  # the source's listing starts now, beside the login (gather.py)
            verdict = provider_verdict(config, opts)
            conn = stack.enter_context(session(config.ssh, opts.login, config.target_jump))  # through target.ssh.jump when set
            stack.callback(OpenSsh.discard, conn)  # a prestarted login nobody used
            gathered = gather(config, aws, conn, checksum=opts.checksum, listed=listed,
                              first_move=(lambda: OpenSsh.prestart(conn, bulk)) if bulk else None)
            gcfreeze.freeze()  # boto3's modules (imported by the listing), the clients, the listing: kept to the end
        if bulk and gathered.objects_todo():
            # The bulk lanes' logins start now (on a first move, already while the source
            # was listed: gather's first_move), pinned to the host key conn.connect()
            # checked, and overlap the plan, the gate and the lock; a rerun with no object
            # to send logs in once, not once per lane as well (tests/test_rerun_cost.py).
            OpenSsh.prestart(conn, bulk)
        elif conn.bulk_pending is not None:  # a first move whose listing came back empty
            OpenSsh.discard(conn)
        if verdict is not None and (names := source_names(gathered.inventory)):
            verdict = provider_verdict(config, opts, names=names)  # now with the vendors the names show
        ctx = Context(config=config, aws=aws, conn=conn, target_id=target_id(config, conn),
                      login=opts.login, switches=opts.switches, checksum=opts.checksum, gathered=gathered)
        if opts.probe:
            from relocate.execute.probe import measure

            facts = gathered.facts
            ctx.rates = measure(aws, conn, gathered.inventory, (facts.existing or config.root) if facts.writable else None,
                                tuning=opts.tuning)
        kinds = load_kinds(config)
        data = {k.name: k.gather(ctx) for k in kinds}
        parts = tuple(k.plan(ctx, data[k.name]) for k in kinds)
        plan = build_plan(config, gathered.inventory, gathered.facts, target=ctx.target_id, verdict=verdict,
                          accepted_risks=opts.accepted_risks, parts=parts, rates=ctx.rates, now=time.time(),
                          sharded=sharded)
        yield Prepared(config, aws, conn, gathered, plan, ctx, kinds, data)


def load_plan_file(path: Path) -> tuple[Plan, Config]:
    """A saved plan and the configuration it carries (re-interpolated from today's env)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a JSON plan file ({exc})") from None
    plan = Plan.from_dict(data, str(path))
    config_path = Path(plan.config_path)
    return plan, parse_config(plan.config_text, config_path)


def check_drift(saved: Plan, fresh: Plan, allow_drift: bool, *, replan: str = "relocate plan -o") -> list[str]:
    """What changed at the source since the plan was saved; refuse unless allowed. `replan`:
    the command the hint names (a sharded plan's: `relocate plan --shards N -o plan.json`)."""
    changes: list[str] = []
    if saved.fingerprint_digest != fresh.fingerprint_digest:
        for section in ("buckets", "parameters", "secrets", "inputs"):
            old, new = saved.fingerprint.get(section, {}), fresh.fingerprint.get(section, {})
            for name in sorted(set(old) | set(new)):
                if old.get(name) != new.get(name):
                    # inputs are named whole ("deploy.release ./build"): its content changed
                    changes.append(f"{name} (its content)" if section == "inputs" else f"{section[:-1]} {name}")
        changes = changes or ["source fingerprint"]
    if saved.target != fresh.target:
        changes.append(f"target {saved.target} -> {fresh.target}")
    if changes and not allow_drift:
        raise DriftError(f"the source changed since the plan was saved ({', '.join(changes[:5])})",
                         hint=f"run `{replan}` again, or pass --allow-drift to move what is there now")
    return changes


def saved_steps(saved: Plan, fresh: Plan, *, replan: str = "relocate plan -o") -> Plan:
    """The plan `move plan.json` runs: the SAVED plan's steps, in the saved order, each as
    the fresh look at the source and target finds it (what is already there is not sent
    again). A step left out of plan.json is not run; a saved step the fresh plan does not
    have, or has with another kind, source or destination, makes the saved plan stale
    (exit 6). The fresh plan's blockers stand, and so do the saved plan's deadline
    findings: the deadline rules were decided when it was planned."""
    by_id = {s.id: s for s in fresh.steps}
    steps = []
    for old in saved.steps:
        new = by_id.get(old.id)
        if new is None or (new.kind, new.source, new.dest) != (old.kind, old.source, old.dest):
            why = "the source and target no longer have it" if new is None else "it now reads or writes elsewhere"
            raise DriftError(f"the saved plan is stale: step {old.id}: {why}",
                             hint=f"run `{replan}` again")
        if old.kind != "verify":
            steps.append(new)
    verify = by_id.get("verify")
    if verify is not None:
        steps.append(verify)  # the move always ends by verifying what it wrote
    run = dataclasses.replace(fresh, steps=steps)
    run.blockers = list(fresh.blockers) + [b for b in saved.blockers if b.code == "deadline"]
    run.schedule = saved.schedule
    return run


def load_any(path: Path) -> tuple[Config, Plan | None]:
    """`move` accepts relocate.yaml or a saved plan.json."""
    if path.suffix == ".json":
        plan, config = load_plan_file(path)
        return config, plan
    return load_config(path), None


__all__ = ["Prepared", "prepare", "load_any", "check_drift", "saved_steps", "provider_verdict", "RelocateError"]
