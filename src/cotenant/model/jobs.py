"""Workloads: gang jobs of N GPUs."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cotenant.model.dependencies import Dependency


class JobKind(StrEnum):
    TRAINING = "training"
    EXPERIMENT = "experiment"
    SERVICE = "service"  # one replica of an inference service


class Constraint(StrEnum):
    """The topology domain a gang must fit inside. AUTO prefers the smallest that can hold
    it and widens when none has room; a gang of one node's size stays on one node."""

    AUTO = "auto"
    NODE = "node"
    DOMAIN = "domain"  # one NVLink domain (72 GPUs of a GB200 NVL72; one HGX node)
    RACK = "rack"
    BLOCK = "block"
    ANY = "any"


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RECLAIMING = "reclaiming"  # told to checkpoint; stops at the grace deadline
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a tenant asks for. ``duration_s`` is the work at full size, excluding
    restarts and checkpoint costs; ``estimate_s`` is the user's runtime estimate for
    backfill (None: use the duration, which makes backfill an oracle)."""

    id: str
    tenant: str
    gpus: int
    duration_s: int
    submit_s: int
    kind: JobKind = JobKind.EXPERIMENT
    constraint: Constraint = Constraint.AUTO
    checkpoint_interval_s: int = 0  # 0: never checkpoints; a restart loses everything
    priority: int = 0  # within the tenant; higher first
    estimate_s: int | None = None
    accelerator: str | None = None
    name: str = ""
    command: tuple[str, ...] = ()
    # Jobs of the same tenant this one waits for, every clause holding (model.dependencies),
    # and the pipeline it is a stage of ("" for none).
    after: tuple[Dependency, ...] = ()
    pipeline: str = ""
    # Federation (docs/design/0014-providers.md): the providers this job accepts (empty:
    # any its tenant may use) and the longest it should queue on a lease before it
    # overflows to another provider (None: its tenant's default for its kind).
    providers: tuple[str, ...] = ()
    max_wait_s: int | None = None

    @property
    def runtime_estimate_s(self) -> int:
        return self.estimate_s if self.estimate_s is not None else self.duration_s
