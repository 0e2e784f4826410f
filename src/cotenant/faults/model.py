"""The failure model of the digital twin: when nodes fail, why, and for how long.

Calibrated on the published Llama 3 405B pretraining run (16,384 H100 for 54 days:
466 job interruptions, 47 planned and 419 unexpected, with the unexpected ones broken
down by cause). See ``docs/design/0004-faults.md``.

The model is pure: a seeded ``numpy.random.Generator`` and a horizon in, a sorted list
of :class:`FailureEvent` out. What an event does to the cluster (mark a node down,
interrupt jobs, restart them, repair the node) is the engine's business.

Every repair time here is an assumption (``Cause.assumed_repair``): the run's report
does not publish them. The planning figures we lean on are 1-3 days to replace a node
and 10-30 minutes to restart a job automatically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from cotenant.model.errors import SpecError
from cotenant.model.time import DAY, HOUR, parse_duration

# --- Published calibration ------------------------------------------------------------

LLAMA3_GPUS = 16_384
LLAMA3_DAYS = 54
LLAMA3_UNEXPECTED = 419
LLAMA3_PLANNED = 47

#: Published (rounded) figure: 419 / (16,384 GPUs * 54 days) = 4.74e-4.
DEFAULT_UNEXPECTED_PER_GPU_DAY = 4.7e-4
#: Derived the same way and rounded alike: 47 / (16,384 * 54) = 5.31e-5.
DEFAULT_PLANNED_PER_GPU_DAY = 5.3e-5

# --- Assumptions (not published; see the module docstring) ----------------------------

HARDWARE_REPAIR_S = 2 * DAY  # middle of the 1-3 day node replacement assumption
RACK_UPLINK_REPAIR_S = 4 * HOUR  # swap a switch or a cable
MAINTENANCE_REPAIR_S = 4 * HOUR  # host maintenance, planned or not
DEFAULT_PLANNED_NOTICE_S = 24 * HOUR


class Effect(StrEnum):
    """What a failure does to the cluster; the engine acts on this, not on the cause."""

    NODE_DOWN = "node_down"
    """The node is lost until repaired; the job on it is interrupted."""
    RACK_UPLINK = "rack_uplink"
    """The rack's network is cut: every job with a GPU in the rack is interrupted and the
    rack's nodes are unusable until repaired."""
    JOB_ONLY = "job_only"
    """Only the job on the node is interrupted; the node stays healthy (repair 0)."""
    PLANNED_DRAIN = "planned_drain"
    """Notice is given; the node drains and goes down ``notice_s`` later for ``repair_s``."""


@dataclass(frozen=True, slots=True)
class Cause:
    """One row of the published cause table and the effect we give it.

    ``name`` is a stable identifier (used in configuration and reason codes);
    ``label`` is the published wording; ``count`` the published number of interruptions;
    ``hardware`` whether the cause is hardware (about 78% of the unexpected, published).
    """

    name: str
    label: str
    count: int
    effect: Effect
    repair_s: int
    assumed_repair: bool = True
    hardware: bool = False


def _hw(name: str, label: str, count: int) -> Cause:
    return Cause(name, label, count, Effect.NODE_DOWN, HARDWARE_REPAIR_S, hardware=True)


def _job(name: str, label: str, count: int) -> Cause:
    # The job restarts; its restart cost is the engine's. Nothing to repair.
    return Cause(name, label, count, Effect.JOB_ONLY, 0)


