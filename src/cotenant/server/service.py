"""The live server's root object: its parts wired together, and the operations the
routers, the CLI and the demo call, each handed to the part that owns it.

The parts (each in its own module):
- ``Runner`` (``runner.py``): the engine on the wall clock in its own thread, behind a
  lock, fed by an inbox of committed submissions; its lag and its ``Status``.
- ``Recorder`` (``recorder.py``): what the engine decides, written to the store after
  every step in one durable transaction; the job book kept in step.
- ``JobService`` (``jobs.py``), ``TenantService`` (``tenants.py``), ``KeyAdmin``
  (``keys.py``), ``UsageService`` (``usage.py``): one per router; the admin checks are
  functions in ``health.py``; ``restore.py`` starts the engine from the store.

Threads: the engine thread; the writer thread (``store.writer``) commits every write,
batching concurrent ones; API threads never take the engine lock to submit: a
submission is committed to the store (with its audit entry) and only then handed to the
engine, so nothing accepted is lost on a crash and the submit latency does not depend on
how long a cycle takes.

While the store cannot take writes the engine starts nothing new (its pending jobs say
``store-unavailable``); running work goes on, and its ends are recorded when the store
is back. Requests that need a write answer 503.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from cotenant.audit.chain import canonical_json
from cotenant.backends import BACKENDS, get_backend
from cotenant.backends.base import Backend
from cotenant.cluster.topology import ClusterSpec, Topology
from cotenant.contracts.schema import ContractTable
from cotenant.engine.clock import LiveClock
from cotenant.engine.core import Engine
from cotenant.engine.keepup import GcPauses, KeepUp
from cotenant.federation.metering import PoolBill
from cotenant.federation.providers import ProviderSet
from cotenant.metering.ledger import UsageLedger
from cotenant.metering.rating import Invoice
from cotenant.metering.run import parse_metering_settings
from cotenant.model.contracts import Contract
from cotenant.model.dependencies import OnNeverMet
from cotenant.model.errors import SpecError
from cotenant.scheduler.decisions import Reason
from cotenant.server import health
from cotenant.server.bootstrap import (
    CLOCK_META,
    ENERGY_META,
    SLURM_CLUSTERS_META,
    slurm_clusters,
    slurm_comment_prefix,
)
from cotenant.server.jobs import JobService
from cotenant.server.keys import IssuedKey, KeyAdmin, KeyRing, Principal, Role
from cotenant.server.overflow import (
    Router,
    live_providers,
    pool_engine,
    pool_state_dir,
    pool_topology,
)
from cotenant.server.pipelines import PipelineService
from cotenant.server.readmodel import JobBook
from cotenant.server.restore import restore
from cotenant.server.runner import Runner
from cotenant.server.settings import Settings
from cotenant.server.status import Status
from cotenant.server.tenants import TenantService
from cotenant.server.usage import PoolUsage, ProviderUsage, UsageService
from cotenant.store import repo
from cotenant.store.mapping import KeyRecord
from cotenant.store.repo import Row, Store
from cotenant.store.usage import StoredUsage


class Service:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        spec = store.cluster_spec()
        if spec is None:
            raise SpecError("db", "the store holds no cluster; start with --demo or --scenario")
        raw_clusters = store.meta(SLURM_CLUSTERS_META)
        if raw_clusters is not None:  # each Slurm cluster a provider: no gang spans two
            from cotenant.backends.slurm_clusters import label_providers

            spec = label_providers(spec, json.loads(raw_clusters))
        self.topo = Topology(spec)
        start_s = self._anchor_clock()
        contracts: dict[str, Contract] = store.contracts()
        names: set[str] = {r["name"] for r in store.tenants()}  # (rows: the store's own)
        self._pool_space(settings, spec, names)  # (pools: server/overflow.py)
        self.runner = Runner(
            store,
            settings,
            start_s,
            self.topo,
            contracts.values(),
            sorted(names),
            self._backend(),
            self.node_names,
        )
        if self.providers is not None:
            self._add_pools(contracts, start_s)
        # The site's energy figures (the seeding scenario's [energy]): its power cap binds
        # the live scheduler exactly as it binds the twin.
        raw_energy = store.meta(ENERGY_META)
        self.engine.site = parse_metering_settings(
            json.loads(raw_energy) if raw_energy else None
        ).site
        self.keys = KeyRing(store.active_keys())
        self.gc_pauses = GcPauses()  # (measured while the server runs)
        self.jobs = JobService(store, settings, self.topo, self.runner, names)
        self.pipelines = PipelineService(store, settings, self.runner, self.jobs, names)
        self.engine.deps.lookup = store.job_tenant_state  # jobs ended before a restart
        self.engine.deps.on_never_met = OnNeverMet(settings.dependency_never_met)
        self.tenants = TenantService(store, self.topo, self.runner, names, contracts)
        self.key_admin = KeyAdmin(store, self.keys, names, self.clock.now)
        self.usage = UsageService(store, self.topo, names, contracts, self.clock.now)
        self.pool_usage = PoolUsage(store, self.providers) if self.providers is not None else None
        # Engine jobs that an in-process owner runs without storing them (the demo's
        # service replicas, owned by its autoscaler): the invariant check counts their
        # GPUs but does not look for them in the store.
        self.unstored_job: Callable[[str], bool] = lambda job_id: False

    def _pool_space(self, settings: Settings, spec: ClusterSpec, tenants: set[str]) -> None:
        """Elastic pools beside the lease (server/overflow.py): their providers and
        terms, and the server's node space (their nodes follow the lease's)."""
        self.providers: ProviderSet | None = None
        self.router: Router | None = None
        self.node_names: tuple[str, ...] = self.topo.node_names
        self.pool_topos: dict[str, Topology] = {}
        self.pool_offsets: dict[str, int] = {}
        if not settings.pools:
            return
        self.providers = live_providers(settings, spec)
        for t in sorted(settings.overflow):
            if t not in tenants:
                raise SpecError(
                    f"overflow.{t}", f"no tenant {t!r}; tenants: {', '.join(sorted(tenants))}"
                )
        for p in self.providers.pools():
            self.pool_topos[p.name] = pool_topology(p)
            self.pool_offsets[p.name] = len(self.node_names)
            self.node_names += self.pool_topos[p.name].node_names

    def _add_pools(self, contracts: dict[str, Contract], start_s: int) -> None:
        """Each pool's engine on the server's clock, and the router between them."""
        assert self.providers is not None
        pools = {
            p.name: pool_engine(
                p,
                self.pool_topos[p.name],
                self.providers,
                contracts,
                self._pool_backend(p.name),
                self.clock,
                start_s,
            )
            for p in self.providers.pools()
        }
        self.router = Router(self.providers, self.engine, pools, self.clock)
        if self.settings.backend != "sim":
            self.router.carry = self._carry_checkpoint
        self.runner.add_pools(self.router, self.pool_offsets)

    # -- the parts' state, read by the routers ------------------------------------------------
    @property
    def engine(self) -> Engine:
        return self.runner.engine

    @property
    def clock(self) -> LiveClock:
        return self.runner.clock

    @property
    def lock(self) -> threading.Lock:
        return self.runner.lock

    @property
    def status(self) -> Status:
        return self.runner.status

    @property
    def keepup(self) -> KeepUp:
        return self.runner.keepup

    @property
    def stepping(self) -> bool:
        return self.runner.stepping

    @property
    def writing(self) -> bool:
        return self.runner.recorder.writing

    @property
    def submitted(self) -> int:
        return self.runner.submitted

    @property
    def error(self) -> str | None:
        return self.runner.error

    @property
    def book(self) -> JobBook:
        return self.runner.recorder.book

    @property
    def contracts(self) -> dict[str, Contract]:
        return self.tenants.contracts

    @property
    def tenant_names(self) -> set[str]:
        return self.tenants.names

    # -- lifecycle --------------------------------------------------------------------------
    def _backend(self) -> Backend:
        """The backend the settings name. Real ones run real work, so in real time."""
        s = self.settings
        if s.backend == "sim" or s.backend not in BACKENDS:
            return get_backend(s.backend)  # (an unknown name fails, listing the valid ones)
        if s.speed != 1:
            raise SpecError(
                "speed", f"the {s.backend} backend runs real work: speed must be 1, got {s.speed:g}"
            )
        if s.backend == "slurm" and s.slurm_clusters:
            return self._slurm_clusters()
        if s.backend == "slurm":
            return get_backend(
                s.backend,
                topo=self.topo,
                state_dir=s.state_dir,
                controller_timeout_s=s.controller_timeout_s,
                comment_prefix=slurm_comment_prefix(self.store),
            )
        return get_backend(s.backend, topo=self.topo, state_dir=s.state_dir)

    def _carry_checkpoint(self, job_id: str, pool: str) -> None:
        """A job migrating to a pool takes its checkpoint along (its data move)."""
        from cotenant.backends.local import safe_name

        base = Path(self.settings.state_dir)
        src = base / "jobs" / safe_name(job_id) / "checkpoint"
        if src.is_dir():
            dst = pool_state_dir(base, pool) / "jobs" / safe_name(job_id) / "checkpoint"
            shutil.copytree(src, dst, dirs_exist_ok=True)

    def _pool_backend(self, pool: str) -> Backend:
        """A pool's backend: the twin's where the server runs simulated, else local
        processes, in a state directory of its own."""
        if self.settings.backend == "sim":
            return get_backend("sim")
        state_dir = pool_state_dir(self.settings.state_dir, pool)
        return get_backend("local", topo=self.pool_topos[pool], state_dir=state_dir)

    def _slurm_clusters(self) -> Backend:
        """Several Slurm clusters, each a provider, with the node names the store was
        seeded with (so the server starts while a controller is away)."""
        from cotenant.backends.slurm_clusters import SlurmClusters

        raw = self.store.meta(SLURM_CLUSTERS_META)
        if raw is None:
            raise SpecError(
                "slurm_clusters", "the store was not seeded with slurm_clusters; use a new --db"
            )
        s = self.settings
        return SlurmClusters(
            self.topo,
            s.state_dir,
            slurm_clusters(s),
            json.loads(raw),
            base_env=os.environ,
            controller_timeout_s=s.controller_timeout_s,
            comment_prefix=slurm_comment_prefix(self.store),
        )

    def _anchor_clock(self) -> int:
        """Service time keeps running while the service is down: now = sim0 + elapsed x speed
        under the previous anchor; then re-anchor at the (possibly new) speed."""
        raw = self.store.meta(CLOCK_META)
        if raw is None:
            raise SpecError("db", "the store has no clock anchor; it was not bootstrapped")
        a = json.loads(raw)
        wall = time.time()
        now = int(a["sim0"] + (wall - a["wall0"]) * a["speed"])
        anchor = canonical_json({"sim0": now, "wall0": wall, "speed": self.settings.speed})
        self.store.writer.call(lambda tx: repo.put_meta(tx, CLOCK_META, anchor))
        return now

    def start(self) -> None:
        """Rebuild the engine from the store, reconciled with what the backend reports
        (each correction audited), then run it."""
        pools = {n: (t, self.pool_offsets[n]) for n, t in self.pool_topos.items()}
        restore(self.runner, self.store, self.topo, pools)
        self.runner.recorder.load_book()
        self.store.writer.listeners.append(self._on_store_state)
        self.store.writer.start()
        self.gc_pauses.install()
        self.runner.start()

    def _on_store_state(self, down: bool) -> None:
        """The writer's state changed (writer thread): hold or release the engine."""
        self.engine.hold = (
            (
                Reason.STORE_UNAVAILABLE.value,
                "the store cannot record decisions now; nothing new starts until it can "
                "(running work goes on)",
            )
            if down
            else None
        )
        self.clock.wake()

    def stop(self) -> None:
        self.gc_pauses.uninstall()
        self.runner.stop()
        self.store.writer.stop()
        for eng in self.runner.engines():
            close = getattr(eng.backend, "close", None)
            if close is not None:
                close()  # the local backend lets go of its state directory; its runs go on

    def healthy(self) -> bool:
        return self.runner.alive()

    def lag_s(self) -> float:
        return self.runner.lag_s()

    def _flush_all(self) -> None:
        """Until everything the engine decided so far is committed (lock held)."""
        self.runner.recorder.flush_all()

    # -- the operations, each handed to the part that owns it ---------------------------------
    def submit_job(
        self, by: Principal, tenant: str, fields: Mapping[str, Any], idempotency_key: str | None
    ) -> Future[tuple[Row, bool]]:
        return self.jobs.submit(by, tenant, fields, idempotency_key)

    def job(self, job_id: str) -> Row:
        return self.jobs.job(job_id)

    def cancel_job(self, job_id: str) -> Row:
        return self.jobs.cancel(job_id)

    def log_file(self, row: Row, attempt: int | None, stream: str) -> tuple[Path, int, bool]:
        return self.jobs.log_file(row, attempt, stream)

    def live_row(self, row: Row) -> Row:
        return self.jobs.live_row(row)

    def why(self, job_id: str) -> Row:
        return self.jobs.why(job_id)

    def create_tenant(
        self, by: Principal, name: str, display_name: str, contract: ContractTable | None
    ) -> Contract | None:
        return self.tenants.create(by, name, display_name, contract)

    def set_contract(self, by: Principal, tenant: str, contract: ContractTable) -> Contract:
        return self.tenants.set_contract(by, tenant, contract)

    def give_notice(self, by: Principal, tenant: str, at_s: int | None) -> Contract:
        return self.tenants.give_notice(by, tenant, at_s)

    def issue_key(self, by: Principal, role: Role, tenant: str | None, name: str) -> IssuedKey:
        return self.key_admin.issue(by, role, tenant, name)

    def revoke_key(self, by: Principal, key_id: str) -> KeyRecord:
        return self.key_admin.revoke(by, key_id)

    def ledger_now(self, tenant: str | None, now: int | None = None) -> UsageLedger:
        return self.usage.ledger_now(tenant, now)

    def usage_now(self, tenant: str | None, now: int | None = None) -> StoredUsage:
        return self.usage.usage_now(tenant, now)

    def invoice(self, tenant: str, month: str, now: int | None = None) -> Invoice:
        return self.usage.invoice(tenant, month, now)

    def usage_by_provider(
        self, tenant: str | None, start_s: int | None, end_s: int | None, now: int
    ) -> ProviderUsage:
        return self.usage.by_provider(tenant, start_s, end_s, now)

    def pool_bills(
        self, tenant: str | None, start_s: int | None, end_s: int | None, now: int
    ) -> list[PoolBill]:
        """Each pool's bill (empty without pools)."""
        if self.pool_usage is None:
            return []
        return self.pool_usage.bills(tenant, start_s, end_s, now)

    def invariants(self) -> list[str]:
        pools = list(self.pool_topos.values())
        return health.invariants(self.runner, self.store, self.topo, self.unstored_job, pools)

    def readiness_problems(self) -> list[str]:
        return health.readiness_problems(self.runner, self.store)
