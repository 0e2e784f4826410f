"""Inference services in a scenario: the ``[[services]]`` tables.

Each table names a tenant's service, sizes its replicas for the M/M/c model
(``queueing.ServiceSpec``), says how the autoscaler follows demand (``ScalingTerms``) and
where the demand comes from (a diurnal generator, a ``time_s,rps`` file or the Alibaba 2025
serving trace). Everything is checked when the scenario loads; a bad value raises
:class:`SpecError` naming ``services[i].<field>``. Demand files are read only when the run
builds its curves (``DemandSource.curve``), so listing scenarios stays cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cotenant.model.errors import SpecError
from cotenant.model.time import DAY, parse_duration
from cotenant.serving.demand import DemandCurve, alibaba_serving, diurnal, from_csv
from cotenant.serving.queueing import ServiceSpec

DEFAULT_PRIORITY = 1_000  # above any training or experiment priority the generators use
DATA_ENV = "COTENANT_DATA"  # where the shared traces live, if not ../shared/data


@dataclass(frozen=True, slots=True)
class ScalingTerms:
    """How the autoscaler follows demand (docs/design/0007-serving.md, "Autoscaler").

    ``lookahead_s`` None means start-up + the tenant's reclaim grace + one tick: a replica
    asked for now serves by then even when borrowers must be reclaimed for it first.
    """

    headroom: float = 1.1  # demand is multiplied by this before sizing
    lookahead_s: int | None = None
    scale_down_hold_s: int = 30 * 60  # demand must stay below this long before scaling down
    scale_step: float = 0.05  # scale-ups overshoot, scale-downs wait for, this fraction
    tick_s: int = 60


@dataclass(frozen=True, slots=True)
class DiurnalDemand:
    """``demand.diurnal``: the arguments of :func:`cotenant.serving.demand.diurnal`."""

    peak_rps: float
    trough_ratio: float = 0.3
    peak_hour: float = 14.0
    weekend_ratio: float = 0.7
    growth_per_day: float = 0.0
    noise: float = 0.05
    bursts_per_day: float = 0.0
    burst_factor: float = 2.0
    burst_minutes: int = 15
    utc_offset_h: float = 0.0
    step_s: int = 300
    seed: int = 0

    def curve(self, start_s: int, end_s: int) -> DemandCurve:
        return diurnal(
            start_s,
            (end_s - start_s) / DAY,
            self.step_s,
            self.peak_rps,
            trough_ratio=self.trough_ratio,
            peak_hour=self.peak_hour,
            weekend_ratio=self.weekend_ratio,
            growth_per_day=self.growth_per_day,
            noise=self.noise,
            bursts_per_day=self.bursts_per_day,
            burst_factor=self.burst_factor,
            burst_minutes=self.burst_minutes,
            seed=self.seed,
            utc_offset_h=self.utc_offset_h,
        )


@dataclass(frozen=True, slots=True)
class CsvDemand:
    """``demand.csv``: a ``time_s,rps`` file (Unix seconds), values times ``scale``."""

    path: Path
    scale: float = 1.0

    def curve(self, start_s: int, end_s: int) -> DemandCurve:
        if not self.path.is_file():
            raise SpecError("demand.path", f"no demand file at {self.path}")
        return from_csv(self.path).scaled(self.scale)


@dataclass(frozen=True, slots=True)
class AlibabaDemand:
    """``demand.alibaba``: instances alive per step in the Alibaba 2025 serving trace times
    ``rps_per_instance`` (the proxy of docs/design/0007-serving.md). Trace second
    ``offset_s`` is placed at the scenario start."""

    path: Path | None = None
    app: str = "all"
    role: str | None = None
    rps_per_instance: float = 1.0
    step_s: int = 300
    offset_s: int = 0

    def curve(self, start_s: int, end_s: int) -> DemandCurve:
        where = self.path if self.path is not None else find_shared_data()
        curves = alibaba_serving(
            where,
            app=self.app,
            step_s=self.step_s,
            epoch_s=start_s - self.offset_s,
            rps_per_instance=self.rps_per_instance,
            role=self.role,
        )
        return curves[self.app]


DemandSource = DiurnalDemand | CsvDemand | AlibabaDemand


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """One service of a scenario: what it is, how it scales, where its demand comes from."""

    spec: ServiceSpec
    scaling: ScalingTerms
    demand: DemandSource

    @property
    def name(self) -> str:
        return self.spec.name


def find_shared_data() -> Path:
    """The shared data directory: ``$COTENANT_DATA``, ``../shared/data`` from the working
    directory, or ``shared/data`` beside this checkout."""
    cands = [Path(p) for p in (os.environ.get(DATA_ENV),) if p]
    cands += [
        Path("..") / "shared" / "data",
        Path(__file__).resolve().parents[4] / "shared" / "data",
    ]
    for c in cands:
        if c.is_dir():
            return c
    raise SpecError(
        "demand.path",
        f"no shared data directory (tried {', '.join(str(c) for c in cands)}); set {DATA_ENV} "
        "or give the path of the trace",
    )


_SERVICE = {
    "name",
    "tenant",
    "gpus_per_replica",
    "throughput_rps_per_replica",
    "servers_per_replica",
    "service_time_s",
    "latency_target_s",
    "latency_quantile",
    "min_replicas",
    "max_replicas",
    "startup",
    "priority",
    "headroom",
    "lookahead",
    "scale_down_hold",
    "scale_step",
    "tick",
    "demand",
}
_DIURNAL = {
    "kind",
    "peak_rps",
    "trough_ratio",
    "peak_hour",
    "weekend_ratio",
    "growth_per_day",
    "noise",
    "bursts_per_day",
    "burst_factor",
    "burst_minutes",
    "utc_offset_h",
    "step",
    "seed",
}
_CSV = {"kind", "path", "scale"}
_ALIBABA = {"kind", "path", "app", "role", "rps_per_instance", "step", "offset"}
DEMAND_KINDS = ("diurnal", "csv", "alibaba")


def parse_services(
    raw: Any,
    tenants: Collection[str],
    seed: int = 0,
    base_dir: Path | None = None,
) -> tuple[ServiceConfig, ...]:
    """Every ``[[services]]`` table, checked. Relative paths are taken from ``base_dir``
    (the scenario file's directory) or the working directory."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError("services", "must be an array of tables ([[services]])")
    out: list[ServiceConfig] = []
    for i, item in enumerate(raw):
        f = f"services[{i}]"
        cfg = _parse_one(item, f, tenants, seed + 101 * (i + 1), base_dir)
        if any(c.name == cfg.name for c in out):
            raise SpecError(f"{f}.name", f"service {cfg.name!r} appears twice")
        out.append(cfg)
    return tuple(out)


def _parse_one(
    raw: Any, f: str, tenants: Collection[str], seed: int, base_dir: Path | None
) -> ServiceConfig:
    if not isinstance(raw, Mapping):
        raise SpecError(f, "must be a table")
    _no_unknown(raw, _SERVICE, f)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"{f}.name", "a service needs a non-empty name")
    tenant = raw.get("tenant")
    if not isinstance(tenant, str) or tenant not in tenants:
        raise SpecError(
            f"{f}.tenant", f"{tenant!r} is not a tenant of this scenario ({', '.join(tenants)})"
        )
    throughput = _number(raw, "throughput_rps_per_replica", f, None, low=0.0, strict=True)
    servers = _servers(raw, f, throughput)
    max_r = raw.get("max_replicas")
    spec = ServiceSpec(
        name=name,
        tenant=tenant,
        throughput_rps_per_replica=throughput,
        latency_target_s=_number(raw, "latency_target_s", f, None, low=0.0, strict=True),
        gpus_per_replica=_int(raw, "gpus_per_replica", f, 8, low=1),
        servers_per_replica=servers,
        min_replicas=_int(raw, "min_replicas", f, 1, low=0),
        max_replicas=None if max_r is None else _int(raw, "max_replicas", f, 1, low=1),
        startup_s=parse_duration(raw.get("startup", "10m"), f"{f}.startup"),
        priority=_int(raw, "priority", f, DEFAULT_PRIORITY, low=None),
        latency_quantile=_number(raw, "latency_quantile", f, 0.99, low=0.0, strict=True),
    )
    try:
        spec.validate()
    except SpecError as e:
        field = e.field.rsplit(".", 1)[-1]
        raise SpecError(f"{f}.{field}", e.problem) from None
    lookahead = raw.get("lookahead")
    scaling = ScalingTerms(
        headroom=_number(raw, "headroom", f, 1.1, low=1.0),
        lookahead_s=None if lookahead is None else parse_duration(lookahead, f"{f}.lookahead"),
        scale_down_hold_s=parse_duration(raw.get("scale_down_hold", "30m"), f"{f}.scale_down_hold"),
        scale_step=_number(raw, "scale_step", f, 0.05, low=0.0),
        tick_s=parse_duration(raw.get("tick", "60s"), f"{f}.tick"),
    )
    if scaling.scale_step >= 1.0:
        raise SpecError(f"{f}.scale_step", f"must be below 1, got {scaling.scale_step!r}")
    if scaling.tick_s < 1:
        raise SpecError(f"{f}.tick", "must be at least 1 second")
    if "demand" not in raw:
        raise SpecError(f"{f}.demand", f"a service needs a demand table (kind: {DEMAND_KINDS})")
    demand = _parse_demand(raw["demand"], f"{f}.demand", seed, base_dir)
    return ServiceConfig(spec, scaling, demand)


