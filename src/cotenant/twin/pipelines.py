"""Per pipeline in a run: its makespan, and where its stages' time went before they
started: waiting for the stages they depend on against waiting for capacity.

A stage's wait for its dependencies runs from its submission to its release (the end
of the stage before; 0 for a first stage), or to its end if it never was; its wait for
capacity from its release to its first start (to the end of the run if it never
started). A pipeline's waits are its stages' added up: in a chain a stage waits while
every stage before it waits and runs, so the dependency wait is the larger figure; the
capacity wait is what the scheduler added to the makespan. A pipeline's makespan runs
from its submission to the end of its last stage, once every stage has ended; a
pipeline still running at the end of the run has none (``state`` says so).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from cotenant.engine.core import Engine
from cotenant.engine.jobs import JobRun
from cotenant.model.dependencies import pipeline_state
from cotenant.model.jobs import JobState

H = 3600.0


def pipeline_report(engine: Engine, end_s: int) -> dict[str, Any]:
    """``{"pipelines": [...], "summary": {...}}`` for the pipelines of ``engine``'s jobs
    (grouped by ``spec.pipeline``), in order of pipeline id."""
    groups: dict[str, list[JobRun]] = defaultdict(list)
    for run in engine.jobs.values():
        if run.spec.pipeline:
            groups[run.spec.pipeline].append(run)
    out = [_pipeline(engine, pid, groups[pid], end_s) for pid in sorted(groups)]
    spans = [p["makespan_s"] for p in out if p["makespan_s"] is not None]
    return {
        "pipelines": out,
        "summary": {
            "pipelines": len(out),
            "completed": sum(p["state"] == "completed" for p in out),
            "mean_makespan_h": round(sum(spans) / len(spans) / H, 2) if spans else None,
            "dependency_wait_h": round(sum(p["dependency_wait_s"] for p in out) / H, 2),
            "capacity_wait_h": round(sum(p["capacity_wait_s"] for p in out) / H, 2),
        },
    }


def _pipeline(engine: Engine, pid: str, runs: list[JobRun], end_s: int) -> dict[str, Any]:
    runs.sort(key=lambda r: r.id)
    stages = []
    for r in runs:
        held = r.id in engine.deps.held or r.reason == "dependency-never-met"
        eligible = None if held else engine.deps.eligible_s(r)
        until = r.end_s if r.end_s is not None else end_s
        dep_wait = (until if eligible is None else eligible) - r.spec.submit_s
        if r.first_start_s is not None:
            cap_wait = r.first_start_s - (eligible if eligible is not None else r.spec.submit_s)
        elif eligible is not None and r.state is JobState.PENDING:
            cap_wait = end_s - eligible
        else:
            cap_wait = 0
        stages.append(
            {
                "job": r.id,
                "name": r.spec.name,
                "gpus": r.spec.gpus,
                "state": r.state.value,
                "first_start_s": r.first_start_s,
                "end_s": r.end_s,
                "dependency_wait_s": max(0, dep_wait),
                "capacity_wait_s": max(0, cap_wait),
            }
        )
    state = pipeline_state((r.state.value, r.reason, r.first_start_s is not None) for r in runs)
    submit = min(r.spec.submit_s for r in runs)
    ended = state in ("completed", "failed", "cancelled")
    last = max((r.end_s for r in runs if r.end_s is not None), default=None)
    return {
        "id": pid,
        "tenant": runs[0].tenant,
        "state": state,
        "submit_s": submit,
        "makespan_s": last - submit if ended and last is not None else None,
        "dependency_wait_s": sum(s["dependency_wait_s"] for s in stages),
        "capacity_wait_s": sum(s["capacity_wait_s"] for s in stages),
        "stages": stages,
    }


def pipeline_rows(section: dict[str, Any]) -> list[dict[str, str]]:
    """One row per pipeline for tables (text and HTML): hours, one decimal."""

    def h(s: int | None) -> str:
        return "-" if s is None else f"{s / H:,.1f}"

    return [
        {
            "pipeline": p["id"],
            "tenant": p["tenant"],
            "state": p["state"],
            "stages": " > ".join(
                f"{s['name'].rsplit('-', 1)[-1]} {s['gpus']:,}" for s in p["stages"]
            ),
            "makespan (h)": h(p["makespan_s"]),
            "waited for dependencies (h)": h(p["dependency_wait_s"]),
            "waited for capacity (h)": h(p["capacity_wait_s"]),
        }
        for p in section["pipelines"]
    ]