#: The 419 unexpected interruptions of the Llama 3 405B run, by cause, as published.
LLAMA3_CAUSES: tuple[Cause, ...] = (
    _hw("faulty_gpu", "faulty GPU", 148),
    _hw("gpu_hbm3", "GPU HBM3 memory", 72),
    _job("software_bug", "software bug", 54),
    Cause(
        "network_switch_cable",
        "network switch/cable",
        35,
        Effect.RACK_UPLINK,
        RACK_UPLINK_REPAIR_S,
        hardware=True,
    ),
    # Unplanned: no notice, so the node is simply down; the repair is maintenance work,
    # not a replacement, hence the shorter (assumed) duration.
    Cause("host_maintenance", "host maintenance", 32, Effect.NODE_DOWN, MAINTENANCE_REPAIR_S),
    _hw("gpu_sram", "GPU SRAM", 19),
    _hw("gpu_system_processor", "GPU system processor", 17),
    # The node's own NIC: the node is cut off, its rack is not.
    _hw("nic", "NIC", 7),
    _job("nccl_watchdog", "NCCL watchdog", 7),
    # Published as a GPU fault: the node must leave service until the GPU is replaced,
    # else it corrupts the next job too.
    _hw("silent_data_corruption", "silent data corruption", 6),
    _hw("thermal_interface_sensor", "thermal interface/sensor", 6),
    _hw("ssd", "SSD", 3),
    _hw("psu", "PSU", 3),
    _hw("chassis", "chassis", 2),
    _hw("io_board", "IO board", 2),
    _job("dependency", "dependency", 2),
    _hw("cpu", "CPU", 2),
    _hw("system_memory", "system memory", 2),
)

#: The 47 planned interruptions of the same run, modelled as host maintenance drains.
PLANNED_MAINTENANCE = Cause(
    "planned_maintenance",
    "planned maintenance",
    LLAMA3_PLANNED,
    Effect.PLANNED_DRAIN,
    MAINTENANCE_REPAIR_S,
)


@dataclass(frozen=True, slots=True)
class FailureEvent:
    """One failure. ``time_s`` is when the engine learns of it: for a planned drain that
    is the notice, and the node goes down at :attr:`down_at_s` = ``time_s + notice_s``.
    ``repair_s`` runs from when the node goes down (0 for job-only)."""

    time_s: int
    node: int
    cause: str
    effect: Effect
    repair_s: int
    notice_s: int = 0

    @property
    def down_at_s(self) -> int:
        return self.time_s + self.notice_s


_SETTINGS_KEYS = (
    "rate_per_gpu_day",
    "planned_rate_per_gpu_day",
    "scale",
    "repair",
    "planned_notice",
)


