"""Energy, water and carbon, per job and per tenant, from the usage ledger.

Formulas (W watts, s seconds; 1 kWh = 3,600,000 J):

    IT power      P_IT = busy * busy_watts + idle * idle_watts + nodes_on * node_overhead_watts
    facility      P_fac = P_IT * PUE
    job IT energy E_IT = gpu_seconds * (busy_watts + node_overhead_watts / gpus_per_node) / 3.6e6
                  (busy GPUs at board power, plus the node's overhead shared in proportion
                  to the GPUs held: 4 of 8 GPUs carry half the node's CPUs, NICs and fans)
    unallocated   E_IT = idle_gpu_seconds * (idle_watts + node_overhead_watts / gpus_per_node)
                  / 3.6e6, where idle_gpu_seconds = installed * horizon - allocated;
                  attributed to the owner as tenant "unallocated"
    facility      E_fac = E_IT * PUE
    water (L)     E_IT * WUE      (The Green Grid: WUE is site litres per kWh of IT energy)
    carbon (kg)   E_fac * carbon_kg_per_kwh   (the grid supplies the whole facility)
    cost          E_fac * power_price; rounded to cents half up, as ``money.micro_to_cents``

Assumptions (documented in design doc 0005): an allocated GPU draws its board power
(TDP), an upper bound; every node stays powered on through the horizon; the defaults
of ``SiteEnergy`` below. Quantities are computed exactly (``Fraction``) and reported as
floats; money is reported in integer cents.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING, TypeVar, overload

import numpy as np
import numpy.typing as npt

from cotenant.metering.ledger import UsageLedger, clip
from cotenant.metering.money import MICRO_PER_CENT, round_half_up
from cotenant.model.accelerators import CATALOGUE, AcceleratorKind
from cotenant.model.errors import SpecError

if TYPE_CHECKING:
    from cotenant.cluster.state import ClusterState
    from cotenant.cluster.topology import Topology

OWNER_UNALLOCATED = "unallocated"
J_PER_KWH = 3_600_000

FloatOrArray = TypeVar("FloatOrArray", float, npt.NDArray[np.float64])


@dataclass(frozen=True, slots=True)
class SiteEnergy:
    """The site's energy figures. Every default is an assumption; set measured values.

    * ``pue`` 1.2: new AI sites are about 1.1-1.3 (industry average 1.58, Uptime
      Institute 2023; see shared/data/README.md).
    * ``wue_l_per_kwh`` 1.8 L per IT kWh: the commonly cited industry average (about
      1.8-1.9); an assumption, not a measurement of any site. Dry-cooled sites are near 0.
    * ``carbon_kg_per_kwh`` 0.4: roughly the US grid average (EIA: 0.81 lb = 0.37 kg
      CO2 per kWh in 2023), rounded up; an assumption. Tennessee/TVA and on-site gas
      turbines differ; set the site's own factor.
    * ``node_overhead_watts`` 2000 W per 8-GPU node for CPUs, memory, NICs and fans: a
      planning assumption.
    * ``power_price_micro_per_kwh`` 80,000 ($0.08/kWh): an industrial-tariff assumption.
    * ``power_cap_mw``: the site's grid feed (None: not checked).
    """

    pue: float = 1.2
    wue_l_per_kwh: float = 1.8
    carbon_kg_per_kwh: float = 0.4
    node_overhead_watts: int = 2000
    power_price_micro_per_kwh: int = 80_000
    power_cap_mw: float | None = None

    def validate(self, field: str = "site") -> SiteEnergy:
        """Raise ``SpecError`` naming ``{field}.{name}`` for the first bad value; else self."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SpecError(f"{field}.{f.name}", f"expected a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise SpecError(f"{field}.{f.name}", f"must be a finite number >= 0, got {value!r}")
        if self.pue < 1:
            raise SpecError(f"{field}.pue", f"PUE is facility / IT power, so >= 1; got {self.pue}")
        for name in ("node_overhead_watts", "power_price_micro_per_kwh"):
            if not isinstance(getattr(self, name), int):
                raise SpecError(f"{field}.{name}", "must be a whole number")
        if self.power_cap_mw is not None and self.power_cap_mw <= 0:
            raise SpecError(f"{field}.power_cap_mw", "must be > 0 (or absent)")
        return self


