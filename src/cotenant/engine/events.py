"""What the engine did, as frozen typed records: the decision log's entries.

Each record has a ``kind`` (the ``event`` of its JSON form) and one ``to_json()``: the
dict the audit log, the golden file and the string-keyed sinks read, keys in a fixed
order (``t``, ``event``, then the fields as declared; a field that is None is left out).
Typed consumers subscribe to ``Engine.observers`` and match on the class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from cotenant.scheduler.decisions import Decisions


@dataclass(frozen=True, slots=True)
class EngineEvent:
    kind: ClassVar[str] = ""
    t: int

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.t, "event": self.kind}
        names: tuple[str, ...] = self.__match_args__
        for name in names[1:]:
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True)
class ContractChanged(EngineEvent):
    kind: ClassVar[str] = "contract"
    tenant: str


@dataclass(frozen=True, slots=True)
class JobSubmitted(EngineEvent):
    """The job entered the queue (at its submit time, or when the engine took it)."""

    kind: ClassVar[str] = "submit"
    job: str
    tenant: str
    gpus: int


@dataclass(frozen=True, slots=True)
class JobCancelled(EngineEvent):
    kind: ClassVar[str] = "cancel"
    job: str
    tenant: str


@dataclass(frozen=True, slots=True)
class JobRejected(EngineEvent):
    kind: ClassVar[str] = "reject"
    job: str
    tenant: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class RunPlaced(EngineEvent):
    kind: ClassVar[str] = "place"
    job: str
    tenant: str
    gpus: int
    nodes: tuple[int, ...]
    borrowed: bool
    reason: str
    # Where the topology is several providers (Slurm clusters): which one, and why
    # (``scheduler/providers.py``); None (left out of the log) where it is one.
    provider: str | None = None
    route: str | None = None
    route_detail: str | None = None


@dataclass(frozen=True, slots=True)
class RunReclaimed(EngineEvent):
    """A run told to checkpoint and stop by ``deadline`` for a beneficiary's room."""

    kind: ClassVar[str] = "reclaim"
    job: str
    tenant: str
    beneficiary: str
    beneficiary_tenant: str
    deadline: int
    rule: str
    hastened: bool | None = None  # True: an earlier deadline for a run already reclaimed


@dataclass(frozen=True, slots=True)
class RunPreempted(EngineEvent):
    kind: ClassVar[str] = "preempt"
    job: str
    tenant: str
    lost_s: int


@dataclass(frozen=True, slots=True)
class RunInterrupted(EngineEvent):
    kind: ClassVar[str] = "interrupt"
    job: str
    tenant: str
    cause: str
    lost_s: int


@dataclass(frozen=True, slots=True)
class RunEnded(EngineEvent):
    kind: ClassVar[str] = "end"
    job: str
    tenant: str
    state: str
    exit_code: int


@dataclass(frozen=True, slots=True)
class RunRetagged(EngineEvent):
    """A run's GPUs counted anew as borrowed or as owned (its tenant's entitlement)."""

    kind: ClassVar[str] = "retag"
    job: str
    tenant: str
    borrowed: bool


@dataclass(frozen=True, slots=True)
class NodeHealthSet(EngineEvent):
    kind: ClassVar[str] = "node-health"
    node: int
    health: str
    reason: str


@dataclass(frozen=True, slots=True)
class JobReleased(EngineEvent):
    """A job held for its dependencies may now run: it enters the queue (owed from now)."""

    kind: ClassVar[str] = "release"
    job: str
    tenant: str
    after: str  # the clauses it waited for


@dataclass(frozen=True, slots=True)
class DependencyNeverMet(EngineEvent):
    """What a held job waits for can no longer happen (``dependency`` ended as it did):
    it ends cancelled, or (``ended`` False) stays pending with that reason."""

    kind: ClassVar[str] = "dependency-never-met"
    job: str
    tenant: str
    dependency: str
    detail: str
    ended: bool


@dataclass(frozen=True, slots=True)
class StartHeld(EngineEvent):
    """A start the policy decided that the engine held (``engine/powercap.py``: it would
    have passed the site power cap); the job waits with ``reason``."""

    kind: ClassVar[str] = "hold"
    job: str
    tenant: str
    gpus: int
    policy: str
    reason: str
    detail: str


DecisionSink = Callable[[dict[str, Any]], None]
Observer = Callable[[EngineEvent], None]
CycleWatcher = Callable[[int, "Decisions"], None]  # (the cycle's time, what it decided)


class Emitter:
    """Where the engine's events go: each observer gets the typed record, each sink its
    JSON form (the decision log), built once per event. Cycle watchers see every cycle's
    decisions whole, waits included (which make no event), before they are applied."""

    def __init__(self) -> None:
        self.sinks: list[DecisionSink] = []
        self.observers: list[Observer] = []
        self.cycle_watchers: list[CycleWatcher] = []

    def emit(self, event: EngineEvent) -> None:
        for observer in self.observers:
            observer(event)
        if self.sinks:
            entry = event.to_json()
            for sink in self.sinks:
                sink(entry)
