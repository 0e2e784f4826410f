"""Cotenant's own plain CSV trace: one row per job, the JobSpec fields by name.

Required columns: ``id,tenant,submit_s,gpus,duration_s``. Optional columns:
``kind,constraint,checkpoint_interval_s,priority,estimate_s,accelerator,name``;
an empty cell takes the JobSpec default. Integers only (seconds, GPUs). Any
other trace can be written in this format with :func:`write_csv`, so a replay
can be pinned to a file that a person can read and edit.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TypeVar

from cotenant.model.errors import SpecError
from cotenant.model.jobs import Constraint, JobKind, JobSpec
from cotenant.traces.base import (
    Collector,
    Options,
    RowError,
    Trace,
    cell,
    open_csv,
    optional_cell,
    parse_int,
)

REQUIRED = ("id", "tenant", "submit_s", "gpus", "duration_s")
OPTIONAL = (
    "kind",
    "constraint",
    "checkpoint_interval_s",
    "priority",
    "estimate_s",
    "accelerator",
    "name",
)
KINDS = {k.value: k for k in JobKind}
CONSTRAINTS = {c.value: c for c in Constraint}
E = TypeVar("E", JobKind, Constraint)


def _choice(text: str, field: str, allowed: dict[str, E], default: E) -> E:
    if not text:
        return default
    try:
        return allowed[text.lower()]
    except KeyError:
        valid = ", ".join(sorted(allowed))
        raise RowError(field, f"unknown {field} {text!r}; valid: {valid}") from None


def parse_row(row: list[str], cols: dict[str, int]) -> JobSpec:
    """One row to a JobSpec; raises RowError naming the first bad field."""
    estimate = optional_cell(row, cols, "estimate_s")
    checkpoint = optional_cell(row, cols, "checkpoint_interval_s")
    priority = optional_cell(row, cols, "priority")
    return JobSpec(
        id=cell(row, cols, "id"),
        tenant=cell(row, cols, "tenant"),
        submit_s=parse_int(cell(row, cols, "submit_s"), "submit_s", minimum=0),
        gpus=parse_int(cell(row, cols, "gpus"), "gpus", minimum=1),
        duration_s=parse_int(cell(row, cols, "duration_s"), "duration_s", minimum=1),
        kind=_choice(optional_cell(row, cols, "kind"), "kind", KINDS, JobKind.EXPERIMENT),
        constraint=_choice(
            optional_cell(row, cols, "constraint"), "constraint", CONSTRAINTS, Constraint.AUTO
        ),
        checkpoint_interval_s=(
            parse_int(checkpoint, "checkpoint_interval_s", minimum=0) if checkpoint else 0
        ),
        priority=parse_int(priority, "priority") if priority else 0,
        estimate_s=parse_int(estimate, "estimate_s", minimum=1) if estimate else None,
        accelerator=optional_cell(row, cols, "accelerator") or None,
        name=optional_cell(row, cols, "name"),
    )


def load_csv(
    path: str | Path,
    *,
    strict: bool = False,
    limit: int | None = None,
    start_s: int | None = None,
    end_s: int | None = None,
    max_gpus: int | None = None,
) -> Trace:
    """Load a cotenant CSV trace. Accelerator names are not checked here: a trace's
    own kinds (``ali-T4``) may be registered only when its cluster is built."""
    out = Collector(str(path), Options(strict, limit, start_s, end_s, max_gpus))
    first_line: dict[str, int] = {}
    with open_csv(path, REQUIRED, what="CSV trace") as (rows, cols):
        unknown = sorted(c for c in cols if c and c not in REQUIRED and c not in OPTIONAL)
        for line, row in rows:
            try:
                job = parse_row(row, cols)
                if job.id in first_line:
                    first = first_line[job.id]
                    raise RowError("id", f"duplicate id {job.id!r}, first on line {first}")
            except RowError as e:
                out.bad(line, e.field, e.problem)
                continue
            first_line[job.id] = line
            out.offer(line, job)
    notes = [f"ignored unknown column(s): {', '.join(unknown)}"] if unknown else []
    return out.build(Path(path).stem, notes=notes)


def write_csv(trace: Trace, path: str | Path) -> None:
    """Write ``trace.jobs`` with every column, so loading it back gives the same jobs.

    Quotas, nodes and job commands are not part of the format and are not written.
    """
    p = Path(path)
    try:
        with p.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(REQUIRED + OPTIONAL)
            for j in trace.jobs:
                w.writerow(
                    (
                        j.id,
                        j.tenant,
                        j.submit_s,
                        j.gpus,
                        j.duration_s,
                        j.kind.value,
                        j.constraint.value,
                        j.checkpoint_interval_s,
                        j.priority,
                        "" if j.estimate_s is None else j.estimate_s,
                        j.accelerator or "",
                        j.name,
                    )
                )
    except OSError as e:
        raise SpecError("path", f"cannot write CSV trace {p}: {e.strerror}") from None
