"""Pydantic schemas at the API edge. Every field is bounded, so any request either fits
the core's types or is refused with a 422 naming the field; the core never sees junk."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cotenant.contracts.schema import ContractTable
from cotenant.model.jobs import Constraint, JobKind, JobState
from cotenant.model.spec import Integer
from cotenant.server.keys import Role

MAX_S = 100 * 365 * 86_400  # a century of seconds bounds every duration
MAX_TIME = 1 << 40  # Unix seconds (about 36,000 years)
MAX_GPUS = 10_000_000

# Names in URLs and keys: lower-case, digits, dot, dash, underscore.
TenantName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
# Free text: printable, no control characters (PostgreSQL refuses NUL in text).
Text = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
LongText = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\x00-\x1f\x7f]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors -----------------------------------------------------------------------------------
class FieldError(BaseModel):
    field: str
    problem: str


class ErrorDetail(BaseModel):
    status: int
    message: str
    field: str | None = None
    problem: str
    errors: list[FieldError] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- jobs -------------------------------------------------------------------------------------
JobRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
DEPENDENCY_FIELDS = ("after", "after_ok", "after_failed", "after_any")


class DependencyFields(Strict):
    """The jobs of the same tenant a job waits for (all four may be given; every one
    holds before it starts). In a pipeline a stage's name stands for that stage."""

    after: list[JobRef] = Field(default_factory=list, max_length=64, description="every one ended")
    after_ok: list[JobRef] = Field(
        default_factory=list, max_length=64, description="every one completed"
    )
    after_failed: list[JobRef] = Field(
        default_factory=list, max_length=64, description="every one ended without completing"
    )
    after_any: list[JobRef] = Field(
        default_factory=list, max_length=64, description="any one of them completed"
    )
    take_nodes: bool = Field(
        False,
        description="when they are met, start on the nodes the jobs waited for ran on "
        "(room reserved ahead), if inside the tenant's entitlement",
    )


class Dependency(BaseModel):
    kind: Literal["after", "after_ok", "after_failed", "after_any"]
    jobs: list[str]
    take_nodes: bool = Field(False, description="handed the nodes its jobs ran on when met")


class JobSubmit(DependencyFields):
    tenant: TenantName | None = Field(
        None, description="the tenant to run as; tenant keys may omit it (their own)"
    )
    name: Text = ""
    gpus: int = Field(ge=1, le=MAX_GPUS, description="the gang: all or nothing")
    duration_s: int = Field(ge=0, le=MAX_S, description="work at full size (simulated backend)")
    kind: JobKind = JobKind.EXPERIMENT
    constraint: Constraint = Constraint.AUTO
    checkpoint_interval_s: int = Field(0, ge=0, le=MAX_S)
    priority: int = Field(0, ge=-1000, le=1000, description="within the tenant; higher first")
    estimate_s: int | None = Field(None, ge=0, le=MAX_S)
    accelerator: Text | None = None
    command: list[LongText] = Field(default_factory=list, max_length=256)
    providers: list[TenantName] = Field(
        default_factory=list,
        max_length=16,
        description="the clusters (providers) it may run on, as GET /v1/cluster names "
        "them; none: any (a gang never spans two)",
    )


class PlacementOut(BaseModel):
    nodes: list[str]
    gpus: list[int]


class Attempt(BaseModel):
    """One run of a job (``GET /v1/jobs/{id}`` and the job list carry them, oldest first)."""

    attempt: int = Field(description="1 for the first run; logs are kept per attempt")
    nodes: list[str] = Field(description="the nodes it ran on")
    gpus: list[int] = Field(description="GPUs it held on each node, in the order of nodes")
    start_s: int = Field(description="when it started (Unix s, service clock)")
    end_s: int | None = Field(description="when it ended; null while it runs")
    outcome: (
        Literal[
            "completed",
            "failed",
            "lost",
            "not-started",
            "preempted",
            "node-failure",
            "cancelled",
            "migrated",
        ]
        | None
    ) = Field(description="how it ended; null while it runs (migrated: to a pool, under notice)")
    exit_code: int | None = Field(
        description="the command's exit status (128 + N: killed by signal N; -1: lost, "
        "-2: not started; the sim backend's runs end with 0); null while it runs or if it "
        "did not end by itself (preempted, node failure, cancelled)"
    )
    signal: str | None = Field(description="the signal that killed it (e.g. SIGKILL), if any")
    detail: str = Field(description="more on the outcome (e.g. the node failure's cause)")


