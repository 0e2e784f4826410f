"""Starting the live engine from the store: the jobs it holds, reconciled with what the
backend reports it runs (``engine/restore.py``), each correction stored and audited."""

from __future__ import annotations

import logging

from cotenant.cluster.state import Placement
from cotenant.cluster.topology import Topology
from cotenant.engine.restore import ReportedRun, SavedJob, restore_jobs
from cotenant.model.jobs import JobState
from cotenant.server.runner import Runner
from cotenant.store import repo
from cotenant.store.mapping import placement_from_row, spec_from_row
from cotenant.store.repo import Row, Store
from cotenant.store.writer import Tx

log = logging.getLogger("cotenant.server.service")


def restore(runner: Runner, store: Store, topo: Topology) -> None:
    """Rebuild the engine from the store, reconciled with what the backend reports
    (each correction audited), and audit the start."""
    engine, recorder = runner.engine, runner.recorder
    saved = [saved_job(r) for r in store.live_jobs()]
    runs, fixes = restore_jobs(engine, saved, reported_runs(runner, topo))
    for run in runs:
        if run.state in (JobState.RUNNING, JobState.RECLAIMING):
            since = engine.open_usage().get(run.id)
            if since is not None:
                recorder.usage_since[run.id] = since[0]
    now = runner.clock.now()
    running = sum(1 for r in runs if r.state is not JobState.PENDING)
    payload = {
        "pending": len(runs) - running,
        "running": running,
        "speed": runner.speed,
    }
    rows = [recorder.job_columns(engine.jobs[f.job], now) for f in fixes]

    def op(tx: Tx) -> None:
        repo.update_jobs(tx, rows)
        for f in fixes:
            tx.audit(now, "restore-corrected", f.payload())
        tx.audit(now, "service-started", payload)

    store.writer.call(op)
    for f in fixes:
        log.warning("restore: job %s %s: %s", f.job, f.action, f.why)


def reported_runs(runner: Runner, topo: Topology) -> dict[str, ReportedRun] | None:
    """What a backend with memory reports it runs (None: the digital twin)."""
    runs = getattr(runner.engine.backend, "runs", None)
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