@dataclass(frozen=True, slots=True)
class FailureModel:
    """Failures as a Poisson process per GPU, calibrated on Llama 3 by default.

    ``rate_per_gpu_day`` drives the unexpected ``causes`` (split by their published
    counts), ``planned_rate_per_gpu_day`` the ``planned`` drains. ``scale`` (the
    ``--failure-scale`` option) multiplies both rates: 0 gives a cluster that never
    fails. ``repair_overrides`` maps cause names to repair seconds.
    """

    rate_per_gpu_day: float = DEFAULT_UNEXPECTED_PER_GPU_DAY
    planned_rate_per_gpu_day: float = DEFAULT_PLANNED_PER_GPU_DAY
    causes: tuple[Cause, ...] = LLAMA3_CAUSES
    planned: Cause = PLANNED_MAINTENANCE
    scale: float = 1.0
    repair_overrides: Mapping[str, int] = field(default_factory=dict)
    planned_notice_s: int = DEFAULT_PLANNED_NOTICE_S

    def __post_init__(self) -> None:
        # A read-only copy: the caller's dict cannot change a frozen model afterwards.
        frozen = MappingProxyType(dict(sorted(self.repair_overrides.items())))
        object.__setattr__(self, "repair_overrides", frozen)
        self.validate()

    # --- construction ------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`SpecError` naming the first field at fault."""
        for name in ("rate_per_gpu_day", "planned_rate_per_gpu_day", "scale"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise SpecError(name, f"must be a finite number >= 0, got {value!r}")
        if not self.causes:
            raise SpecError("causes", "needs at least one cause")
        seen: set[str] = set()
        for i, cause in enumerate((*self.causes, self.planned)):
            where = "planned" if i == len(self.causes) else f"causes[{i}]"
            if cause.name in seen:
                raise SpecError(f"{where}.name", f"duplicate cause name {cause.name!r}")
            seen.add(cause.name)
            if cause.count < 0:
                raise SpecError(f"{where}.count", f"must be >= 0, got {cause.count}")
            if cause.repair_s < 0:
                raise SpecError(f"{where}.repair_s", f"must be >= 0, got {cause.repair_s}")
        if sum(c.count for c in self.causes) <= 0:
            raise SpecError("causes", "the counts must not all be zero")
        if any(c.effect is Effect.PLANNED_DRAIN for c in self.causes):
            raise SpecError(
                "causes", "planned drains belong in `planned`, not the unexpected causes"
            )
        if self.planned.effect is not Effect.PLANNED_DRAIN:
            raise SpecError("planned.effect", f"must be {Effect.PLANNED_DRAIN.value!r}")
        if self.planned_notice_s < 0:
            raise SpecError("planned_notice_s", f"must be >= 0, got {self.planned_notice_s}")
        for name, seconds in self.repair_overrides.items():
            if name not in seen:
                raise SpecError(
                    f"repair.{name}", f"unknown cause; valid: {', '.join(sorted(seen))}"
                )
            if seconds < 0:
                raise SpecError(f"repair.{name}", f"must be >= 0, got {seconds}")

    def with_scale(self, scale: float) -> FailureModel:
        """The same model with both rates multiplied by ``scale`` (replacing the old one)."""
        return replace(self, scale=scale)

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, object], section: str = "failures"
    ) -> FailureModel:
        """Build from a scenario's TOML table, e.g.::

            [failures]
            scale = 2.0
            planned_notice = "12h"
            repair = { faulty_gpu = "3d", software_bug = "20m" }

        Keys: ``rate_per_gpu_day``, ``planned_rate_per_gpu_day``, ``scale``, ``repair``
        (cause name -> duration), ``planned_notice`` (duration). Error fields are prefixed
        with ``section``.
        """
        unknown = sorted(set(settings) - set(_SETTINGS_KEYS))
        if unknown:
            raise SpecError(
                f"{section}.{unknown[0]}", f"unknown key; valid: {', '.join(_SETTINGS_KEYS)}"
            )
        numbers = {
            "rate_per_gpu_day": DEFAULT_UNEXPECTED_PER_GPU_DAY,
            "planned_rate_per_gpu_day": DEFAULT_PLANNED_PER_GPU_DAY,
            "scale": 1.0,
        }
        for key in numbers:
            if key in settings:
                numbers[key] = _number(settings[key], f"{section}.{key}")
        notice = DEFAULT_PLANNED_NOTICE_S
        if "planned_notice" in settings:
            notice = _duration(settings["planned_notice"], f"{section}.planned_notice")
        valid = sorted(c.name for c in (*LLAMA3_CAUSES, PLANNED_MAINTENANCE))
        overrides: dict[str, int] = {}
        table = settings.get("repair", {})
        if not isinstance(table, Mapping):
            raise SpecError(f"{section}.repair", "expected a table of cause name -> duration")
        for name, value in table.items():
            if name not in valid:
                raise SpecError(
                    f"{section}.repair.{name}", f"unknown cause; valid: {', '.join(valid)}"
                )
            overrides[name] = _duration(value, f"{section}.repair.{name}")
        try:
            return cls(
                rate_per_gpu_day=numbers["rate_per_gpu_day"],
                planned_rate_per_gpu_day=numbers["planned_rate_per_gpu_day"],
                scale=numbers["scale"],
                repair_overrides=overrides,
                planned_notice_s=notice,
            )
        except SpecError as err:
            raise SpecError(f"{section}.{err.field}", err.problem) from None

    # --- queries -----------------------------------------------------------------------

    @property
    def shares(self) -> npt.NDArray[np.float64]:
        """Each unexpected cause's share of the unexpected rate (published count / total)."""
        counts = np.array([c.count for c in self.causes], dtype=np.float64)
        shares: npt.NDArray[np.float64] = counts / counts.sum()
        return shares

    def repair_s(self, cause: Cause) -> int:
        """The repair time of ``cause``, after overrides."""
        return self.repair_overrides.get(cause.name, cause.repair_s)

    def interruptions_per_gpu_day(self, *, include_planned: bool = True) -> float:
        """The scaled rate at which a GPU sees an interruption, all causes."""
        planned = self.planned_rate_per_gpu_day if include_planned else 0.0
        return self.scale * (self.rate_per_gpu_day + planned)

    # --- sampling ----------------------------------------------------------------------

    def sample(
        self,
        rng: np.random.Generator,
        n_nodes: int,
        gpus_per_node: int | npt.NDArray[np.integer],
        start_s: int,
        end_s: int,
    ) -> list[FailureEvent]:
        """Every failure in ``[start_s, end_s)``, sorted by time, then node.

        The cluster-wide process is Poisson with rate (per GPU-day x total GPUs): draw
        the count, then uniform times, then nodes weighted by their GPUs, then causes by
        their published shares. Unexpected failures are drawn before planned drains, so
        a given seed always gives the same list. Vectorised: cost grows with the number
        of events, not of GPUs.

        Failures are drawn independently of the cluster's state: a node may fail again
        while it is already down or draining. Ignoring (or merging) such repeats is the
        engine's business. A rack-uplink event names the node that drew it; the engine
        takes down that node's rack.
        """
        weights = _node_gpus(n_nodes, gpus_per_node)
        if end_s < start_s:
            raise SpecError("end_s", f"must be >= start_s ({start_s}), got {end_s}")
        total_gpus = int(weights.sum())
        gpu_days = total_gpus * (end_s - start_s) / DAY
        probs = weights / total_gpus if total_gpus and weights.min() != weights.max() else None

        def draw(rate: float, causes: tuple[Cause, ...], shares: npt.NDArray[np.float64]) -> _Draw:
            n = int(rng.poisson(self.scale * rate * gpu_days)) if gpu_days > 0 else 0
            times = rng.integers(start_s, end_s, size=n, dtype=np.int64)
            nodes = rng.choice(n_nodes, size=n, p=probs)
            which = rng.choice(len(causes), size=n, p=shares)
            return times, nodes.astype(np.int64), which, causes

        unexpected = draw(self.rate_per_gpu_day, self.causes, self.shares)
        planned = draw(self.planned_rate_per_gpu_day, (self.planned,), np.ones(1))
        return self._events(unexpected, planned)

    def _events(self, *draws: _Draw) -> list[FailureEvent]:
        times = np.concatenate([d[0] for d in draws])
        nodes = np.concatenate([d[1] for d in draws])
        # One table of every cause across the draws; index into it per event.
        table = [c for d in draws for c in d[3]]
        offsets = np.cumsum([0, *(len(d[3]) for d in draws[:-1])])
        which = np.concatenate([d[2] + off for d, off in zip(draws, offsets, strict=True)])
        order = np.lexsort((which, nodes, times))
        repairs = [self.repair_s(c) for c in table]
        notices = [self.planned_notice_s if c.effect is Effect.PLANNED_DRAIN else 0 for c in table]
        return [
            FailureEvent(t, n, table[k].name, table[k].effect, repairs[k], notices[k])
            for t, n, k in zip(
                times[order].tolist(), nodes[order].tolist(), which[order].tolist(), strict=True
            )
        ]