class Job(BaseModel):
    id: str
    tenant: str
    name: str
    gpus: int
    duration_s: int
    kind: JobKind
    constraint: Constraint
    checkpoint_interval_s: int
    priority: int
    estimate_s: int | None
    accelerator: str | None
    command: list[str]
    state: JobState
    reason: str
    reason_detail: str
    submit_s: int
    first_start_s: int | None
    start_s: int | None
    end_s: int | None
    attempt: int
    preemptions: int
    borrowed: bool
    placement: PlacementOut | None
    idempotency_key: str | None
    submitted_by: str
    exit_code: int | None = Field(
        description="the last attempt's exit status (see Attempt.exit_code); null before a "
        "run ended by itself"
    )
    signal: str | None = Field(description="the signal that killed the last attempt, if any")
    ended_at: int | None = Field(
        description="when the job ended for good (completed, failed, cancelled; Unix s); "
        "the same as end_s"
    )
    attempts: list[Attempt] = Field(description="every run of the job, oldest first")
    after: list[Dependency] = Field(default_factory=list, description="the jobs it waits for")
    pipeline: str | None = Field(None, description="the pipeline it is a stage of")
    providers: list[str] = Field(
        default_factory=list, description="the clusters it may run on; empty: any"
    )


class JobPage(BaseModel):
    items: list[Job]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class Why(BaseModel):
    """Why a job is where it is: the same ``reason`` and ``reason_detail`` as the job's
    own, and for a job that ran, where, since when and how its last run ended."""

    job: str
    state: str
    reason: str
    detail: str
    since_s: int | None = Field(
        None, description="in this state since (running: the run's start; ended: its end)"
    )
    attempt: int = Field(0, description="the latest attempt (0: never started)")
    nodes: list[str] = Field(default_factory=list, description="where the latest run ran")
    outcome: str | None = Field(None, description="how the latest run ended (Attempt.outcome)")
    exit_code: int | None = None
    signal: str | None = None


# -- tenants and contracts --------------------------------------------------------------------
class ContractIn(ContractTable):
    """A contract as a request body: the contract schema itself (``contracts/schema.py``,
    the table a scenario file's ``[tenants.contract]`` is), so a contract is read one way
    everywhere, with the same one-line problems; the API bounds its priority as a job's."""

    priority: Annotated[Integer, Field(ge=-1000, le=1000)] = 0


class CommitmentOut(BaseModel):
    gpus: int
    all_available: bool
    reserve_gpus: int
    accelerator: str | None


class PriceOut(BaseModel):
    kind: str
    currency: str
    flat_fee_cents_per_month: int
    committed_rate_micro_per_gpu_hour: int
    overage_rate_micro_per_gpu_hour: int
    sla_credit_micro_per_gpu_hour: int
    sla_credit_cap_percent: int
    sla_credit_cap_base: str


class NoticeOut(BaseModel):
    period_s: int
    ramp: str
    given_at: int | None


class LendingOut(BaseModel):
    lend_idle: bool
    limit_gpus: int | None
    reclaim_grace_s: int


class IsolationOut(BaseModel):
    rivals: list[str]
    level: str


class ContractOut(BaseModel):
    tenant: str
    start_s: int
    end_s: int
    commitment: CommitmentOut
    price: PriceOut
    notice: NoticeOut
    lending: LendingOut
    isolation: IsolationOut
    priority: int
    spares_backed: bool
    entitled_gpus_now: int | None = None


class ContractVersion(BaseModel):
    version: int
    change: str
    created_s: int
    contract: ContractOut


class TenantCreate(Strict):
    name: TenantName
    display_name: Text = ""
    contract: ContractIn | None = None


class TenantOut(BaseModel):
    name: str
    display_name: str
    created_s: int
    contract: ContractOut | None


class NoticeIn(Strict):
    at_s: int | None = Field(None, ge=0, le=MAX_TIME, description="default: now")


# -- cluster, usage, invoices ---------------------------------------------------------------------
class TenantAllocation(BaseModel):
    tenant: str
    allocated_gpus: int
    owned_gpus: int
    borrowed_gpus: int
    entitled_gpus: int
    pending_jobs: int
    running_jobs: int


class ProviderView(BaseModel):
    """One provider of several (a Slurm cluster): its capacity and what is free now."""

    name: str
    total_gpus: int
    free_gpus: int
    nodes: int
    healthy_nodes: int