@overload
def it_power_watts(
    busy_gpus: float, idle_gpus: float, nodes_on: float, kind: AcceleratorKind, site: SiteEnergy
) -> float: ...


@overload
def it_power_watts(
    busy_gpus: npt.ArrayLike,
    idle_gpus: npt.ArrayLike,
    nodes_on: npt.ArrayLike,
    kind: AcceleratorKind,
    site: SiteEnergy,
) -> npt.NDArray[np.float64]: ...


def it_power_watts(
    busy_gpus: npt.ArrayLike,
    idle_gpus: npt.ArrayLike,
    nodes_on: npt.ArrayLike,
    kind: AcceleratorKind,
    site: SiteEnergy,
) -> float | npt.NDArray[np.float64]:
    """``busy * busy_watts + idle * idle_watts + nodes_on * node_overhead_watts`` for one
    kind; NumPy arrays broadcast (e.g. per node or per time step). Sum over kinds."""
    busy = np.asarray(busy_gpus, dtype=np.float64)
    idle = np.asarray(idle_gpus, dtype=np.float64)
    nodes = np.asarray(nodes_on, dtype=np.float64)
    watts = busy * kind.busy_watts + idle * kind.idle_watts + nodes * site.node_overhead_watts
    if watts.ndim == 0:
        return float(watts)
    return watts


def facility_power_w(it_w: FloatOrArray, site: SiteEnergy) -> FloatOrArray:
    """``it_w * PUE``: what the site draws from the grid for ``it_w`` of IT load."""
    return it_w * site.pue


def gpu_hour_power_cost_micro(kind: AcceleratorKind, site: SiteEnergy, busy: bool) -> Fraction:
    """Power cost of one GPU-hour (busy or idle, with its share of node overhead), exact
    micro-dollars: ``(W_gpu + overhead / gpus_per_node) / 1000 * PUE * price``."""
    watts = _per_gpu_watts(kind, site, busy)
    return watts / 1000 * _exact(site.pue) * site.power_price_micro_per_kwh


def busy_gpu_headroom(
    site: SiteEnergy, kind: AcceleratorKind, busy_gpus: int, total_gpus: int, nodes: int
) -> int | None:
    """How many more GPUs of one kind may turn busy before facility power passes the
    site cap: the largest ``n >= 0`` with
    ``PUE * ((busy + n) * busy_watts + (total - busy - n) * idle_watts
    + nodes * node_overhead_watts) <= cap``. Every node counts as powered on. Exact
    (``Fraction``); None when the site has no cap."""
    return power_headroom_gpus(
        site, {kind.name: (total_gpus, nodes)}, {kind.name: busy_gpus}, {kind.name: kind}
    )


def power_headroom_gpus(
    site: SiteEnergy,
    installed: Mapping[str, tuple[int, int]],
    busy_by_kind: Mapping[str, int],
    catalogue: Mapping[str, AcceleratorKind] = CATALOGUE,
) -> int | None:
    """``busy_gpu_headroom`` for a cluster of several kinds: ``installed`` maps a kind to
    its (GPUs, nodes), ``busy_by_kind`` to its busy GPUs. The headroom is counted in GPUs
    of the kind whose busy step (busy - idle watts) is largest, so it is safe whichever
    kind the next GPUs are (conservative on a mixed cluster). None when there is no cap."""
    if site.power_cap_mw is None:
        return None
    base = Fraction(0)  # IT watts now: every GPU idle, every node on, plus the busy steps
    step = 0
    for name, (gpus, nodes) in sorted(installed.items()):
        kind = _kind(catalogue, name, f"installed[{name!r}]")
        busy = busy_by_kind.get(name, 0)
        base += gpus * kind.idle_watts + nodes * site.node_overhead_watts
        base += busy * (kind.busy_watts - kind.idle_watts)
        if gpus > 0:
            step = max(step, kind.busy_watts - kind.idle_watts)
    room = _exact(site.power_cap_mw) * 1_000_000 / _exact(site.pue) - base
    if room < 0:
        return 0
    if step <= 0:
        return sum(g for g, _ in installed.values()) - sum(busy_by_kind.values())
    return math.floor(room / step)


