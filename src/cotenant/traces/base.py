"""What every trace loader returns, and the row bookkeeping they share.

Real traces have bad rows. A loader never stops at the first one unless asked
(``strict=True``): it skips the row and records a :class:`RowProblem`, so a
replay of 82k jobs is not lost to one typo, and the problems are still visible.
Bad *files* (missing, unreadable, missing columns) always raise ``SpecError``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobSpec


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One skipped row: its 1-based line in the file (the header is line 1) and why."""

    line: int
    field: str
    problem: str


@dataclass(frozen=True, slots=True)
class TraceNode:
    """A node the trace says its cluster had; ``accelerator`` names a catalogue kind."""

    name: str
    gpus: int
    accelerator: str


@dataclass(frozen=True, slots=True)
class Trace:
    """A workload ready to replay.

    ``jobs`` are sorted by (submit_s, id) so a replay is deterministic whatever the
    file order. ``quotas_gpus`` and ``nodes`` are empty when the trace has none.
    ``notes`` record every lossy choice the loader made (rounding, defaults).
    """

    name: str
    source: str
    jobs: tuple[JobSpec, ...]
    quotas_gpus: dict[str, int]
    nodes: tuple[TraceNode, ...]
    problems: tuple[RowProblem, ...]
    notes: tuple[str, ...]

    @property
    def tenants(self) -> tuple[str, ...]:
        return tuple(sorted({j.tenant for j in self.jobs}))

    @property
    def gpu_seconds(self) -> int:
        return sum(j.gpus * j.duration_s for j in self.jobs)


