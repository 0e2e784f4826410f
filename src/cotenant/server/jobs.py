"""Jobs: submit (stored and audited first, then handed to the engine), read with the
engine's live reason, cancel, and find a run's log files."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from cotenant.audit.chain import canonical_json
from cotenant.cluster.topology import Topology
from cotenant.federation.providers import PoolProvider
from cotenant.model import dependencies
from cotenant.model.accelerators import CATALOGUE
from cotenant.model.errors import Conflict, NotFound, SpecError, Unprocessable
from cotenant.model.jobs import Constraint, JobKind, JobSpec, JobState
from cotenant.server.keys import Principal
from cotenant.server.recorder import TERMINAL
from cotenant.server.runner import Runner
from cotenant.server.settings import Settings
from cotenant.store import repo
from cotenant.store.mapping import pending_job_row
from cotenant.store.repo import Row, Store
from cotenant.store.writer import Tx

_BOOK = "job-book"  # Tx.pending: the rows of the jobs the batch stored (for the book)
RUNNING_STATES = ("running", "reclaiming")


def new_job_id() -> str:
    """Sortable by submission time: milliseconds, then randomness."""
    return f"job-{time.time_ns() // 1_000_000:012x}-{secrets.token_hex(5)}"


class JobService:
    """The jobs router's operations."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        topo: Topology,
        runner: Runner,
        tenant_names: set[str],
    ) -> None:
        self.store = store
        self.settings = settings
        self.topo = topo
        self.runner = runner
        self.tenant_names = tenant_names  # (the tenant service's set, shared)

    def submit(
        self, by: Principal, tenant: str, fields: Mapping[str, Any], idempotency_key: str | None
    ) -> Future[tuple[Row, bool]]:
        """Commit a submission, then queue it for the engine. The future gives the stored row
        and whether it is new (False: an earlier submission with the same idempotency key)."""
        if tenant not in self.tenant_names:
            raise NotFound(f"no tenant {tenant!r}")
        fields = dependencies.without_empty(fields)  # (the fingerprint of a plain job as before)
        if not fields.get("providers"):
            fields.pop("providers", None)  # (likewise: a job that names none)
        self.check_fits(fields, tenant)
        if self.settings.backend != "sim" and not fields.get("command"):
            raise Unprocessable(
                "command",
                f"the {self.settings.backend} backend runs real processes: give the job a "
                "command (cotenant jobs submit ... -- COMMAND ARGS)",
            )
        fingerprint = hashlib.sha256(
            canonical_json({"tenant": tenant, **fields}).encode()
        ).hexdigest()
        now = self.runner.clock.now()
        spec = _spec_of(tenant, fields, now)
        dependencies.check_refs(spec.id, tenant, spec.after, self.tenant_of_job)
        recorder = self.runner.recorder
        op = _submission(
            spec, by, idempotency_key, fingerprint, now, recorder.add_to_book, self.runner.enqueue
        )
        return recorder.write(op)

    def tenant_of_job(self, job_id: str) -> str | None:
        """The tenant of a stored job (None: there is none)."""
        found = self.store.job_tenant_state(job_id)
        return None if found is None else found[0]

    def check_fits(self, fields: Mapping[str, Any], tenant: str | None = None) -> None:
        """The cluster (or a pool the job may use) can hold the job (its accelerator,
        its GPUs), and the providers it names exist and are its tenant's; or
        ``SpecError``. Without ``tenant`` (a pipeline's stage) it names no pool."""
        names = tuple(fields.get("providers") or ())
        acc = fields.get("accelerator")
        if acc is not None and acc not in CATALOGUE:
            raise SpecError(
                "accelerator", f"unknown kind {acc!r}; valid: {', '.join(sorted(CATALOGUE))}"
            )
        pools: list[PoolProvider] = []
        if self.runner.router is not None:
            pools = self._check_providers(names, tenant, fields)
        fit = [p for p in pools if acc is None or acc == p.accelerator]
        if pools and names and not fit and not self._names_lease(names):
            kinds = ", ".join(sorted({p.accelerator for p in pools}))
            raise SpecError("accelerator", f"the pools it accepts have no {acc}; they have {kinds}")
        if fit and (names and not self._names_lease(names)):
            most = max(p.max_gpus for p in fit)  # (it accepts only pools)
            if fields["gpus"] > most:
                raise SpecError(
                    "gpus", f"{fields['gpus']} GPUs is more than the pools it accepts have ({most})"
                )
            return
        if fit and fields["gpus"] <= max(p.max_gpus for p in fit):
            return  # (a pool holds it, whatever the lease can)
        if acc is not None and acc not in self.topo.kinds:
            raise SpecError(
                "accelerator",
                f"this cluster has no {acc}; it has {', '.join(self.topo.kinds)}",
            )
        cap = self.topo.capacity_of(acc)
        if fields["gpus"] > cap:
            raise SpecError("gpus", f"{fields['gpus']} GPUs is more than the cluster's {cap}")
        if self.runner.router is None:
            self._check_clusters(names)
        clusters = tuple(n for n in names if n in self.topo.named_providers)
        if clusters:
            most = self.topo.provider_capacity_of(acc, clusters)
            if fields["gpus"] > most:
                raise SpecError(
                    "gpus",
                    f"{fields['gpus']} GPUs is more than any provider it accepts has "
                    f"({most}{' ' + acc if acc else ''}); a gang never spans two",
                )

    def _check_clusters(self, names: tuple[str, ...]) -> None:
        """The clusters a job names exist (a server without pools)."""
        known = self.topo.named_providers
        for k, name in enumerate(names):
            if not known:
                raise SpecError(
                    f"providers[{k}]",
                    "this server runs one cluster: there are no providers to name",
                )
            if name not in known:
                raise SpecError(
                    f"providers[{k}]", f"no provider {name!r}; this server has {', '.join(known)}"
                )
            if name in names[:k]:
                raise SpecError(f"providers[{k}]", f"{name!r} appears twice")

    def _names_lease(self, names: Sequence[str]) -> bool:
        router = self.runner.router
        lease = router.lease_name if router is not None else None
        return any(n == lease or n in self.topo.named_providers for n in names)

    def _check_providers(
        self, names: tuple[str, ...], tenant: str | None, fields: Mapping[str, Any]
    ) -> list[PoolProvider]:
        """The named providers exist (the lease, its clusters, the pools) and its tenant
        may use them; the pools the job may run on (those it names, else its tenant's)."""
        known = self.topo.named_providers
        router = self.runner.router
        assert router is not None
        pools = {p.name: p for p in router.providers.pools()}
        every = (router.lease_name, *known, *pools)
        for k, name in enumerate(names):
            if name not in every:
                raise SpecError(
                    f"providers[{k}]", f"no provider {name!r}; this server has {', '.join(every)}"
                )
            if name in names[:k]:
                raise SpecError(f"providers[{k}]", f"{name!r} appears twice")
        mine = router.providers.terms(tenant).providers if tenant else (router.lease_name,)
        for k, name in enumerate(names):
            group = name if name in pools else router.lease_name
            if group in mine:
                continue
            if tenant is None:
                raise SpecError(f"providers[{k}]", "a pipeline's stages run on the lease")
            raise SpecError(
                f"providers[{k}]",
                f"provider {name!r} is not one tenant {tenant!r} may use "
                f"(its providers: {', '.join(mine)})",
            )
        if dependencies.from_fields(fields) or tenant is None:
            if any(n in pools for n in names):
                raise SpecError("after", "a job with dependencies runs on the lease, not a pool")
            return []  # (it stays on the lease)
        return [pools[n] for n in (names or mine) if n in pools]

    def job(self, job_id: str) -> Row:
        row = self.store.job(job_id)
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        return row

    def cancel(self, job_id: str) -> Row:
        row = self.job(job_id)
        if JobState(row["state"]) in TERMINAL:
            raise Conflict(f"job {job_id!r} is already {row['state']}")

        def cancel() -> None:
            engine = self.runner.engine_of(job_id)
            if job_id not in engine.jobs:
                raise Conflict(f"job {job_id!r} is not live in the engine")
            engine.cancel(job_id)

        self.runner.call(cancel)
        return self.job(job_id)

    def log_file(self, row: Row, attempt: int | None, stream: str) -> tuple[Path, int, bool]:
        """(path, attempt, whether that run is over) of a job's stdout or stderr. The
        files live in the state directory, so they outlive the server that started the run."""
        from cotenant.backends.local import safe_name

        if self.settings.backend == "sim":
            raise NotFound("the sim backend runs no processes: its jobs have no logs")
        last = int(row["attempt"])
        if last < 1:
            raise NotFound(f"job {row['id']!r} has not started yet: no logs")
        n = last if attempt is None else attempt
        if not 1 <= n <= last:
            raise NotFound(f"job {row['id']!r} has no attempt {n} (it has 1 to {last})")
        over = n < last or row["state"] not in RUNNING_STATES
        base = Path(self.settings.state_dir)
        if row.get("route"):  # (a job on a pool: its local backend's own directory)
            from cotenant.server.overflow import pool_state_dir

            base = pool_state_dir(base, row["route"])
        job_dir = base / "jobs" / safe_name(row["id"])
        return job_dir / f"attempt-{n}.{stream}", n, over

    def live_row(self, row: Row) -> Row:
        """A stored job with a pending job's reason as the engine sees it now: the one
        source of ``why`` and of the job's ``reason``, so they agree by construction. A
        read: without the engine's lock (each field read is atomic under the interpreter
        lock, and the engine sets a job's reason as of its last cycle)."""
        if row["state"] != JobState.PENDING.value:
            return row
        engine = self.runner.engine_of(row["id"])
        run = engine.jobs.get(row["id"])
        if run is None or run.state is not JobState.PENDING:
            if row["reason"]:
                return row
            detail = "accepted; the engine has not considered it yet"
            return {**row, "reason": "queued", "reason_detail": detail}
        reason, detail = self.runner.why(row["id"])
        return {**row, "reason": reason, "reason_detail": detail}

    def why(self, job_id: str) -> Row:
        """The job as stored, with its live reason (``live_row``)."""
        return self.live_row(self.job(job_id))