def topology_power_headroom(
    site: SiteEnergy | None, topo: Topology, state: ClusterState
) -> int | None:
    """``power_headroom_gpus`` for a live cluster: GPUs held in ``state`` are busy (the
    engine's snapshot hook; design doc 0005, "Site power cap"). None without a site or cap."""
    if site is None or site.power_cap_mw is None:
        return None
    installed: dict[str, tuple[int, int]] = {}
    busy: dict[str, int] = {}
    for name, (gpus, nodes, held) in _held_by_kind(topo, state).items():
        installed[name] = (gpus, nodes)
        busy[name] = held
    return power_headroom_gpus(site, installed, busy)


def _held_by_kind(topo: Topology, state: ClusterState) -> dict[str, tuple[int, int, int]]:
    """(GPUs installed, nodes, GPUs held) of each kind: the state's running count of held
    GPUs, or installed less free (``ClusterState`` keeps free + held = capacity on every
    node), without adding up a tenants-by-nodes array every cycle."""
    if len(topo.kinds) == 1:
        return {topo.kinds[0]: (topo.total_gpus, topo.n_nodes, state.held)}
    out: dict[str, tuple[int, int, int]] = {}
    for k, name in enumerate(topo.kinds):
        mask = topo.node_kind == k
        gpus = int(topo.node_gpus[mask].sum())
        out[name] = (gpus, int(mask.sum()), gpus - int(state.free[mask].sum(dtype=np.int64)))
    return out


def topology_facility_power_w(site: SiteEnergy, topo: Topology, state: ClusterState) -> float:
    """Facility watts drawn now: GPUs held in ``state`` busy, the rest idle, every node on,
    times PUE (the same model the power cap is checked against)."""
    it_w = 0.0
    for name, (gpus, nodes, busy) in _held_by_kind(topo, state).items():
        it_w += it_power_watts(busy, gpus - busy, nodes, CATALOGUE[name], site)
    return float(facility_power_w(it_w, site))


@dataclass(frozen=True, slots=True)
class EnergyUse:
    gpu_seconds: int
    it_kwh: float
    facility_kwh: float
    water_l: float
    co2e_kg: float
    cost_cents: int

    def to_json_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class EnergyReport:
    """Energy over ``[start_s, end_s)``. ``per_tenant`` includes ``"unallocated"``."""

    start_s: int
    end_s: int
    per_tenant: dict[str, EnergyUse]
    per_job: dict[str, EnergyUse]
    total: EnergyUse
    peak_it_w: float
    peak_facility_w: float
    over_power_cap: bool  # False when the site has no cap

    def to_json_dict(self) -> dict[str, object]:
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "per_tenant": {k: v.to_json_dict() for k, v in self.per_tenant.items()},
            "per_job": {k: v.to_json_dict() for k, v in self.per_job.items()},
            "total": self.total.to_json_dict(),
            "peak_it_w": self.peak_it_w,
            "peak_facility_w": self.peak_facility_w,
            "over_power_cap": self.over_power_cap,
        }


def _idle_it_watts(
    installed: Mapping[str, int], catalogue: Mapping[str, AcceleratorKind], site: SiteEnergy
) -> float:
    """IT power with every installed GPU idle and every node on."""
    base_w = 0.0
    for name, gpus in sorted(installed.items()):
        where = f"cluster_gpus_by_kind[{name!r}]"
        kind = _kind(catalogue, name, where)
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise SpecError(where, f"must be a whole number of GPUs >= 0, got {gpus!r}")
        base_w += it_power_watts(0, gpus, gpus / kind.gpus_per_node, kind, site)
    return base_w


