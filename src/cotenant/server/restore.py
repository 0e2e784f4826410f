"""Starting the live engine from the store: the jobs it holds, reconciled with what the
backend reports it runs (``engine/restore.py``), each correction stored and audited."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from cotenant.cluster.state import Placement
from cotenant.cluster.topology import Topology
from cotenant.engine.core import Engine
from cotenant.engine.restore import ReportedRun, SavedJob, restore_jobs
from cotenant.model.jobs import JobSpec, JobState
from cotenant.server.runner import Runner
from cotenant.store import repo
from cotenant.store.mapping import placement_from_row, spec_from_row
from cotenant.store.repo import Row, Store
from cotenant.store.writer import Tx

log = logging.getLogger("cotenant.server.service")


def restore(
    runner: Runner,
    store: Store,
    topo: Topology,
    pools: Mapping[str, tuple[Topology, int]] | None = None,
) -> None:
    """Rebuild the engine from the store, reconciled with what the backend reports
    (each correction audited), and audit the start. With pools (``pools``: each one's
    topology and the offset of its nodes in the server's node space), the router first
    reads back the routing decisions, then each job goes back to the engine it was on;
    a pending job never routed is routed again."""
    engine, recorder, router = runner.engine, runner.recorder, runner.router
    pools = pools or {}
    if router is not None:
        router.load(store.routes())
    saved: dict[str | None, list[SavedJob]] = {}
    again: list[JobSpec] = []
    for row in store.live_jobs():
        job = saved_job(row)
        where = row.get("route")
        if router is None or where not in pools:
            where = None
        if (
            router is not None
            and where is None
            and router.unrouted(job.spec)
            and job.state is JobState.PENDING
            and job.first_start_s is None
        ):
            again.append(job.spec)
            continue
        if router is not None and where is not None:
            offset = pools[where][1]
            p = job.placement
            if p is not None:
                p = Placement(tuple(n - offset for n in p.nodes), p.gpus)
            job = replace(job, spec=router.on_pool(job.spec), placement=p)
        saved.setdefault(where, []).append(job)
    runs, fixes = restore_jobs(engine, saved.get(None, []), reported_runs(engine, topo))
    opened = [(engine, runs)]
    for name, (ptopo, _) in pools.items():
        assert router is not None
        peng = router.pools[name]
        pruns, pfixes = restore_jobs(peng, saved.get(name, []), reported_runs(peng, ptopo))
        runs, fixes = runs + pruns, fixes + pfixes
        opened.append((peng, pruns))
    for eng, some in opened:
        for run in some:
            if run.state in (JobState.RUNNING, JobState.RECLAIMING):
                since = eng.open_usage().get(run.id)
                if since is not None:
                    recorder.usage_since[run.id] = since[0]
    if router is not None:
        live = {r.spec.id for r in runs} | {s.id for s in again}
        router.restored(opened[0][1], live)
    for spec in again:
        runner.enqueue(spec)  # routed when the engine first wakes (its decision recorded)
    now = runner.clock.now()
    running = sum(1 for r in runs if r.state is not JobState.PENDING)
    payload = {
        "pending": len(runs) - running + len(again),
        "running": running,
        "speed": runner.speed,
    }
    rows = [recorder.job_columns(runner.engine_of(f.job).jobs[f.job], now) for f in fixes]

    def op(tx: Tx) -> None:
        repo.update_jobs(tx, rows)
        for f in fixes:
            tx.audit(now, "restore-corrected", f.payload())
        tx.audit(now, "service-started", payload)

    store.writer.call(op)
    for f in fixes:
        log.warning("restore: job %s %s: %s", f.job, f.action, f.why)


def reported_runs(engine: Engine, topo: Topology) -> dict[str, ReportedRun] | None:
    """What a backend with memory reports it runs (None: the digital twin)."""
    runs = getattr(engine.backend, "runs", None)
    if runs is None:
        return None
    index = {n: i for i, n in enumerate(topo.node_names)}
    out: dict[str, ReportedRun] = {}
    for r in runs():
        gpus = getattr(r, "gpus", None)
        if gpus is None:
            gpus = tuple(len(ids) for ids in r.gpu_ids)
        if any(n not in index for n in r.nodes) or 0 in gpus:
            continue  # not holding GPUs here (stopped, being released)
        pairs = sorted(zip((index[n] for n in r.nodes), gpus, strict=True))
        placement = Placement(tuple(n for n, _ in pairs), tuple(g for _, g in pairs))
        out[r.job_id] = ReportedRun(r.job_id, r.attempt, placement)
    return out


def saved_job(row: Row) -> SavedJob:
    return SavedJob(
        spec=spec_from_row(row),
        state=JobState(row["state"]),
        placement=placement_from_row(row),
        borrowed=bool(row["borrowed"]),
        start_s=row["start_s"],
        first_start_s=row["first_start_s"],
        usage_since_s=row["usage_since_s"],
        attempt=row["attempt"],
        work_saved_s=row["work_saved_s"],
        preemptions=row["preemptions"],
        reason=row["reason"],
    )