_Draw = tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], tuple[Cause, ...]
]


# --- Checkpointing arithmetic ----------------------------------------------------------


def job_mtbf_s(model: FailureModel, gpus: int, *, include_planned: bool = True) -> float:
    """Mean seconds between interruptions of a job holding ``gpus`` GPUs.

    Every effect interrupts a job it touches (node down, job only, rack uplink, planned
    drain), so this is 1 / (per-GPU rate x gpus). Rack uplinks are approximated by their
    per-GPU share, as they were counted on the 16k-GPU run; a small job sharing a rack
    with others in fact sees its rack's whole uplink rate, so this is optimistic for it.

    The published "interrupted every 3.1 h" for 16,384 GPUs counts the unexpected
    interruptions only (``include_planned=False``); with the planned ones it is 2.8 h
    (54 days / 466). Returns ``inf`` when the rate is 0.
    """
    if gpus <= 0:
        raise SpecError("gpus", f"must be > 0, got {gpus}")
    rate = model.interruptions_per_gpu_day(include_planned=include_planned) * gpus
    return math.inf if rate == 0 else DAY / rate


def young_daly_interval(mtbf_s: float, checkpoint_write_s: float) -> int:
    """The first-order optimal checkpoint interval ``sqrt(2 * write * MTBF)``, in integer
    seconds and never below the write time (Young 1974; Daly 2006, whose higher-order
    refinement we do not use)."""
    if not (math.isfinite(mtbf_s) and mtbf_s > 0):
        raise SpecError("mtbf_s", f"must be finite and > 0, got {mtbf_s!r}")
    if not (math.isfinite(checkpoint_write_s) and checkpoint_write_s > 0):
        raise SpecError("checkpoint_write_s", f"must be finite and > 0, got {checkpoint_write_s!r}")
    interval = math.sqrt(2.0 * checkpoint_write_s * mtbf_s)
    return max(round(interval), math.ceil(checkpoint_write_s))