def _idle_gpu_seconds(
    installed: Mapping[str, int], allocated: Mapping[str, int], horizon_s: int
) -> dict[str, int]:
    """Installed GPU-seconds of each kind that no record allocated (the owner's idle)."""
    idle: dict[str, int] = {}
    for name in sorted(set(installed) | set(allocated)):
        gpus = installed.get(name, 0)
        spare = gpus * horizon_s - allocated.get(name, 0)
        if spare < 0:
            raise SpecError(
                f"cluster_gpus_by_kind[{name!r}]",
                f"{gpus} GPUs installed, but the ledger holds {allocated[name]} GPU-seconds of "
                f"{name} in a {horizon_s} s horizon",
            )
        if spare:
            idle[name] = spare
    return idle


def energy_report(
    ledger: UsageLedger,
    site: SiteEnergy,
    catalogue: Mapping[str, AcceleratorKind] = CATALOGUE,
    cluster_gpus_by_kind: Mapping[str, int] | None = None,
    horizon: tuple[int, int] | None = None,
) -> EnergyReport:
    """Energy per tenant and per job over ``horizon`` (default: the ledger's span).

    ``cluster_gpus_by_kind`` is the installed GPUs of each kind (default: none, so no
    unallocated energy). Records are clipped to the horizon exactly.
    """
    site.validate()
    installed = dict(cluster_gpus_by_kind or {})
    base_w = _idle_it_watts(installed, catalogue, site)
    records = ledger.records()
    if horizon is None:
        lo = min((r.start_s for r in records), default=0)
        horizon = (lo, max((r.end_s for r in records), default=lo))
    h0, h1 = horizon
    if h1 < h0:
        raise SpecError("horizon", f"ends before it starts ({h1} < {h0})")

    by_tenant: dict[str, dict[str, int]] = {}
    by_job: dict[str, dict[str, int]] = {}
    allocated: dict[str, int] = {}
    times: list[int] = []
    deltas: list[float] = []
    for i, rec in enumerate(records):
        part = clip(rec, h0, h1)
        if part is None:
            continue
        kind = _kind(catalogue, part.accelerator, f"record[{i}].accelerator")
        if part.tenant == OWNER_UNALLOCATED:
            raise SpecError(f"record[{i}].tenant", f"{OWNER_UNALLOCATED!r} is reserved")
        gs = part.gpu_seconds
        for groups, key in ((by_tenant, part.tenant), (by_job, part.job_id)):
            per_kind = groups.setdefault(key, {})
            per_kind[kind.name] = per_kind.get(kind.name, 0) + gs
        allocated[kind.name] = allocated.get(kind.name, 0) + gs
        step = float(part.gpus * (kind.busy_watts - kind.idle_watts))
        times += [part.start_s, part.end_s]
        deltas += [step, -step]

    idle = _idle_gpu_seconds(installed, allocated, h1 - h0)

    exact_tenant = {t: _exact_use(by_tenant[t], catalogue, site, True) for t in sorted(by_tenant)}
    exact_tenant[OWNER_UNALLOCATED] = _exact_use(idle, catalogue, site, False)
    total = _ExactUse.sum(exact_tenant.values())

    peak_it = base_w + _peak_step(times, deltas)
    peak_fac = facility_power_w(peak_it, site)
    cap = site.power_cap_mw
    return EnergyReport(
        start_s=h0,
        end_s=h1,
        per_tenant={t: u.report(site) for t, u in exact_tenant.items()},
        per_job={
            j: _exact_use(by_job[j], catalogue, site, True).report(site) for j in sorted(by_job)
        },
        total=total.report(site),
        peak_it_w=peak_it,
        peak_facility_w=peak_fac,
        over_power_cap=cap is not None and peak_fac > cap * 1_000_000,
    )