def _parse_demand(raw: Any, f: str, seed: int, base_dir: Path | None) -> DemandSource:
    if not isinstance(raw, Mapping):
        raise SpecError(f, "must be a table")
    kind = raw.get("kind")
    if kind not in DEMAND_KINDS:
        raise SpecError(f"{f}.kind", f"must be one of {', '.join(DEMAND_KINDS)}, got {kind!r}")
    if kind == "diurnal":
        _no_unknown(raw, _DIURNAL, f)
        d = DiurnalDemand(
            peak_rps=_number(raw, "peak_rps", f, None, low=0.0),
            trough_ratio=_number(raw, "trough_ratio", f, 0.3, low=0.0, high=1.0),
            peak_hour=_number(raw, "peak_hour", f, 14.0, low=0.0, high=23.999),
            weekend_ratio=_number(raw, "weekend_ratio", f, 0.7, low=0.0),
            growth_per_day=_number(raw, "growth_per_day", f, 0.0, low=-0.99),
            noise=_number(raw, "noise", f, 0.05, low=0.0),
            bursts_per_day=_number(raw, "bursts_per_day", f, 0.0, low=0.0),
            burst_factor=_number(raw, "burst_factor", f, 2.0, low=0.0),
            burst_minutes=_int(raw, "burst_minutes", f, 15, low=0),
            utc_offset_h=_number(raw, "utc_offset_h", f, 0.0, low=-24.0, high=24.0),
            step_s=_step(raw, f),
            seed=_int(raw, "seed", f, seed, low=None),
        )
        return d
    if kind == "csv":
        _no_unknown(raw, _CSV, f)
        path = _path(raw, f, base_dir, required=True)
        assert path is not None  # required=True raised otherwise
        return CsvDemand(path, _number(raw, "scale", f, 1.0, 0.0))
    _no_unknown(raw, _ALIBABA, f)
    role = raw.get("role")
    if role is not None and role not in ("CN", "HN"):
        raise SpecError(f"{f}.role", f"must be 'CN' or 'HN', got {role!r}")
    app = raw.get("app", "all")
    if not isinstance(app, str) or not app:
        raise SpecError(f"{f}.app", f"must be an app name or 'all', got {app!r}")
    return AlibabaDemand(
        path=_path(raw, f, base_dir, required=False),
        app=app,
        role=role,
        rps_per_instance=_number(raw, "rps_per_instance", f, 1.0, low=0.0, strict=True),
        step_s=_step(raw, f),
        offset_s=parse_duration(raw.get("offset", 0), f"{f}.offset"),
    )