class RowError(Exception):
    """A bad value inside one row; the collector turns it into a RowProblem."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Options:
    """The options every loader takes, checked once."""

    strict: bool = False
    limit: int | None = None
    start_s: int | None = None
    end_s: int | None = None
    max_gpus: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise SpecError("limit", f"must not be negative, got {self.limit}")
        if self.max_gpus is not None and self.max_gpus < 1:
            raise SpecError("max_gpus", f"must be at least 1, got {self.max_gpus}")
        if self.start_s is not None and self.end_s is not None and self.end_s < self.start_s:
            raise SpecError("end_s", f"must not be before start_s ({self.end_s} < {self.start_s})")


class Collector:
    """Gathers a loader's jobs and problems, applies the common filters, builds the Trace.

    The window is half-open, ``start_s <= submit_s < end_s``; rows outside it are
    dropped silently (they are not wrong, just not wanted). A job needing more
    than ``max_gpus`` is a bad row: it could never run on the cluster.
    """

    def __init__(self, source: str, options: Options) -> None:
        self.source = source
        self.options = options
        self.jobs: list[JobSpec] = []
        self.problems: list[RowProblem] = []
        self.outside_window = 0

    def bad(self, line: int, field: str, problem: str) -> None:
        if self.options.strict:
            raise SpecError(field, problem, f"{self.source}:{line}")
        self.problems.append(RowProblem(line, field, problem))

    def offer(self, line: int, job: JobSpec, gpus_field: str = "gpus") -> None:
        o = self.options
        if (o.start_s is not None and job.submit_s < o.start_s) or (
            o.end_s is not None and job.submit_s >= o.end_s
        ):
            self.outside_window += 1
            return
        if o.max_gpus is not None and job.gpus > o.max_gpus:
            self.bad(line, gpus_field, f"more GPUs than the cluster ({job.gpus} > {o.max_gpus})")
            return
        self.jobs.append(job)

    def build(
        self,
        name: str,
        *,
        quotas_gpus: dict[str, int] | None = None,
        nodes: Sequence[TraceNode] = (),
        notes: Sequence[str] = (),
    ) -> Trace:
        jobs = sorted(self.jobs, key=attrgetter("submit_s", "id"))
        all_notes = list(notes)
        if self.outside_window:
            all_notes.append(f"{self.outside_window} jobs outside the submit window were dropped")
        if self.options.limit is not None and len(jobs) > self.options.limit:
            all_notes.append(f"kept the first {self.options.limit} of {len(jobs)} jobs (limit)")
            jobs = jobs[: self.options.limit]
        if self.problems:
            all_notes.append(f"{len(self.problems)} bad rows skipped (see problems)")
        return Trace(
            name=name,
            source=self.source,
            jobs=tuple(jobs),
            quotas_gpus=dict(quotas_gpus or {}),
            nodes=tuple(nodes),
            problems=tuple(self.problems),
            notes=tuple(all_notes),
        )


@contextmanager
def open_csv(
    path: str | Path, required: Sequence[str], *, what: str = "trace"
) -> Iterator[tuple[Iterator[tuple[int, list[str]]], dict[str, int]]]:
    """Open a CSV; yield its rows as (line, cells) and its header as column positions.

    Blank lines are skipped (the Philly file ends with one). Raises SpecError, never
    a traceback, for a missing file, an empty or undecodable file or missing
    columns, naming what was expected.
    """
    p = Path(path)
    if not p.exists():
        raise SpecError("path", f"{what} file not found: {p}")
    if not p.is_file():
        raise SpecError("path", f"{what} path is not a file: {p}")
    try:
        f = p.open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise SpecError("path", f"cannot read {what} file {p}: {e.strerror}") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
        except (UnicodeDecodeError, csv.Error) as e:
            raise SpecError("file", f"not a readable UTF-8 CSV file: {e}", str(p)) from None
        if not header:
            raise SpecError("header", f"empty file; expected columns {', '.join(required)}", str(p))
        columns = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in required if c not in columns]
        if missing:
            found = ", ".join(c for c in columns if c) or "none"
            problem = f"missing column(s) {', '.join(missing)}; found {found}"
            raise SpecError("columns", problem, str(p))

        def rows() -> Iterator[tuple[int, list[str]]]:
            try:
                for row in reader:
                    if len(row) > 1 or (row and row[0].strip()):
                        yield reader.line_num, row
            except (UnicodeDecodeError, csv.Error) as e:
                where = f"{p}:{reader.line_num + 1}"
                raise SpecError("file", f"not a readable UTF-8 CSV file: {e}", where) from None

        yield rows(), columns


def cell(row: Sequence[str], columns: dict[str, int], name: str) -> str:
    """The stripped value of column ``name``; a short row or an empty cell is a RowError."""
    i = columns[name]
    value = row[i].strip() if i < len(row) else ""
    if not value:
        raise RowError(name, "missing value")
    return value


def cells(row: Sequence[str], positions: Sequence[tuple[str, int]]) -> list[str]:
    """The stripped values of several required columns at once (the hot path of a
    large trace); the first short or empty one is a RowError."""
    try:
        values = [row[i].strip() for _, i in positions]
    except IndexError:
        values = [row[i].strip() if i < len(row) else "" for _, i in positions]
    if all(values):
        return values
    name = next(n for (n, _), v in zip(positions, values, strict=True) if not v)
    raise RowError(name, "missing value")


def optional_cell(row: Sequence[str], columns: dict[str, int], name: str) -> str:
    """Like :func:`cell` but an absent column or empty cell is the empty string."""
    i = columns.get(name)
    if i is None or i >= len(row):
        return ""
    return row[i].strip()


def parse_int(text: str, field: str, minimum: int | None = None) -> int:
    """A whole number; ``12.0`` is accepted (traces write floats), ``1.5`` is not."""
    try:
        value = int(text)
    except ValueError:
        try:
            f = float(text)
        except ValueError:
            raise RowError(field, f"expected a whole number, got {text!r}") from None
        if not f.is_integer():
            raise RowError(field, f"expected a whole number, got {text!r}") from None
        value = int(f)
    if minimum is not None and value < minimum:
        if value < 0 <= minimum:
            raise RowError(field, f"must not be negative, got {text!r}")
        raise RowError(field, f"must be at least {minimum}, got {text!r}")
    return value