@dataclass(frozen=True, slots=True)
class _ExactUse:
    gpu_seconds: int
    it_joules: Fraction

    @staticmethod
    def sum(uses: Iterable[_ExactUse]) -> _ExactUse:
        gs, joules = 0, Fraction(0)
        for u in uses:
            gs += u.gpu_seconds
            joules += u.it_joules
        return _ExactUse(gs, joules)

    def report(self, site: SiteEnergy) -> EnergyUse:
        return _report(self.gpu_seconds, self.it_joules, _site_factors(site))


@dataclass(frozen=True, slots=True)
class _SiteFactors:
    """A site's configured figures as exact ratios (numerator, denominator), read once per
    report rather than once per job: a month has tens of thousands of jobs."""

    pue: tuple[int, int]
    wue: tuple[int, int]
    carbon: tuple[int, int]
    price_micro: int


@lru_cache(maxsize=64)
def _site_factors(site: SiteEnergy) -> _SiteFactors:
    def ratio(x: float) -> tuple[int, int]:
        f = _exact(x)
        return f.numerator, f.denominator

    return _SiteFactors(
        ratio(site.pue),
        ratio(site.wue_l_per_kwh),
        ratio(site.carbon_kg_per_kwh),
        site.power_price_micro_per_kwh,
    )


def _report(gpu_seconds: int, it_joules: Fraction, f: _SiteFactors) -> EnergyUse:
    """The figures of an exact energy use. Each float is one integer division (Python's
    ``int / int`` is correctly rounded, as ``float(Fraction)`` is), so they equal the
    exact rationals' floats, without building a Fraction per figure."""
    jn, jd = it_joules.numerator, it_joules.denominator
    kwh_d = jd * J_PER_KWH  # it_kwh = jn / kwh_d
    (pn, pd), (wn, wd), (cn, cd) = f.pue, f.wue, f.carbon
    fac_n, fac_d = jn * pn, kwh_d * pd  # facility kWh
    cost = Fraction(fac_n * f.price_micro, fac_d * MICRO_PER_CENT)
    return EnergyUse(
        gpu_seconds=gpu_seconds,
        it_kwh=jn / kwh_d,
        facility_kwh=fac_n / fac_d,
        water_l=(jn * wn) / (kwh_d * wd),
        co2e_kg=(fac_n * cn) / (fac_d * cd),
        cost_cents=round_half_up(cost),
    )


def _exact_use(
    gpu_seconds_by_kind: Mapping[str, int],
    catalogue: Mapping[str, AcceleratorKind],
    site: SiteEnergy,
    busy: bool,
) -> _ExactUse:
    joules = Fraction(0)
    for name, gs in gpu_seconds_by_kind.items():
        joules += gs * _per_gpu_watts(_kind(catalogue, name, ""), site, busy)
    return _ExactUse(sum(gpu_seconds_by_kind.values()), joules)


@lru_cache(maxsize=256)
def _per_gpu_watts(kind: AcceleratorKind, site: SiteEnergy, busy: bool) -> Fraction:
    gpu_w = kind.busy_watts if busy else kind.idle_watts
    return gpu_w + Fraction(site.node_overhead_watts, kind.gpus_per_node)


def _peak_step(times: list[int], deltas: list[float]) -> float:
    """Largest running sum of power steps; at equal times, decreases come first
    (intervals are half-open, so one job's end and the next one's start do not overlap)."""
    if not times:
        return 0.0
    t = np.asarray(times, dtype=np.int64)
    d = np.asarray(deltas, dtype=np.float64)
    order = np.lexsort((d, t))
    running = np.cumsum(d[order])
    return max(0.0, float(running.max()))


def _kind(catalogue: Mapping[str, AcceleratorKind], name: str, field: str) -> AcceleratorKind:
    try:
        return catalogue[name]
    except KeyError:
        valid = ", ".join(sorted(catalogue))
        raise SpecError(
            field or "accelerator", f"unknown accelerator kind {name!r}; valid: {valid}"
        ) from None


@lru_cache(maxsize=256)
def _exact(x: float) -> Fraction:
    """A configured decimal figure as the exact decimal it was written as (1.2 is 6/5)."""
    return Fraction(repr(x))
