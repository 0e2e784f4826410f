"""Pipelines: submit a pipeline's stages in one committed write, read a pipeline with its
stages, cancel it whole (``api/pipelines.py`` serves them).

A stage is a job row whose ``pipeline`` column names its pipeline; the pipeline row keeps
its name and its stages in submission order (each after the stages it depends on). The
engine takes the stages one by one in that order, so each finds the jobs it waits for;
a stage's dependencies name the other stages by name or any job of the tenant by id.
A pipeline's state is read from its stages (``model.dependencies.pipeline_state``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from cotenant.audit.chain import canonical_json
from cotenant.model import dependencies as deps
from cotenant.model.dependencies import Dependency, DependencyKind
from cotenant.model.errors import NotFound, SpecError, Unprocessable
from cotenant.model.jobs import Constraint, JobKind, JobSpec
from cotenant.server.jobs import JobService, new_job_id
from cotenant.server.keys import Principal
from cotenant.server.runner import Runner
from cotenant.server.settings import Settings
from cotenant.store import repo
from cotenant.store.mapping import pending_job_row
from cotenant.store.repo import Row, Store
from cotenant.store.writer import Tx

LIVE = ("pending", "running", "reclaiming")


def new_pipeline_id() -> str:
    """Sortable by submission time, like job ids."""
    return f"pipe-{time.time_ns() // 1_000_000:012x}-{secrets.token_hex(5)}"


class PipelineService:
    """The pipelines router's operations."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        runner: Runner,
        jobs: JobService,
        tenant_names: set[str],
    ) -> None:
        self.store = store
        self.settings = settings
        self.runner = runner
        self.jobs = jobs
        self.tenant_names = tenant_names  # (the tenant service's set, shared)

    def submit(
        self, by: Principal, tenant: str, name: str, stages: Sequence[Mapping[str, Any]]
    ) -> Future[Row]:
        """Commit a pipeline and its stages in one write, then hand the stages to the
        engine. The future gives the stored pipeline row."""
        if tenant not in self.tenant_names:
            raise NotFound(f"no tenant {tenant!r}")
        now = self.runner.clock.now()
        pid = new_pipeline_id()
        specs = self.stage_specs(tenant, pid, stages, now)
        row = {
            "id": pid,
            "tenant": tenant,
            "name": name,
            "stages": canonical_json([{"name": s.name, "job": s.id} for s in specs]),
            "submit_s": now,
            "submitted_by": by.key_id,
            "cancelled_s": None,
        }
        recorder, enqueue = self.runner.recorder, self.runner.enqueue

        def enqueue_all() -> None:
            for s in specs:
                enqueue(s)

        def op(tx: Tx) -> Row:
            repo.insert_pipeline(tx, row)
            rows = []
            for s in specs:
                fp = hashlib.sha256(canonical_json({"pipeline": pid, "stage": s.name}).encode())
                rows.append(pending_job_row(s, None, fp.hexdigest(), by.key_id, now))
                repo.insert_job(tx, rows[-1])  # (its seq is set when it is inserted)
            payload = {"pipeline": pid, "tenant": tenant, "stages": [s.id for s in specs]}
            tx.audit(now, "pipeline-submitted", {**payload, "by": by.key_id})
            tx.after_commit(lambda: recorder.add_to_book(rows))
            tx.after_commit(enqueue_all)
            return row

        return recorder.write(op)

    def stage_specs(
        self, tenant: str, pipeline_id: str, stages: Sequence[Mapping[str, Any]], now: int
    ) -> list[JobSpec]:
        """The stages as job specs, each after the stages it depends on; refuses (naming
        the field) a repeated stage name, a stage the cluster cannot hold, a dependency on
        an unknown or foreign job (404, as for a job that does not exist) and a cycle."""
        index: dict[str, int] = {}
        for i, st in enumerate(stages):
            if st["name"] in index:
                raise SpecError(
                    f"stages[{i}].name", f"{st['name']!r} names stage {index[st['name']]} too"
                )
            index[st["name"]] = i
        ids = {name: new_job_id() for name in index}
        specs: dict[str, JobSpec] = {}
        inside: dict[str, list[str]] = {}
        for i, st in enumerate(stages):
            at = f"stages[{i}]"
            try:
                self.jobs.check_fits(st)
            except SpecError as e:
                raise SpecError(f"{at}.{e.field}", e.problem) from None
            if self.settings.backend != "sim" and not st.get("command"):
                raise Unprocessable(
                    f"{at}.command", f"the {self.settings.backend} backend runs real processes"
                )
            take = bool(st.get("take_nodes"))
            after = [
                Dependency(kind, tuple(ids.get(r, r) for r in dict.fromkeys(refs)), take)
                for kind in DependencyKind
                if (refs := st.get(kind.value) or ())
            ]
            if take and not after:
                raise SpecError(f"{at}.{deps.NO_DEPENDENCY[0]}", deps.NO_DEPENDENCY[1])
            outside = [
                Dependency(d.kind, tuple(j for j in d.jobs if j not in ids.values()), take)
                for d in after
            ]
            own = [d for d in outside if d.jobs]
            try:
                deps.check_refs(ids[st["name"]], tenant, own, self.jobs.tenant_of_job)
            except SpecError as e:
                raise SpecError(f"{at}.{e.field}", e.problem) from None
            inside[st["name"]] = [r for d in after for r in index if ids[r] in d.jobs]
            specs[st["name"]] = JobSpec(
                id=ids[st["name"]],
                tenant=tenant,
                gpus=st["gpus"],
                duration_s=st["duration_s"],
                submit_s=now,
                kind=JobKind(st.get("kind", JobKind.EXPERIMENT)),
                constraint=Constraint(st.get("constraint", Constraint.AUTO)),
                checkpoint_interval_s=st.get("checkpoint_interval_s", 0),
                priority=st.get("priority", 0),
                estimate_s=st.get("estimate_s"),
                accelerator=st.get("accelerator"),
                name=st["name"],
                command=tuple(st.get("command", ())),
                after=tuple(after),
                pipeline=pipeline_id,
                providers=tuple(st.get("providers") or ()),
            )
        try:
            order = deps.topological(inside)
        except SpecError as e:
            raise SpecError("stages", e.problem) from None
        return [specs[name] for name in order]

    def cancel(self, row: Row) -> Row:
        """Cancel every stage not yet ended, the last first (none is released meanwhile);
        the pipeline as stored afterwards."""
        stages = [s["job"] for s in _stages(row)]
        engine = self.runner.engine

        def cancel() -> None:
            for job_id in reversed(stages):
                run = engine.jobs.get(job_id)
                if run is not None and run.state.value in LIVE:
                    engine.cancel(job_id)

        self.runner.call(cancel)
        now = self.runner.clock.now()
        self.store.writer.call(lambda tx: _cancelled(tx, row["id"], now))
        return self.store.pipeline(row["id"]) or row

    def doc(self, row: Row) -> dict[str, Any]:
        """A stored pipeline with its stages as they are now (a pending stage's reason as
        the engine sees it), its state, and its makespan once every stage has ended."""
        stages = _stages(row)
        rows = self.store.jobs_by_id(s["job"] for s in stages)
        jobs = {r["id"]: self.jobs.live_row(r) for r in rows}
        out_stages = []
        for s in stages:
            j = jobs[s["job"]]
            out_stages.append(
                {
                    "name": s["name"],
                    "job": s["job"],
                    "state": j["state"],
                    "reason": j["reason"],
                    "reason_detail": j["reason_detail"],
                    "after": _after_names(j, stages),
                    "gpus": j["gpus"],
                    "first_start_s": j["first_start_s"],
                    "end_s": j["end_s"],
                }
            )
        state = deps.pipeline_state(
            (st["state"], st["reason"], st["first_start_s"] is not None) for st in out_stages
        )
        ended = state in ("completed", "cancelled", "failed")
        ends = [st["end_s"] for st in out_stages if st["end_s"] is not None]
        end = max(ends) if ended and ends else None
        return {
            "id": row["id"],
            "tenant": row["tenant"],
            "name": row["name"],
            "state": state,
            "submit_s": row["submit_s"],
            "submitted_by": row["submitted_by"],
            "cancelled_s": row["cancelled_s"],
            "end_s": end,
            "makespan_s": None if end is None else end - row["submit_s"],
            "stages": out_stages,
        }


def _cancelled(tx: Tx, pipeline_id: str, now: int) -> None:
    repo.pipeline_cancelled(tx, pipeline_id, now)
    tx.audit(now, "pipeline-cancelled", {"pipeline": pipeline_id})


def _stages(row: Row) -> list[dict[str, str]]:
    out: list[dict[str, str]] = json.loads(row["stages"])
    return out


def _after_names(job: Row, stages: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The stage's dependencies, other stages by their names."""
    names = {s["job"]: s["name"] for s in stages}
    raw = json.loads(job.get("after") or "[]")
    return [
        {
            "kind": d["kind"],
            "jobs": [names.get(j, j) for j in d["jobs"]],
            "take_nodes": bool(d.get("take_nodes")),
        }
        for d in raw
    ]
