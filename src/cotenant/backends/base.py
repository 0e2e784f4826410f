"""The backend interface: a few named operations, typed records across them.

The engine decides; a backend carries decisions out and reports what happened.
The simulated backend (the digital twin) computes outcomes; real backends run
processes or drive Slurm and report what they observe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cotenant.cluster.state import Health, Placement
from cotenant.model.jobs import JobSpec


@dataclass(frozen=True, slots=True)
class StartRequest:
    spec: JobSpec
    attempt: int
    placement: Placement
    node_names: tuple[str, ...]
    start_s: int
    work_saved_s: int  # resume from here
    restart_s: int  # cost paid before useful work resumes
    checkpoint_write_s: int = 0  # time each periodic checkpoint takes to write


# A run the backend could not start through no fault of the job (its cluster's
# controller does not answer): the engine queues the job again instead of failing it.
EXIT_NOT_RUN = -3


@dataclass(frozen=True, slots=True)
class JobEnded:
    job_id: str
    attempt: int
    end_s: int
    exit_code: int  # 0: the work is done; EXIT_NOT_RUN: never ran, requeue; else: failed
    reason: str = ""  # why, for EXIT_NOT_RUN


@dataclass(frozen=True, slots=True)
class NodeHealthChanged:
    node: int
    health: Health
    reason: str


BackendEvent = JobEnded | NodeHealthChanged


class Backend(Protocol):
    name: str

    def start(self, req: StartRequest) -> None: ...

    def checkpoint(self, job_id: str, now: int) -> None:
        """Ask the job to write a checkpoint now (the grace period has begun)."""
        ...

    def stop(self, job_id: str, now: int) -> None: ...

    def poll(self, now: int) -> list[BackendEvent]: ...

    def next_event_time(self) -> int | None:
        """When the backend next has something to report (None: only when polled)."""
        ...
