"""What the console keeps beside the service: sessions, the charts' time series and
the recent faults. A sampler thread reads the service's published status (never the
engine lock) about twice a second and folds it into the series.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from cotenant.cluster.state import Health
from cotenant.server.demo import DemoFeeder, ServiceNow
from cotenant.server.service import Service
from cotenant.store import repo
from cotenant.store.queries import audit_page
from cotenant.web.series import Series
from cotenant.web.session import Sessions

log = logging.getLogger("cotenant.console")
SERIES_META = "console-series"
FAULT_EVENTS = ("node-health", "interrupt")
SAVE_EVERY_S = 30.0  # and at shutdown; a crash loses at most this much of the charts


class ConsoleState:
    def __init__(
        self, svc: Service, demo: DemoFeeder | None = None, sample_every_s: float = 0.5
    ) -> None:
        self.svc = svc
        self.demo = demo
        self.sessions = Sessions()
        self.series = Series()
        self.faults: deque[dict[str, Any]] = deque(maxlen=500)
        self.sample_every_s = sample_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved = 0.0
        # The faults recorded before this start, from the audit log (newest 500).
        for e in reversed(audit_page(svc.store, None, self.faults.maxlen or 500, FAULT_EVENTS)):
            self.faults.append({**e.payload, "t": e.time, "event": e.kind})
        raw = svc.store.meta(SERIES_META)
        if raw:
            try:
                self.series.loads(raw)
            except (ValueError, KeyError, TypeError, IndexError):
                log.warning("the stored console series are unreadable; starting afresh")

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.svc.engine.sinks.append(self._on_decision)  # O(1) per decision, in the engine
        self._thread = threading.Thread(target=self._run, name="cotenant-console", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.save()

    def _on_decision(self, ev: dict[str, Any]) -> None:
        if ev.get("event") in FAULT_EVENTS:
            self.faults.append(dict(ev))

    def _run(self) -> None:
        while not self._stop.wait(self.sample_every_s):
            try:
                self.sample()
            except Exception:  # a chart is not worth the service: log and go on
                log.exception("console sampler")

    # -- sampling ---------------------------------------------------------------------------
    def sample(self) -> None:
        st = self.svc.status
        if st.t <= 0:
            return
        values: dict[str, float] = {
            "free": st.free_gpus,
            "pending": st.pending,
            "running": st.running,
            "dps": st.decisions_per_s,
            "power_w": st.power_w,
            "healthy_nodes": st.healthy_nodes,
        }
        if st.power_cap_w is not None:
            values["cap_w"] = st.power_cap_w
        for t in self.svc.tenant_names:
            values[f"alloc:{t}"] = st.allocated.get(t, 0)
            values[f"ent:{t}"] = st.entitled.get(t, 0)
            values[f"borrowed:{t}"] = st.borrowed.get(t, 0)
        for s in self.services_now():
            k = f"{s.tenant}/{s.name}"
            values[f"svc_running:{k}"] = s.running
            values[f"svc_needed:{k}"] = s.needed
            values[f"svc_demand:{k}"] = s.demand_rps
            values[f"svc_met:{k}"] = 1.0 if s.running >= s.needed else 0.0
        self.series.add(st.t, values)
        now = time.monotonic()
        if now - self._saved > SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        self._saved = time.monotonic()
        text = self.series.dumps()
        try:
            self.svc.store.writer.submit(lambda tx: repo.put_meta(tx, SERIES_META, text))
        except Exception:  # the writer may have stopped at shutdown
            log.debug("console series not saved", exc_info=True)

    def services_now(self) -> list[ServiceNow]:
        return self.demo.services_now() if self.demo is not None else []

    # -- derived views ----------------------------------------------------------------------
    def health_counts(self) -> dict[str, Any]:
        """Nodes and GPUs by health, per rack and per fabric block (a copy of the array:
        no lock, at worst one step old)."""
        topo = self.svc.topo
        h = np.array(self.svc.engine.state.health, copy=True)
        gpus = topo.node_gpus
        out: dict[str, Any] = {}
        for x in Health:
            m = h == int(x)
            out[x.name.lower()] = {"nodes": int(m.sum()), "gpus": int(gpus[m].sum())}
        racks = []
        for kind, key in ((Health.DOWN, "down"), (Health.DRAINING, "draining")):
            counts = np.bincount(topo.node_rack[h == int(kind)], minlength=topo.n_racks)
            racks.append((key, counts))
        down_r, drain_r = racks[0][1], racks[1][1]
        # Spare: healthy nodes with every GPU free (the owner's reserve is an entitlement,
        # not particular nodes, so the map shows where spare capacity is now).
        free = np.array(self.svc.engine.state.free, copy=True)
        idle = (h == int(Health.HEALTHY)) & (free == gpus)
        idle_r = np.bincount(topo.node_rack[idle], minlength=topo.n_racks)
        out["spare"] = {"nodes": int(idle.sum()), "gpus": int(gpus[idle].sum())}
        out["racks"] = [
            {
                "rack": r,
                "block": int(topo.rack_block[r]),
                "nodes": int(topo.rack_nodes[r]),
                "down": int(down_r[r]),
                "draining": int(drain_r[r]),
                "spare": int(idle_r[r]),
            }
            for r in range(topo.n_racks)
        ]
        return out
