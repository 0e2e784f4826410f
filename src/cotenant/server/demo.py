"""A live demo: the scenario's workload fed into the running service on its own clock.

``serve --demo`` seeds the store from a scenario (colossus-lease by default); this makes
that cluster busy. The :class:`DemoFeeder`:

- submits the scenario's jobs (training runs, RL runs, experiments) at their times
  through ``Service.submit_job``, exactly as an API client would: each is stored and
  audited before the engine sees it, with an idempotency key, so a restart re-submits
  nothing twice;
- installs the scenario's failure model on the live engine (node, rack and software
  faults, planned drains) from now for the scenario's length;
- runs the scenario's inference services with the twin's autoscaler (their replicas
  are engine jobs that the autoscaler owns; they are not stored and start afresh after
  a restart, as a serving fleet would).

The scenario's times are shifted so that its start is the service clock's start.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from cotenant.faults.injector import install as install_failures
from cotenant.faults.injector import parse_failure_settings
from cotenant.model.jobs import JobSpec
from cotenant.server.keys import Principal, Role
from cotenant.server.service import Service
from cotenant.serving.autoscaler import Autoscaler
from cotenant.serving.queueing import replicas_needed_many
from cotenant.serving.services import parse_services
from cotenant.twin.runtime import workload_of
from cotenant.twin.scenario import Scenario, load_scenario

log = logging.getLogger("cotenant.demo")
FEEDER = Principal("demo-feeder", Role.OPERATOR, None, "demo workload")
DEFAULT_SCENARIO = "colossus-lease"
CATCH_UP_S = 3600  # after a restart, jobs due this long ago are (re-)submitted; older skipped


@dataclass(frozen=True, slots=True)
class ServiceNow:
    """One inference service at this moment, for the console."""

    tenant: str
    name: str
    asked: int
    running: int
    needed: int
    demand_rps: float
    latency_target_s: float
    throughput_rps_per_replica: float
    gpus_per_replica: int


class DemoFeeder:
    def __init__(self, svc: Service, scenario: Scenario | str) -> None:
        self.svc = svc
        self.scenario = load_scenario(scenario) if isinstance(scenario, str) else scenario
        self.jobs: list[JobSpec] = workload_of(self.scenario)
        self.autoscaler: Autoscaler | None = None
        self.submitted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next = 0
        self._shift = 0
        self._faults_until = 0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        sc = self.scenario
        now = self.svc.clock.now()
        # The demo store starts its clock at the scenario's start; a restarted one is later.
        cycles = max(0, (now - sc.start_s) // sc.duration_s)
        self._shift = cycles * sc.duration_s
        self._skip_to(now - CATCH_UP_S)
        end = now + sc.duration_s
        self._faults_until = now
        self._more_faults(now)
        with self.svc.lock:  # the engine waits between steps with the lock released
            services = parse_services(
                sc.sections.get("services"), [t.name for t in sc.tenants], sc.seed, sc.base_dir
            )
            if services:
                self.autoscaler = Autoscaler(self.svc.engine, services, now, end).install()
                self.svc.unstored_job = self.autoscaler.replicas.__contains__
        self.svc.clock.wake()
        self._thread = threading.Thread(target=self._run, name="cotenant-demo", daemon=True)
        self._thread.start()

    def _more_faults(self, now: int) -> None:
        """Keep the failure model's events scheduled a scenario's length ahead: sampled
        for the next stretch once half of the current one has passed."""
        sc = self.scenario
        failures = parse_failure_settings(sc.sections.get("failures"))
        if not failures.enabled or now + sc.duration_s // 2 < self._faults_until:
            return
        start, end = self._faults_until, max(self._faults_until, now) + sc.duration_s
        with self.svc.lock:  # the engine waits between steps with the lock released
            install_failures(
                self.svc.engine, failures.model, sc.seed + failures.seed_offset + start, start, end
            )
        self._faults_until = end
        self.svc.clock.wake()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _due(self, i: int) -> int:
        return self.jobs[i].submit_s + self._shift

    def _skip_to(self, t: int) -> None:
        while self._next < len(self.jobs) and self._due(self._next) < t:
            self._next += 1

    # -- feeding ----------------------------------------------------------------------------
    def _run(self) -> None:
        speed = self.svc.settings.speed
        while not self._stop.is_set():
            now = self.svc.clock.now()
            while self._next < len(self.jobs) and self._due(self._next) <= now:
                self._submit(self.jobs[self._next])
                self._next += 1
            self._more_faults(now)
            if self._next >= len(self.jobs):  # the scenario is over: play it again
                self._shift += self.scenario.duration_s
                self._next = 0
                self._skip_to(now)
                continue
            due = self._due(self._next)
            self._stop.wait(min(1.0, max(0.02, (due - now) / speed)))

    def _submit(self, spec: JobSpec) -> None:
        fields: dict[str, Any] = {
            "gpus": spec.gpus,
            "duration_s": spec.duration_s,
            "kind": spec.kind.value,
            "constraint": spec.constraint.value,
            "checkpoint_interval_s": spec.checkpoint_interval_s,
            "priority": spec.priority,
            "estimate_s": spec.estimate_s,
            "accelerator": spec.accelerator,
            "name": spec.name or spec.id,
            "command": list(spec.command),
        }
        key = f"demo-{self._shift}-{spec.id}"
        try:
            self.svc.submit_job(FEEDER, spec.tenant, fields, key).result(60)
            self.submitted += 1
        except Exception as e:  # one bad job must not stop the demo
            log.warning("demo job %s not submitted: %s", spec.id, e)

    # -- services ---------------------------------------------------------------------------
    def services_now(self) -> list[ServiceNow]:
        """Each service's replicas against its demand now (read without the engine lock:
        counters and a copy of the replica list, at worst one step old)."""
        sc = self.autoscaler
        if sc is None:
            return []
        t = self.svc.status.t or self.svc.clock.now()
        running = [0] * len(sc.services)
        for r in list(sc.replicas.values()):
            if r.running_since is not None:
                running[r.service] += 1
        out = []
        for i, rec in enumerate(sc.services):
            spec = rec.cfg.spec
            curve = rec.curve
            k = int(np.searchsorted(curve.times_s, t, side="right")) - 1
            rps = float(curve.rps[k]) if k >= 0 else 0.0
            need = int(
                replicas_needed_many(
                    np.array([rps]),
                    spec.throughput_rps_per_replica,
                    spec.latency_target_s,
                    spec.latency_quantile,
                    0,
                    None,
                    spec.servers_per_replica,
                )[0]
            )
            out.append(
                ServiceNow(
                    spec.tenant,
                    spec.name,
                    rec.asked,
                    running[i],
                    need,
                    rps,
                    spec.latency_target_s,
                    spec.throughput_rps_per_replica,
                    spec.gpus_per_replica,
                )
            )
        return out


def start_demo(svc: Service) -> DemoFeeder | None:
    """The live demo workload, started, when the settings ask for it (``serve --demo``
    on the default scenario, or ``--workload``); else None."""
    s = svc.settings
    if not s.live_workload:
        return None
    feeder = DemoFeeder(svc, s.seed_scenario or DEFAULT_SCENARIO)
    feeder.start()
    return feeder
