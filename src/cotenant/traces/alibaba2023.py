"""Alibaba PAI GPU-sharing cluster trace (cluster-trace-gpu-v2023, the ATC'23 FGD trace).

A directory with a node list (``sn,cpu_milli,memory_mib,gpu,model``) and a pod
list (``name,...,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,
deletion_time,scheduled_time``). Times are seconds from the start of the trace.

Choices, each also written to ``Trace.notes``:
- CPU-only pods (no GPU asked) are dropped: cotenant schedules GPUs.
- Fractional requests (``gpu_milli`` < 1000) are rounded UP to whole GPUs:
  cotenant allocates whole GPUs; MIG and GPU sharing are non-goals. The
  GPU-seconds this adds are reported.
- There is no tenant field; the tenant is the QoS class lowercased (``ls``,
  ``be``, ``burstable``, ``guaranteed``), or one tenant named by ``tenant``.
- ``gpu_spec`` lists the models a pod may use (``V100M16|V100M32``); a single
  model becomes the job's accelerator, several leave it None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from cotenant.model.accelerators import AcceleratorKind, register
from cotenant.model.errors import SpecError
from cotenant.model.jobs import Constraint, JobKind, JobSpec
from cotenant.traces.base import (
    Collector,
    Options,
    RowError,
    Trace,
    TraceNode,
    cell,
    open_csv,
    optional_cell,
    parse_int,
)

NODES_FILE = "openb_node_list_gpu_node.csv"
PODS_FILE = "openb_pod_list_default.csv"
NODE_COLUMNS = ("sn", "gpu", "model")
POD_COLUMNS = ("name", "num_gpu", "gpu_milli", "qos", "creation_time", "deletion_time")
EPOCH_2023 = 1_672_531_200  # 2023-01-01T00:00Z; the trace does not publish its start date
BY_QOS = "qos"
TRAINING_MIN_GPUS = 8  # same rule as Philly: a full 8-GPU node or more is a training run


@dataclass(frozen=True, slots=True)
class ModelFigures:
    """Per-GPU figures for one trace model; idle draws are planning assumptions."""

    memory_gb: int
    busy_watts: int
    idle_watts: int
    gpus_per_node: int  # the most GPUs any node of this model has in the published list


# Board power is the vendor TDP of the likely part: T4 70 W; P100 250 W (PCIe);
# V100 300 W (SXM2) in 16 GB and 32 GB; A10 150 W. Idle draw is about 10-15% of TDP.
# G2 and G3 are undisclosed internal codes (see the trace README): memory and power
# are unknown, so we take conservative figures, the smallest memory (16 GB, so no
# job is assumed to fit where it might not) and the highest power (300 W, so energy
# is not under-counted). gpus_per_node is the maximum per model in the node list.
MODELS: dict[str, ModelFigures] = {
    "T4": ModelFigures(16, 70, 10, 4),
    "P100": ModelFigures(16, 250, 30, 2),
    "V100M16": ModelFigures(16, 300, 40, 8),
    "V100M32": ModelFigures(32, 300, 40, 8),
    "A10": ModelFigures(24, 150, 20, 1),
    "G2": ModelFigures(16, 300, 40, 8),
    "G3": ModelFigures(16, 300, 40, 8),
}
UNKNOWN_MODEL = ModelFigures(16, 300, 40, 8)  # a model not in the list above: as G2/G3


def accelerator_name(model: str) -> str:
    return f"ali-{model}"


def register_models(max_gpus_per_node: Mapping[str, int]) -> dict[str, AcceleratorKind]:
    """Register ``ali-<model>`` kinds; the NVLink domain is the whole node.

    A model's node size is the larger of the published maximum and what this node
    list shows, so loading an excerpt and then the full list registers one kind.
    """
    kinds = {}
    for model, seen in sorted(max_gpus_per_node.items()):
        fig = MODELS.get(model, UNKNOWN_MODEL)
        per_node = max(fig.gpus_per_node, seen)
        kinds[model] = register(
            AcceleratorKind(
                accelerator_name(model),
                fig.memory_gb,
                fig.busy_watts,
                fig.idle_watts,
                nvlink_domain=per_node,
                gpus_per_node=per_node,
            )
        )
    return kinds


def load_alibaba2023(
    path: str | Path,
    *,
    strict: bool = False,
    limit: int | None = None,
    start_s: int | None = None,
    end_s: int | None = None,
    max_gpus: int | None = None,
    epoch_s: int = EPOCH_2023,
    tenant: str = BY_QOS,
    checkpoint_interval_s: int = 0,
    pods_file: str = PODS_FILE,
    nodes_file: str = NODES_FILE,
) -> Trace:
    """Load the trace directory; job ids are the pod names.

    ``epoch_s`` is the Unix time of trace second 0, so submit times are Unix
    seconds like every other trace. ``start_s``/``end_s`` are Unix seconds too.
    """
    opts = Options(strict, limit, start_s, end_s, max_gpus)
    root = _trace_dir(path, tenant, checkpoint_interval_s)

    notes: list[str] = []
    nodes, node_out = _nodes(root / nodes_file, opts, notes)
    out = Collector(str(root / pods_file), opts)
    cpu_only = 0
    # Per kept pod, so the notes describe the jobs in the trace, after filtering.
    rounded_milli: dict[str, int] = {}  # milli-GPUs added by rounding up
    unscheduled: set[str] = set()
    several_models: set[str] = set()
    seen: dict[str, int] = {}
    with open_csv(root / pods_file, POD_COLUMNS, what="Alibaba pod list") as (rows, cols):
        for line, row in rows:
            try:
                name, num_gpu, milli, qos, created, started, deleted, sched_text = _pod(
                    row, cols, seen
                )
            except RowError as e:
                out.bad(line, e.field, e.problem)
                continue
            seen[name] = line
            if num_gpu == 0 and milli == 0:
                cpu_only += 1
                continue
            gpus = max(num_gpu, 1)
            duration = max(1, deleted - started)
            if 0 < milli < 1000:
                rounded_milli[name] = gpus * (1000 - milli)
            if not sched_text:
                unscheduled.add(name)
            spec = optional_cell(row, cols, "gpu_spec")
            models = [m for m in spec.split("|") if m and m.lower() != "nan"]
            if len(models) > 1:
                several_models.add(name)
            job = JobSpec(
                id=name,
                tenant=qos.lower() if tenant == BY_QOS else tenant,
                gpus=gpus,
                duration_s=duration,
                submit_s=epoch_s + created,
                kind=JobKind.TRAINING if gpus >= TRAINING_MIN_GPUS else JobKind.EXPERIMENT,
                constraint=Constraint.AUTO,
                checkpoint_interval_s=checkpoint_interval_s,
                accelerator=accelerator_name(models[0]) if len(models) == 1 else None,
                name=name,
            )
            out.offer(line, job, "num_gpu")

    # Node problems come first, their field prefixed so the file is clear.
    out.problems[:0] = [replace(p, field=f"nodes:{p.field}") for p in node_out.problems]
    trace = out.build("alibaba-2023", nodes=nodes)
    notes += _pod_notes(
        trace, cpu_only, rounded_milli, unscheduled, several_models, tenant, epoch_s
    )
    return replace(trace, notes=(*notes, *trace.notes))


def _trace_dir(path: str | Path, tenant: str, checkpoint_interval_s: int) -> Path:
    """The trace directory, once the options are sound."""
    if not tenant:
        raise SpecError("tenant", f"must be {BY_QOS!r} or a tenant name")
    if checkpoint_interval_s < 0:
        raise SpecError(
            "checkpoint_interval_s", f"must not be negative, got {checkpoint_interval_s}"
        )
    root = Path(path)
    if not root.is_dir():
        what = "not found" if not root.exists() else "not a directory"
        raise SpecError("path", f"Alibaba 2023 trace directory {what}: {root}")
    return root


def _pod(
    row: list[str], cols: dict[str, int], seen: Mapping[str, int]
) -> tuple[str, int, int, str, int, int, int, str]:
    """One pod row's name, GPUs, milli-GPUs, QoS, creation, start and deletion times and
    scheduled-time text; a bad cell raises ``RowError``."""
    name = cell(row, cols, "name")
    if name in seen:
        raise RowError("name", f"duplicate pod, first on line {seen[name]}")
    num_gpu = parse_int(cell(row, cols, "num_gpu"), "num_gpu", minimum=0)
    milli = parse_int(cell(row, cols, "gpu_milli"), "gpu_milli", minimum=0)
    if milli > 1000:
        raise RowError("gpu_milli", f"must be at most 1000, got {milli}")
    qos = cell(row, cols, "qos")
    created = parse_int(cell(row, cols, "creation_time"), "creation_time", 0)
    deleted = parse_int(cell(row, cols, "deletion_time"), "deletion_time", 0)
    sched_text = optional_cell(row, cols, "scheduled_time")
    started = parse_int(sched_text, "scheduled_time", 0) if sched_text else created
    if deleted < started:
        raise RowError("deletion_time", f"before the pod started ({deleted} < {started})")
    return name, num_gpu, milli, qos, created, started, deleted, sched_text


def _pod_notes(
    trace: Trace,
    cpu_only: int,
    rounded_milli: Mapping[str, int],
    unscheduled: set[str],
    several_models: set[str],
    tenant: str,
    epoch_s: int,
) -> list[str]:
    """What the loader changed or assumed, for the jobs kept."""
    notes: list[str] = []
    jobs = trace.jobs
    added_milli_s = sum(rounded_milli.get(j.id, 0) * j.duration_s for j in jobs)
    notes.append(f"{cpu_only} CPU-only pods dropped")
    notes.append(
        f"{sum(j.id in rounded_milli for j in jobs)} pods asked for a fraction of a GPU and "
        f"were rounded up to whole GPUs, adding {math.ceil(added_milli_s / 1000)} GPU-seconds "
        f"({_percent(added_milli_s, trace.gpu_seconds * 1000)} of the jobs' GPU-seconds)"
    )
    notes.append(
        "no tenant field: tenant is the QoS class lowercased"
        if tenant == BY_QOS
        else f"no tenant field: every pod belongs to tenant {tenant!r}"
    )
    if n := sum(j.id in unscheduled for j in jobs):
        notes.append(f"{n} pods were never scheduled; their duration runs from creation")
    if n := sum(j.id in several_models for j in jobs):
        notes.append(f"{n} pods allow several GPU models; accelerator left unset")
    notes.append(f"trace second 0 is Unix time {epoch_s}")
    return notes


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _nodes(path: Path, opts: Options, notes: list[str]) -> tuple[list[TraceNode], Collector]:
    """Read the node list and register one accelerator kind per GPU model."""
    out = Collector(str(path), opts)
    rows_ok: list[tuple[str, int, str]] = []
    seen: dict[str, int] = {}
    without_gpus = 0
    with open_csv(path, NODE_COLUMNS, what="Alibaba node list") as (rows, cols):
        for line, row in rows:
            try:
                sn = cell(row, cols, "sn")
                if sn in seen:
                    raise RowError("sn", f"duplicate node, first on line {seen[sn]}")
                gpus = parse_int(cell(row, cols, "gpu"), "gpu", minimum=0)
                model = optional_cell(row, cols, "model")
                if gpus and (not model or model.lower() == "nan"):
                    raise RowError("model", "missing value for a node with GPUs")
            except RowError as e:
                out.bad(line, e.field, e.problem)
                continue
            seen[sn] = line
            if gpus == 0:
                without_gpus += 1
                continue
            rows_ok.append((sn, gpus, model))
    biggest: dict[str, int] = {}
    for _, gpus, model in rows_ok:
        biggest[model] = max(gpus, biggest.get(model, 0))
    kinds = register_models(biggest)
    nodes = [TraceNode(sn, gpus, kinds[model].name) for sn, gpus, model in rows_ok]
    if without_gpus:
        notes.append(f"{without_gpus} nodes without GPUs dropped")
    notes.append(
        f"{len(nodes)} nodes, {sum(n.gpus for n in nodes)} GPUs; models registered as "
        + ", ".join(k.name for k in kinds.values())
    )
    return nodes, out
