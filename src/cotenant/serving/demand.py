"""Demand curves for inference services: requests/s over time (integer Unix seconds).

Three sources, all giving a :class:`DemandCurve`:

- :func:`diurnal`: a seeded synthetic curve (daily cosine, weekends, growth, noise, bursts);
- :func:`from_csv`: a ``time_s,rps`` file (and :meth:`DemandCurve.to_csv` to write one);
- :func:`alibaba_serving`: a proxy derived from the Alibaba 2025 disaggregated DLRM serving
  trace (alibaba/clusterdata, cluster-trace-gpu-v2025): the mean number of instances of
  an app alive in each step, times ``rps_per_instance``.

Pure apart from the CSV readers and writer; randomness only from an explicit seed.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cotenant.model.errors import SpecError
from cotenant.model.time import DAY, HOUR, MINUTE

CSV_HEADER = ("time_s", "rps")


@dataclass(frozen=True, eq=False)
class DemandCurve:
    """Requests/s as a step function: ``rps[i]`` holds from ``times_s[i]`` until the next
    point, and the last value holds for ever. Before the first point the demand is 0.

    ``times_s`` is int64 Unix seconds, strictly increasing; ``rps`` is float64, finite
    and >= 0. Both arrays are stored read-only. (No ``==``: compare the arrays.)
    """

    times_s: NDArray[np.int64]
    rps: NDArray[np.float64]

    def __post_init__(self) -> None:
        times = np.array(self.times_s, dtype=np.int64, copy=True)
        rps = np.array(self.rps, dtype=np.float64, copy=True)
        if times.ndim != 1 or rps.ndim != 1 or times.shape != rps.shape:
            raise SpecError(
                "rps", f"needs one value per time, got shapes {times.shape} and {rps.shape}"
            )
        if times.size == 0:
            raise SpecError("times_s", "a demand curve needs at least one point")
        if times.size > 1 and not bool(np.all(np.diff(times) > 0)):
            bad = int(np.argmax(np.diff(times) <= 0)) + 1
            raise SpecError(f"times_s[{bad}]", "times must be strictly increasing")
        if not bool(np.all(np.isfinite(rps) & (rps >= 0.0))):
            bad = int(np.argmax(~(np.isfinite(rps) & (rps >= 0.0))))
            raise SpecError(f"rps[{bad}]", f"must be finite and >= 0, got {rps[bad]!r}")
        times.setflags(write=False)
        rps.setflags(write=False)
        object.__setattr__(self, "times_s", times)
        object.__setattr__(self, "rps", rps)

    def __len__(self) -> int:
        return int(self.times_s.size)

    @property
    def start_s(self) -> int:
        return int(self.times_s[0])

    @property
    def end_s(self) -> int:
        """The time of the last point (its value holds beyond it)."""
        return int(self.times_s[-1])

    def at(self, t: int) -> float:
        """Demand at time ``t`` (requests/s)."""
        i = int(np.searchsorted(self.times_s, t, side="right")) - 1
        return float(self.rps[i]) if i >= 0 else 0.0

    def values_at(self, ts: NDArray[np.int64]) -> NDArray[np.float64]:
        """Vectorised :meth:`at`."""
        idx = np.searchsorted(self.times_s, np.asarray(ts), side="right") - 1
        out = self.rps[np.maximum(idx, 0)].astype(np.float64)
        out[idx < 0] = 0.0
        return out

    def max_over(self, t0: int, t1: int) -> float:
        """Peak demand over the closed window ``[t0, t1]`` (the autoscaler's look-ahead)."""
        if t1 < t0:
            raise SpecError("t1", f"window end {t1} is before its start {t0}")
        i = int(np.searchsorted(self.times_s, t0, side="right")) - 1
        j = int(np.searchsorted(self.times_s, t1, side="right"))
        if j == 0:
            return 0.0  # the whole window is before the first point
        return float(np.max(self.rps[max(i, 0) : j]))  # rps >= 0 covers the 0 before it

    def scaled(self, f: float) -> DemandCurve:
        """The same curve with every value multiplied by ``f`` (>= 0)."""
        if not (f >= 0.0 and math.isfinite(f)):
            raise SpecError("f", f"scale factor must be finite and >= 0, got {f!r}")
        return DemandCurve(self.times_s, self.rps * f)

    def to_csv(self, path: str | Path) -> None:
        """Write ``time_s,rps`` with a header; floats in round-trip (repr) precision."""
        with Path(path).open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(CSV_HEADER)
            for t, v in zip(self.times_s.tolist(), self.rps.tolist(), strict=True):
                w.writerow((t, repr(v)))


def from_csv(path: str | Path) -> DemandCurve:
    """Read a ``time_s,rps`` file (header required; other columns ignored; blank lines
    skipped). Raises :class:`SpecError` with ``source`` = ``path:line`` and the field for
    the first bad row: unreadable or non-integer time, unreadable, negative or non-finite
    rps, times not strictly increasing."""
    p = Path(path)
    times: list[int] = []
    values: list[float] = []
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        cols = [c.strip() for c in header] if header is not None else []
        missing = [c for c in CSV_HEADER if c not in cols]
        if missing:
            raise SpecError(
                "header", f"needs columns {','.join(CSV_HEADER)}, missing {missing}", f"{p}:1"
            )
        ti, ri = cols.index("time_s"), cols.index("rps")
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            where = f"{p}:{line}"
            if len(row) <= max(ti, ri):
                raise SpecError("rps", f"expected {len(cols)} columns, got {len(row)}", where)
            t = _int_seconds(row[ti], "time_s", where)
            v = _float(row[ri], "rps", where)
            if not (math.isfinite(v) and v >= 0.0):
                raise SpecError("rps", f"must be finite and >= 0, got {row[ri]!r}", where)
            if times and t <= times[-1]:
                raise SpecError("time_s", f"{t} is not after the previous time {times[-1]}", where)
            times.append(t)
            values.append(v)
    if not times:
        raise SpecError("rps", "no data rows after the header", str(p))
    return DemandCurve(np.array(times, dtype=np.int64), np.array(values, dtype=np.float64))


def _float(text: str, field: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SpecError(field, f"cannot read {text!r} as a number", where) from None


def _int_seconds(text: str, field: str, where: str) -> int:
    v = _float(text, field, where)
    if not math.isfinite(v) or v != math.floor(v):
        raise SpecError(field, f"must be whole seconds, got {text!r}", where)
    return int(v)


def diurnal(
    start_s: int,
    days: float,
    step_s: int,
    peak_rps: float,
    trough_ratio: float = 0.3,
    peak_hour: float = 14.0,
    weekend_ratio: float = 0.7,
    growth_per_day: float = 0.0,
    noise: float = 0.05,
    bursts_per_day: float = 0.0,
    burst_factor: float = 2.0,
    burst_minutes: int = 15,
    seed: int = 0,
    utc_offset_h: float = 0,
) -> DemandCurve:
    """A synthetic daily demand curve, one point every ``step_s`` for ``days`` days.

    ``rps(t) = peak_rps * shape(t) * week(t) * (1 + growth_per_day)^(days since start)
    * noise(t) * burst(t)``, where

    - ``shape`` is a cosine between ``trough_ratio`` and 1 with its maximum at
      ``peak_hour`` local time (``utc_offset_h`` from UTC) and its minimum 12 h later;
    - ``week`` is ``weekend_ratio`` on local Saturdays and Sundays, else 1;
    - growth compounds continuously (``growth_per_day=0.01`` is +1 % a day);
    - ``noise`` is lognormal with mean 1 and log-std ``noise`` (0 turns it off);
    - bursts arrive as a Poisson process of ``bursts_per_day``; each starts at a grid point
      and multiplies demand by ``burst_factor`` for ``burst_minutes`` (at least one step).
      Overlapping bursts do not compound.

    Deterministic for a seed: one ``numpy.random.Generator`` draws the noise, then the
    burst count, then the burst starts.
    """
    checks: list[tuple[str, object, bool]] = [
        ("days", days, days > 0 and math.isfinite(days)),
        ("step_s", step_s, isinstance(step_s, int) and step_s >= 1),
        ("peak_rps", peak_rps, peak_rps >= 0 and math.isfinite(peak_rps)),
        ("trough_ratio", trough_ratio, 0.0 <= trough_ratio <= 1.0),
        ("peak_hour", peak_hour, 0.0 <= peak_hour < 24.0),
        ("weekend_ratio", weekend_ratio, weekend_ratio >= 0 and math.isfinite(weekend_ratio)),
        ("growth_per_day", growth_per_day, growth_per_day > -1 and math.isfinite(growth_per_day)),
        ("noise", noise, noise >= 0 and math.isfinite(noise)),
        ("bursts_per_day", bursts_per_day, bursts_per_day >= 0 and math.isfinite(bursts_per_day)),
        ("burst_factor", burst_factor, burst_factor >= 0 and math.isfinite(burst_factor)),
        ("burst_minutes", burst_minutes, burst_minutes >= 0),
    ]
    for field, value, ok in checks:
        if not ok:
            raise SpecError(field, f"out of range: {value!r}")

    n = max(1, math.ceil(days * DAY / step_s))
    offsets = np.arange(n, dtype=np.int64) * step_s
    times = np.int64(start_s) + offsets
    local = times + round(utc_offset_h * HOUR)
    hour = (local % DAY).astype(np.float64) / HOUR
    shape = trough_ratio + (1.0 - trough_ratio) * 0.5 * (
        1.0 + np.cos(2.0 * np.pi * (hour - peak_hour) / 24.0)
    )
    weekday = (local // DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    week = np.where(weekday >= 5, weekend_ratio, 1.0)
    growth = np.power(1.0 + growth_per_day, offsets.astype(np.float64) / DAY)

    rng = np.random.default_rng(seed)
    eps = rng.standard_normal(n)
    jitter = np.exp(noise * eps - 0.5 * noise * noise) if noise > 0 else np.ones(n)

    burst = np.ones(n)
    n_bursts = int(rng.poisson(bursts_per_day * n * step_s / DAY))
    if n_bursts > 0 and burst_minutes > 0:
        starts = rng.integers(0, n, size=n_bursts)
        length = max(1, math.ceil(burst_minutes * MINUTE / step_s))
        edges = np.zeros(n + 1, dtype=np.int64)
        np.add.at(edges, starts, 1)
        np.add.at(edges, np.minimum(starts + length, n), -1)
        burst = np.where(np.cumsum(edges[:-1]) > 0, burst_factor, 1.0)

    rps = peak_rps * shape * week * growth * jitter * burst
    return DemandCurve(times, rps)


# --- Alibaba 2025 disaggregated DLRM serving trace --------------------------------------

ALIBABA_2025_FILE = "disaggregated_DLRM_trace.csv"
ALIBABA_2025_DIR = "alibaba-gpu-2025-serving"
_ALIBABA_COLUMNS = ("app_name", "role", "creation_time", "scheduled_time", "deletion_time")
_MISSING = {"", "nan", "NaN", "NAN"}


@dataclass(frozen=True, slots=True)
class BadRow:
    """A trace row that was skipped, and why."""

    line: int
    field: str
    problem: str


@dataclass(frozen=True, eq=False)
class AlibabaServingTrace:
    """The instances of the serving trace, one array entry each (trace-relative seconds).

    ``start_s`` is the ``scheduled_time`` (NaN: already running at the trace start) and
    ``end_s`` the ``deletion_time`` (NaN: still running at the trace end). ``app`` indexes
    ``app_names``. ``end_of_trace_s`` is the largest timestamp in the file.
    """

    app_names: tuple[str, ...]
    app: NDArray[np.int64]
    role: tuple[str, ...]
    start_s: NDArray[np.float64]
    end_s: NDArray[np.float64]
    end_of_trace_s: float
    bad_rows: tuple[BadRow, ...]

    def instance_counts(self) -> list[tuple[str, int]]:
        """``(app, instances)`` by instance count, largest first, ties by name."""
        counts = np.bincount(self.app, minlength=len(self.app_names))
        pairs = [(name, int(counts[i])) for i, name in enumerate(self.app_names)]
        return sorted(pairs, key=lambda p: (-p[1], p[0]))


def _resolve(path_or_dir: str | Path) -> Path:
    p = Path(path_or_dir)
    for cand in (p, p / ALIBABA_2025_FILE, p / ALIBABA_2025_DIR / ALIBABA_2025_FILE):
        if cand.is_file():
            return cand
    raise SpecError("path", f"no {ALIBABA_2025_FILE} at or under {p}")


def read_alibaba_serving(path_or_dir: str | Path) -> AlibabaServingTrace:
    """Parse the trace (a file, its directory, or the shared data directory above it).

    Rows with a missing ``app_name``, an unreadable or negative time, a scheduled time
    without a creation time (or before it), or a deletion before the scheduled time are
    skipped and listed in ``bad_rows`` (line number, column, problem); the real file has
    none. A missing column fails the whole file with :class:`SpecError`.
    """
    path = _resolve(path_or_dir)
    names: dict[str, int] = {}
    apps: list[int] = []
    roles: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    bad: list[BadRow] = []
    latest = 0.0
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _ALIBABA_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SpecError("header", f"missing columns {missing}", f"{path}:1")
        for row in reader:
            line = reader.line_num
            try:
                app, created, sched, deleted = _alibaba_row(row)
            except _RowError as e:
                bad.append(BadRow(line, e.field, e.problem))
                continue
            apps.append(names.setdefault(app, len(names)))
            roles.append((row.get("role") or "").strip())
            starts.append(sched)
            ends.append(deleted)
            for v in (created, sched, deleted):
                if not math.isnan(v):
                    latest = max(latest, v)
    return AlibabaServingTrace(
        app_names=tuple(names),
        app=np.array(apps, dtype=np.int64),
        role=tuple(roles),
        start_s=np.array(starts, dtype=np.float64),
        end_s=np.array(ends, dtype=np.float64),
        end_of_trace_s=latest,
        bad_rows=tuple(bad),
    )


class _RowError(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _alibaba_time(row: dict[str, str | None], field: str) -> float:
    text = (row.get(field) or "").strip()
    if text in _MISSING:
        return math.nan
    try:
        v = float(text)
    except ValueError:
        raise _RowError(field, f"cannot read {text!r} as seconds") from None
    if not math.isfinite(v) or v < 0:
        raise _RowError(field, f"must be finite and >= 0, got {text!r}")
    return v


def _alibaba_row(row: dict[str, str | None]) -> tuple[str, float, float, float]:
    app = (row.get("app_name") or "").strip()
    if not app:
        raise _RowError("app_name", "missing")
    created = _alibaba_time(row, "creation_time")
    sched = _alibaba_time(row, "scheduled_time")
    deleted = _alibaba_time(row, "deletion_time")
    if math.isnan(created) != math.isnan(sched):
        raise _RowError("scheduled_time", "set without creation_time or the reverse")
    if not math.isnan(sched) and sched < created:
        raise _RowError("scheduled_time", f"{sched} is before creation_time {created}")
    if not (math.isnan(sched) or math.isnan(deleted)) and deleted < sched:
        raise _RowError("deletion_time", f"{deleted} is before scheduled_time {sched}")
    return app, created, sched, deleted


def alibaba_apps(path_or_dir: str | Path) -> list[tuple[str, int]]:
    """``(app, instance_count)`` for every app in the trace, largest first."""
    return read_alibaba_serving(path_or_dir).instance_counts()


def _alive_mean(
    start_s: NDArray[np.float64], end_s: NDArray[np.float64], edges: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Mean number of intervals ``[start, end)`` alive in each bin ``[edges[k], edges[k+1])``.

    Exact and O((n + bins) log n): the alive-seconds up to ``t`` are
    ``sum_{s_i < t} (t - s_i) - sum_{e_i < t} (t - e_i)``, read off sorted prefix sums.
    """
    s = np.sort(start_s)
    e = np.sort(end_s)
    ps = np.concatenate(([0.0], np.cumsum(s)))
    pe = np.concatenate(([0.0], np.cumsum(e)))
    ns = np.searchsorted(s, edges, side="left")
    ne = np.searchsorted(e, edges, side="left")
    area = (ns * edges - ps[ns]) - (ne * edges - pe[ne])
    width = np.diff(edges)
    return np.asarray(np.diff(area) / width, dtype=np.float64)


def alibaba_serving(
    path_or_dir: str | Path | AlibabaServingTrace,
    app: str | None = None,
    step_s: int = 300,
    epoch_s: int = 0,
    rps_per_instance: float = 1.0,
    top: int = 10,
    role: str | None = None,
    end_s: float | None = None,
) -> dict[str, DemandCurve]:
    """Demand curves from the Alibaba 2025 serving trace, keyed by app name.

    The trace has no request rates, only instance lifetimes, so the demand proxy is the
    capacity the operator kept deployed: the mean number of an app's instances alive in
    each ``step_s`` bin, times ``rps_per_instance``. (The real demand was at most what
    those instances served; the curve inherits the operator's own autoscaling lag.) An
    instance is alive from its ``scheduled_time`` (or the trace start if it was running
    already) to its ``deletion_time`` (or ``end_s``, default the last timestamp in the
    file). ``role`` keeps only ``"CN"`` (CPU) or ``"HN"`` (GPU) instances.

    Curve times are ``epoch_s`` + trace offset: the trace gives seconds from an
    unpublished start, so pass ``epoch_s`` to anchor it in Unix time.

    ``app=None`` returns the ``top`` apps by instance count plus the sum over every app
    under ``"all"``; ``app="all"`` only the sum; otherwise that one app. Bad rows are
    skipped; read them with :func:`read_alibaba_serving` (``bad_rows``).
    """
    if not (isinstance(step_s, int) and step_s >= 1):
        raise SpecError("step_s", f"must be an integer >= 1, got {step_s!r}")
    if not (rps_per_instance >= 0 and math.isfinite(rps_per_instance)):
        raise SpecError("rps_per_instance", f"must be finite and >= 0, got {rps_per_instance!r}")
    if role is not None and role not in ("CN", "HN"):
        raise SpecError("role", f"must be 'CN', 'HN' or None, got {role!r}")
    trace = (
        path_or_dir
        if isinstance(path_or_dir, AlibabaServingTrace)
        else read_alibaba_serving(path_or_dir)
    )
    horizon = trace.end_of_trace_s if end_s is None else float(end_s)
    if not horizon > 0:
        raise SpecError("end_s", f"must be > 0, got {horizon!r}")

    keep = np.ones(trace.app.size, dtype=bool)
    if role is not None:
        keep = np.array([r == role for r in trace.role], dtype=bool)
    starts = np.nan_to_num(trace.start_s, nan=0.0)
    ends = np.minimum(np.where(np.isnan(trace.end_s), horizon, trace.end_s), horizon)
    starts = np.minimum(starts, ends)

    n = math.ceil(horizon / step_s)
    grid = np.arange(n, dtype=np.int64) * step_s
    edges = np.append(grid.astype(np.float64), horizon)

    if app is None:
        wanted = [a for a, c in trace.instance_counts()[:top] if c > 0]
        wanted.append("all")
    elif app == "all" or app in trace.app_names:
        wanted = [app]
    else:
        sample = ", ".join(trace.app_names[:5])
        raise SpecError(
            "app", f"unknown app {app!r}; the trace has {len(trace.app_names)} ({sample}, ...)"
        )

    out: dict[str, DemandCurve] = {}
    index = {name: i for i, name in enumerate(trace.app_names)}
    for name in wanted:
        mask = keep if name == "all" else keep & (trace.app == index[name])
        mean = _alive_mean(starts[mask], ends[mask], edges)
        out[name] = DemandCurve(np.int64(epoch_s) + grid, mean * rps_per_instance)
    return out