class ClusterView(BaseModel):
    """A tenant sees its own allocation and the cluster's aggregate free capacity only."""

    time_s: int
    name: str
    total_gpus: int
    free_gpus: int
    nodes: int
    healthy_nodes: int
    accelerators: dict[str, int]
    queue_depth: int | None = Field(None, description="operator and auditor only")
    tenants: list[TenantAllocation]
    providers: list[ProviderView] = Field(
        default_factory=list,
        description="per provider, where the cluster is several (Slurm clusters); else empty",
    )


class ProviderUsageOut(BaseModel):
    """A tenant's usage on one provider (one Slurm cluster of several)."""

    provider: str
    gpu_seconds: int
    own_gpu_seconds: int
    borrowed_gpu_seconds: int
    gpu_hours: float

    @classmethod
    def of(cls, provider: str, own: int, borrowed: int) -> ProviderUsageOut:
        gs = own + borrowed
        return cls(
            provider=provider,
            gpu_seconds=gs,
            own_gpu_seconds=own,
            borrowed_gpu_seconds=borrowed,
            gpu_hours=gs / 3600,
        )


_PROVIDERS = "per provider, where the cluster is several (Slurm clusters); else empty"
_POOLS = "per elastic pool (server settings [[pools]]), on its own terms; else empty"


class PoolUsageOut(BaseModel):
    """A tenant's use of one elastic pool, rated on the pool's own terms."""

    provider: str
    gpu_seconds: int
    gpu_hours: float
    data_tb: float
    cost_cents: int
    cost: str


class TenantUsage(BaseModel):
    tenant: str
    gpu_seconds: int
    own_gpu_seconds: int
    borrowed_gpu_seconds: int
    gpu_hours: float
    providers: list[ProviderUsageOut] = Field(default_factory=list, description=_PROVIDERS)
    pools: list[PoolUsageOut] = Field(default_factory=list, description=_POOLS)


class UsageOut(BaseModel):
    start_s: int | None
    end_s: int | None
    tenants: list[TenantUsage]


class InvoiceLineOut(BaseModel):
    description: str
    quantity: str
    unit_price: str
    amount_cents: int
    amount: str


class PoolInvoiceOut(BaseModel):
    """A tenant's bill from one pool for the month: GPU-hours on demand at the pool's
    price, data moved in per TB."""

    provider: str
    lines: list[InvoiceLineOut]
    total_cents: int
    total: str


class OverflowOut(BaseModel):
    """The tenant's overflow budget for the month and what overflow reserved of it."""

    budget_cents: int
    reserved_cents: int
    left_cents: int


class InvoiceOut(BaseModel):
    tenant: str
    month: str
    currency: str
    lines: list[InvoiceLineOut]
    subtotal_cents: int
    credits_cents: int
    total_cents: int
    total: str
    usage: dict[str, float]
    providers: list[ProviderUsageOut] = Field(
        default_factory=list, description=f"the month's usage {_PROVIDERS}"
    )
    pools: list[PoolInvoiceOut] = Field(
        default_factory=list, description=f"the month's bills {_POOLS} (apart from the total)"
    )
    overflow: OverflowOut | None = None


# -- audit, keys, meta -----------------------------------------------------------------------------
class HeadOut(BaseModel):
    seq: int
    hash: str


class VerdictOut(BaseModel):
    ok: bool
    entries: int
    head: HeadOut
    first_bad_seq: int | None
    problem: str
    after_seq: int = Field(0, description="entries after this seq were verified (0: all)")


class KeyCreate(Strict):
    role: Role
    tenant: TenantName | None = None
    name: Text = ""


class KeyOut(BaseModel):
    key_id: str
    role: Role
    tenant: str | None
    name: str
    created_s: int
    created_by: str
    revoked_s: int | None


class KeyIssuedOut(KeyOut):
    token: str = Field(description="shown once; store it now")


class WhoAmI(BaseModel):
    key_id: str
    role: Role
    tenant: str | None
    name: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    time_s: int
    error: str | None = None


class Readiness(BaseModel):
    """Whether the service can make progress: the store takes writes, the engine runs."""

    status: Literal["ready", "unavailable"]
    problems: list[str]
    store_seconds_since_commit: float


class Invariants(BaseModel):
    ok: bool
    problems: list[str]
