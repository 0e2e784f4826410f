"""The simulated backend: the digital twin's mechanism. A run ends when its work is done."""

from __future__ import annotations

import heapq

from cotenant.backends.base import BackendEvent, JobEnded, StartRequest
from cotenant.model.checkpoints import run_length_s


class SimBackend:
    name = "sim"

    def __init__(self) -> None:
        self._ends: list[tuple[int, str, int]] = []  # (end time, job id, attempt)
        self._live: dict[str, int] = {}  # job id -> attempt currently running

    def run_length_s(self, req: StartRequest) -> int:
        """Restart cost, the work left, and the time spent writing periodic checkpoints."""
        left = max(0, req.spec.duration_s - req.work_saved_s)
        every = req.spec.checkpoint_interval_s
        return req.restart_s + run_length_s(left, every, req.checkpoint_write_s)

    def start(self, req: StartRequest) -> None:
        self._live[req.spec.id] = req.attempt
        heapq.heappush(self._ends, (req.start_s + self.run_length_s(req), req.spec.id, req.attempt))

    def checkpoint(self, job_id: str, now: int) -> None:
        return None  # the engine accounts for the checkpoint; nothing runs here

    def stop(self, job_id: str, now: int) -> None:
        self._live.pop(job_id, None)

    def poll(self, now: int) -> list[BackendEvent]:
        out: list[BackendEvent] = []
        while self._ends and self._ends[0][0] <= now:
            end, job_id, attempt = heapq.heappop(self._ends)
            if self._live.get(job_id) == attempt:
                del self._live[job_id]
                out.append(JobEnded(job_id, attempt, end, 0))
        return out

    def next_event_time(self) -> int | None:
        while self._ends and self._live.get(self._ends[0][1]) != self._ends[0][2]:
            heapq.heappop(self._ends)
        return self._ends[0][0] if self._ends else None