def _servers(raw: Mapping[str, Any], f: str, throughput: float) -> int:
    """``servers_per_replica``, or ``service_time_s`` (mean seconds per request), from which
    ``servers = throughput * service_time`` must come out whole (Little's law at full load)."""
    if "service_time_s" not in raw:
        return _int(raw, "servers_per_replica", f, 1, low=1)
    st = _number(raw, "service_time_s", f, None, low=0.0, strict=True)
    servers = throughput * st
    whole = round(servers)
    if whole < 1 or abs(servers - whole) > 1e-9 * max(1.0, servers):
        raise SpecError(
            f"{f}.service_time_s",
            f"throughput x service time = {servers:g} concurrent requests per replica; it must "
            "be a whole number >= 1 (or give servers_per_replica)",
        )
    if "servers_per_replica" in raw and _int(raw, "servers_per_replica", f, 1, low=1) != whole:
        raise SpecError(
            f"{f}.servers_per_replica",
            f"disagrees with throughput x service_time_s = {whole}; give one of them",
        )
    return int(whole)


def _path(raw: Mapping[str, Any], f: str, base_dir: Path | None, required: bool) -> Path | None:
    p = raw.get("path")
    if p is None:
        if required:
            raise SpecError(f"{f}.path", "needs the path of the demand file")
        return None
    if not isinstance(p, str) or not p:
        raise SpecError(f"{f}.path", f"must be a file path, got {p!r}")
    path = Path(p)
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _step(raw: Mapping[str, Any], f: str) -> int:
    step = parse_duration(raw.get("step", "5m"), f"{f}.step")
    if step < 1:
        raise SpecError(f"{f}.step", "must be at least 1 second")
    return step


def _number(
    raw: Mapping[str, Any],
    key: str,
    f: str,
    default: float | None,
    low: float | None = None,
    high: float | None = None,
    strict: bool = False,
) -> float:
    if key not in raw:
        if default is None:
            raise SpecError(f"{f}.{key}", "is required")
        return default
    v = raw[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise SpecError(f"{f}.{key}", f"must be a number, got {v!r}")
    if low is not None and (v < low or (strict and v == low)):
        raise SpecError(f"{f}.{key}", f"must be {'>' if strict else '>='} {low:g}, got {v!r}")
    if high is not None and v > high:
        raise SpecError(f"{f}.{key}", f"must be <= {high:g}, got {v!r}")
    return float(v)


def _int(raw: Mapping[str, Any], key: str, f: str, default: int, low: int | None) -> int:
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{f}.{key}", f"must be a whole number, got {v!r}")
    if low is not None and v < low:
        raise SpecError(f"{f}.{key}", f"must be >= {low}, got {v!r}")
    return v


def _no_unknown(raw: Mapping[str, Any], allowed: set[str], f: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SpecError(f"{f}.{unknown[0]}", f"unknown key; valid: {', '.join(sorted(allowed))}")