def expected_goodput(interval_s: float, write_s: float, restart_s: float, mtbf_s: float) -> float:
    """First-order share of wall time spent on useful work, in [0, 1].

    The job computes ``interval_s`` (tau), then writes a checkpoint for ``write_s``
    (delta). Failures come every ``mtbf_s`` (M) of wall time; each costs the restart
    (R) plus, on average, half a segment of lost work. Hence::

        goodput = tau / (tau + delta) * (1 - (R + (tau + delta) / 2) / M)

    clamped at 0. For delta << tau << M its loss is about ``delta/tau + tau/(2M) + R/M``,
    which :func:`young_daly_interval` minimises; the formula's exact optimum is
    ``tau + delta = sqrt(2 delta (M - R))``, close to it when delta and R are small
    against M. ``mtbf_s`` may be ``inf``.
    """
    for name, value in (("interval_s", interval_s), ("write_s", write_s), ("restart_s", restart_s)):
        if not (math.isfinite(value) and value >= 0):
            raise SpecError(name, f"must be finite and >= 0, got {value!r}")
    if interval_s == 0:
        raise SpecError("interval_s", "must be > 0")
    if not mtbf_s > 0:
        raise SpecError("mtbf_s", f"must be > 0, got {mtbf_s!r}")
    segment = interval_s + write_s
    lost = (restart_s + segment / 2.0) / mtbf_s
    return max(0.0, interval_s / segment * (1.0 - lost))


# --- helpers ---------------------------------------------------------------------------


def _node_gpus(n_nodes: int, gpus_per_node: int | npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
    if n_nodes <= 0:
        raise SpecError("n_nodes", f"must be > 0, got {n_nodes}")
    if isinstance(gpus_per_node, int | np.integer):
        if gpus_per_node < 0:
            raise SpecError("gpus_per_node", f"must be >= 0, got {gpus_per_node}")
        return np.full(n_nodes, int(gpus_per_node), dtype=np.int64)
    weights = np.asarray(gpus_per_node)
    if weights.shape != (n_nodes,):
        raise SpecError("gpus_per_node", f"expected {n_nodes} entries, got shape {weights.shape}")
    if not np.issubdtype(weights.dtype, np.integer) or (weights < 0).any():
        raise SpecError("gpus_per_node", "expected non-negative integers")
    return weights.astype(np.int64)


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(field, f"expected a number, got {value!r}")
    return float(value)


def _duration(value: object, field: str) -> int:
    if not isinstance(value, str | int | float):
        raise SpecError(field, f"expected a duration such as '2d' or '30m', got {value!r}")
    return parse_duration(value, field)
