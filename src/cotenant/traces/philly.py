"""Microsoft Philly (2017) job table, as processed in the Pollux artifact.

Columns: ``timestamp`` (submit time, ``YYYY-MM-DD HH:MM:SS``), ``duration`` (s,
written as a float), ``num_gpus``, ``gpu_time`` (ignored: it is recomputed as
gpus x duration), ``cluster`` (the virtual cluster, which is the tenant).

The timestamps are the cluster's local time with no zone; we read them as UTC.
That keeps every gap between submissions exact (no daylight-saving jumps) and
makes the result independent of the machine's zone; absolute times are shifted
by the unknown local offset, which no replay depends on.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

from cotenant.model.errors import SpecError
from cotenant.model.jobs import Constraint, JobKind, JobSpec
from cotenant.traces.base import (
    Collector,
    Options,
    RowError,
    Trace,
    cell,
    cells,
    open_csv,
    parse_int,
)

COLUMNS = ("timestamp", "duration", "num_gpus", "cluster")
QUOTA_COLUMNS = ("vc", "node num")
QUOTA_FILE = "vc_quota_nodes.csv"
# The trace has no job type. Gangs of a full 8-GPU node or more are treated as
# training runs and smaller jobs as experiments: 8-GPU jobs are 2% of the jobs
# but hold 48% of the GPU-time, which is the usual training/debug split.
TRAINING_MIN_GPUS = 8
_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)


def parse_timestamp(text: str, field: str = "timestamp") -> int:
    """Unix seconds of an ISO-like timestamp; one without a zone is read as UTC."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise RowError(field, f"expected YYYY-MM-DD HH:MM:SS, got {text!r}") from None
    if t.tzinfo is None:
        return (t - _EPOCH) // _SECOND  # as UTC; faster than replace(tzinfo=UTC)
    return int(t.timestamp())


def load_philly(
    path: str | Path,
    *,
    strict: bool = False,
    limit: int | None = None,
    start_s: int | None = None,
    end_s: int | None = None,
    max_gpus: int | None = None,
    quota_path: str | Path | None = None,
    gpus_per_node: int = 8,
    checkpoint_interval_s: int = 0,
) -> Trace:
    """Load ``philly_jobs.csv``; job ``philly-<i>`` is the i-th data row (from 0).

    Quotas come from ``quota_path`` (nodes per virtual cluster) or, when None,
    from ``vc_quota_nodes.csv`` beside the jobs file if there is one; nodes are
    turned into GPUs at ``gpus_per_node`` (Philly had 2-, 4- and 8-GPU nodes; 8
    is the usual assumption).
    """
    opts = Options(strict, limit, start_s, end_s, max_gpus)
    if gpus_per_node < 1:
        raise SpecError("gpus_per_node", f"must be at least 1, got {gpus_per_node}")
    if checkpoint_interval_s < 0:
        raise SpecError(
            "checkpoint_interval_s", f"must not be negative, got {checkpoint_interval_s}"
        )
    out = Collector(str(path), opts)
    rounded = 0
    with open_csv(path, COLUMNS, what="Philly jobs") as (rows, cols):
        positions = [(c, cols[c]) for c in COLUMNS]
        for index, (line, row) in enumerate(rows):
            try:
                stamp, raw, gpus_text, tenant = cells(row, positions)
                submit = parse_timestamp(stamp)
                try:
                    seconds = float(raw)
                except ValueError:
                    raise RowError("duration", f"expected seconds, got {raw!r}") from None
                if not math.isfinite(seconds) or seconds < 0:
                    raise RowError("duration", f"must be a non-negative number, got {raw!r}")
                duration = max(1, math.ceil(seconds))
                if duration != seconds:
                    rounded += 1
                gpus = parse_int(gpus_text, "num_gpus", minimum=1)
            except RowError as e:
                out.bad(line, e.field, e.problem)
                continue
            job = JobSpec(
                id=f"philly-{index}",
                tenant=tenant,
                gpus=gpus,
                duration_s=duration,
                submit_s=submit,
                kind=JobKind.TRAINING if gpus >= TRAINING_MIN_GPUS else JobKind.EXPERIMENT,
                constraint=Constraint.AUTO,
                checkpoint_interval_s=checkpoint_interval_s,
            )
            out.offer(line, job, "num_gpus")

    notes = [
        "timestamp is local time without a zone; read as UTC",
        f"kind: training for jobs of {TRAINING_MIN_GPUS}+ GPUs, experiment below",
    ]
    if rounded:
        notes.append(f"{rounded} durations rounded up to a whole second (at least 1)")
    quotas = _quotas(path, quota_path, gpus_per_node, out, notes)
    return out.build("philly", quotas_gpus=quotas, notes=notes)


def _quotas(
    jobs_path: str | Path,
    quota_path: str | Path | None,
    gpus_per_node: int,
    jobs: Collector,
    notes: list[str],
) -> dict[str, int]:
    """Read the node quota per virtual cluster; bad rows join the jobs' problems."""
    if quota_path is None:
        beside = Path(jobs_path).with_name(QUOTA_FILE)
        if not beside.is_file():
            notes.append(f"no {QUOTA_FILE} beside the trace: no quotas")
            return {}
        quota_path = beside
    out = Collector(str(quota_path), jobs.options)
    quotas: dict[str, int] = {}
    with open_csv(quota_path, QUOTA_COLUMNS, what="Philly quota") as (rows, cols):
        for line, row in rows:
            try:
                vc = cell(row, cols, "vc")
                nodes = parse_int(cell(row, cols, "node num"), "node num", minimum=0)
                if vc in quotas:
                    raise RowError("vc", f"duplicate virtual cluster {vc!r}")
            except RowError as e:
                out.bad(line, f"quota:{e.field}", e.problem)
                continue
            quotas[vc] = nodes * gpus_per_node
    jobs.problems.extend(out.problems)
    tenants = {j.tenant for j in jobs.jobs}
    without = sorted(tenants - quotas.keys())
    notes.append(
        f"quotas for {len(quotas)} tenants from {Path(quota_path).name} "
        f"at {gpus_per_node} GPUs per node"
        + (f"; none for {', '.join(without)}" if without else "")
    )
    return quotas
