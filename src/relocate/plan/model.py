"""The Plan value that `plan` prints and saves and `move` executes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from relocate.errors import ConfigError

PLAN_FORMAT = 1


@dataclass
class Step:
    id: str  # stable: "s3:<bucket>/<prefix>", "env:<path>", "verify"
    kind: str  # s3 | env | verify
    source: str
    dest: str  # relative to target.root
    count: int = 0
    bytes: int = 0
    todo_count: int = 0
    todo_bytes: int = 0
    est_seconds: float = 0.0
    detail: str = ""
    priority: str = ""  # s3 steps: critical | normal | bulk (source.s3[].priority); see plan/deadline.py
    region: str = ""  # s3 steps: the AWS region the bucket lives in (HeadBucket), which prices its egress; "" unknown
    # How the step changes the target ("write 12 files (3.1 MiB) under data/media", "replace
    # database townsquare"), "" when it changes nothing: the gate (execute/gate.py) lists these
    # and asks once before the first change.
    change: str = ""
    # Under `move --deadline` the step may start only if it can finish before the deadline
    # (non-critical object data); decided here by the planner, checked by the runner.
    deadline_bound: bool = False


@dataclass
class Finding:
    code: str  # stable, machine-readable: "disk", "tools", "writable", "aup-reject", ...
    message: str


@dataclass(frozen=True)
class VerdictFinding:
    """A finding of the provider's terms that rejects the app: a blocker unless accepted."""

    id: str  # what --accept-risk names
    message: str


@dataclass
class PlanVerdict:
    """The acceptable-use verdict for target.provider as the plan carries it (plan.json
    `verdict`, docs/json.md): built by workflow.provider_verdict from the policy engine.
    `top_findings` and `chain` are the policy's own JSON (policy/verdict.py,
    policy/chain.py: Finding.to_dict, DependencyRisk.to_dict), shown as they are."""

    provider: str
    name: str
    verdict: str  # accept | conditional | unknown | reject
    leaning: str | None
    score: int
    blocking_findings: list[VerdictFinding] = field(default_factory=list)
    top_findings: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    accepting: list[str] = field(default_factory=list)  # providers whose terms accept the app
    chain: list[dict[str, Any]] = field(default_factory=list)  # the app's vendors, each judged
    disclaimer: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def waived(self) -> list[str]:
        """The findings `--accept-risk` waived (top_findings carries every one of them)."""
        return [str(f["id"]) for f in self.top_findings if f.get("waived")]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PlanVerdict":
        return cls(
            provider=data["provider"], name=data["name"], verdict=data["verdict"], leaning=data.get("leaning"),
            score=data["score"], blocking_findings=[VerdictFinding(**f) for f in data.get("blocking_findings") or []],
            top_findings=list(data.get("top_findings") or []), warnings=list(data.get("warnings") or []),
            accepting=list(data.get("accepting") or []), chain=list(data.get("chain") or []),
            disclaimer=data.get("disclaimer", ""))


@dataclass
class PlanPart:
    """What one kind contributes to a plan (relocate.kinds: Kind.plan)."""

    steps: list[Step] = field(default_factory=list)
    blockers: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    # Local inputs the plan was made from, by name, as content digests (deploy.release):
    # they join the source's fingerprint, so `move plan.json` refuses what changed since.
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass
class Plan:
    created_at: str
    config_path: str
    config_text: str  # raw relocate.yaml (never interpolated: no secret from ${ENV} lands here)
    target: str
    root: str
    fingerprint: dict[str, Any]
    fingerprint_digest: str
    steps: list[Step] = field(default_factory=list)
    blockers: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    verdict: PlanVerdict | None = None
    accepted_risks: list[str] = field(default_factory=list)
    estimate_basis: str = ""
    schedule: dict[str, Any] | None = None  # plan/deadline.Schedule.to_dict() when --deadline was given
    egress: dict[str, Any] | None = None  # plan/egress.estimate(): data-transfer-out cost at AWS rates
    # per bucket, objects no source.s3 prefix covers (sources/inventory.LeftOut.to_dict())
    left_out: list[dict[str, Any]] = field(default_factory=list)
    # per versioned source.s3 entry without `versions: all`: older versions and delete markers not moved
    versions_left: list[dict[str, Any]] = field(default_factory=list)
    estimate_range: dict[str, float] | None = None  # plan --probe: {low_s, high_s} for the whole plan
    # plan --shards N: {count, id, steps: {s3 step id: [range, ...]}, est_seconds}; shards/plan.py
    shards: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        return not self.blockers

    @property
    def todo_bytes(self) -> int:
        return sum(s.todo_bytes for s in self.steps)

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.steps)

    @property
    def est_seconds(self) -> float:
        return sum(s.est_seconds for s in self.steps)

    @property
    def changes(self) -> list[str]:
        """What the plan would change on the target, in the order it runs (the gate's list)."""
        return [s.change for s in self.steps if s.change]

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d = {"format_version": PLAN_FORMAT, **d}
        d["ready"] = self.ready
        d["totals"] = {"bytes": self.total_bytes, "todo_bytes": self.todo_bytes, "est_seconds": round(self.est_seconds, 1)}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "plan file") -> "Plan":
        if not isinstance(data, dict) or data.get("format_version") != PLAN_FORMAT:
            raise ConfigError(f"{source}: not a relocate plan (format_version {PLAN_FORMAT} expected)")
        from relocate.shards.section import check_section  # pure; every reader of a sharded plan relies on it

        check_section(data.get("shards"), source)  # exit 2 naming the field: edited or damaged
        try:
            return cls(
                created_at=data["created_at"],
                config_path=data["config_path"],
                config_text=data["config_text"],
                target=data["target"],
                root=data["root"],
                fingerprint=data["fingerprint"],
                fingerprint_digest=data["fingerprint_digest"],
                steps=[Step(**s) for s in data["steps"]],
                blockers=[Finding(**f) for f in data["blockers"]],
                warnings=[Finding(**f) for f in data["warnings"]],
                facts=data.get("facts") or {},
                verdict=PlanVerdict.from_dict(data["verdict"]) if data.get("verdict") else None,
                accepted_risks=list(data.get("accepted_risks") or []),
                estimate_basis=data.get("estimate_basis", ""),
                schedule=data.get("schedule"),
                egress=data.get("egress"),
                left_out=list(data.get("left_out") or []),
                versions_left=list(data.get("versions_left") or []),
                estimate_range=data.get("estimate_range"),
                shards=data.get("shards"),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{source}: damaged plan file ({exc})") from None