def _spec_of(tenant: str, fields: Mapping[str, Any], now: int) -> JobSpec:
    return JobSpec(
        id=new_job_id(),
        tenant=tenant,
        gpus=fields["gpus"],
        duration_s=fields["duration_s"],
        submit_s=now,
        kind=JobKind(fields.get("kind", JobKind.EXPERIMENT)),
        constraint=Constraint(fields.get("constraint", Constraint.AUTO)),
        checkpoint_interval_s=fields.get("checkpoint_interval_s", 0),
        priority=fields.get("priority", 0),
        estimate_s=fields.get("estimate_s"),
        accelerator=fields.get("accelerator"),
        name=fields.get("name", ""),
        command=tuple(fields.get("command", ())),
        after=dependencies.from_fields(fields),
        providers=tuple(fields.get("providers") or ()),
    )


def _submission(
    spec: JobSpec,
    by: Principal,
    idempotency_key: str | None,
    fingerprint: str,
    now: int,
    add_to_book: Callable[[list[Row]], None],
    enqueue: Callable[[JobSpec], None],
) -> Callable[[Tx], tuple[Row, bool]]:
    """The writer's operation storing a submission (or finding the earlier one with the
    same idempotency key); after commit the book takes it as written (its ``seq`` set by
    the insert) and the engine gets it."""
    tenant = spec.tenant

    def op(tx: Tx) -> tuple[Row, bool]:
        k = (tenant, idempotency_key)
        if idempotency_key is not None:
            prev = tx.pending.get(k)
            if prev is None and not tx.optimistic:  # else the unique constraint checks
                prev = repo.find_idempotent(tx, tenant, idempotency_key)
            if prev is not None:
                if prev["fingerprint"] != fingerprint:
                    raise Conflict(
                        f"idempotency key {idempotency_key!r} was used for a different "
                        f"submission (job {prev['id']})"
                    )
                return prev, False
        row = pending_job_row(spec, idempotency_key, fingerprint, by.key_id, now)
        repo.insert_job(tx, row)
        tx.audit(
            now,
            "job-submitted",
            {"job": spec.id, "tenant": tenant, "gpus": spec.gpus, "by": by.key_id},
        )
        if idempotency_key is not None:
            tx.pending[k] = row
        if _BOOK not in tx.pending:  # the batch's new jobs go to the book once
            tx.pending[_BOOK] = []
            tx.after_commit(lambda: add_to_book(tx.pending[_BOOK]))
        tx.pending[_BOOK].append(row)  # (its seq is set when it is inserted)
        tx.after_commit(lambda: enqueue(spec))
        return row, True

    return op
