"""Synthetic workloads: what a frontier lab submits in a month.

One or more long pretraining runs of tens of thousands of GPUs, a few RL or
fine-tuning runs of 1k-4k GPUs, thousands of experiments of 8-512 GPUs whose
arrivals follow the working day, and (``pipelines`` > 0) training pipelines: a
smaller model taken from pretraining through SFT and RL to evaluation, each stage
starting from the previous stage's checkpoint (``after_ok`` the stage before; see
``PIPELINE_STAGES``). Sizes and durations are drawn from a seeded NumPy generator:
the same seed gives the same workload; the pipelines are drawn after everything
else, so a workload without them is drawn exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from cotenant.model.dependencies import Dependency, DependencyKind
from cotenant.model.errors import SpecError
from cotenant.model.jobs import JobKind, JobSpec
from cotenant.model.time import DAY, HOUR, parse_duration

FIXED_INTERVAL_S = 30 * 60  # a checkpoint every 30 min, whatever the job's size
AUTO = "auto"


@dataclass(frozen=True, slots=True)
class StageShape:
    name: str
    kind: JobKind
    gpus: tuple[int, int]  # drawn as a power of two in this range
    hours: tuple[float, float]  # drawn uniformly
    # Starts on the nodes of the stage before as that one ends (room reserved ahead: it
    # is smaller, and its input checkpoint is already there).
    take_nodes: bool = False


# A pipeline trains a model smaller than the lab's flagship (whose pretraining alone
# fills the month) from scratch to evaluation, so whole pipelines run inside a month.
PIPELINE_STAGES = (
    # Pretraining a model of a few billion parameters (or continuing a larger one's):
    # 2-4k GPUs for 4-8 days, 0.2-0.8M GPU-hours (Llama 3 8B took 1.46M H100-hours).
    StageShape("pretrain", JobKind.TRAINING, (2_048, 4_096), (96.0, 192.0)),
    # Supervised fine-tuning on curated instructions: about 1% of the pretraining's
    # compute, so a few hundred GPUs for 6-16 h.
    StageShape("sft", JobKind.TRAINING, (256, 512), (6.0, 16.0), take_nodes=True),
    # RL (preference and reasoning RL: rollouts and updates) has grown to a large share of
    # post-training: 1-2k GPUs for 1-3 days.
    StageShape("rl", JobKind.TRAINING, (1_024, 2_048), (24.0, 72.0)),
    # Evaluation on the benchmark suites: inference only, 64-128 GPUs for 2-6 h, no
    # checkpoints (it is rerun whole).
    StageShape("eval", JobKind.EXPERIMENT, (64, 128), (2.0, 6.0), take_nodes=True),
)
PIPELINE_SUBMIT_SPAN = 0.35  # submitted in the first 35% of the run, so most end inside it
PIPELINE_PRIORITY = 50  # as the lab's RL runs: below its flagship pretraining (100)


@dataclass(frozen=True, slots=True)
class FrontierLabWorkload:
    tenant: str
    pretraining_runs: int = 1
    pretraining_gpus: tuple[int, int] = (16_384, 32_768)
    pretraining_days: tuple[float, float] = (21.0, 42.0)
    rl_runs: int = 4
    rl_gpus: tuple[int, int] = (1_024, 4_096)
    rl_days: tuple[float, float] = (2.0, 7.0)
    experiments: int = 3_000
    experiment_gpus: tuple[int, int] = (8, 512)
    experiment_median_hours: float = 3.0
    experiment_sigma: float = 1.0
    # None: "auto", the Young/Daly interval for each job's size (``interval_for``)
    checkpoint_interval_s: int | None = FIXED_INTERVAL_S
    pipelines: int = 0  # training pipelines (PIPELINE_STAGES), drawn after the rest
    # PIPELINE_STAGES's GPUs and hours times these (a smaller cluster, a shorter run)
    pipeline_gpus_scale: float = 1.0
    pipeline_time_scale: float = 1.0
    prefix: str = ""
    providers: tuple[str, ...] = ()  # the providers its jobs accept (empty: its tenant's)

    def at_rate_over(self, factor: float) -> FrontierLabWorkload:
        """The same lab over a horizon ``factor`` times as long as its counts are written
        for: as many experiments, RL runs and pipelines per day. Its pretraining runs
        stay as written (a campaign each, submitted three days apart)."""
        return replace(
            self,
            experiments=round(self.experiments * factor),
            rl_runs=round(self.rl_runs * factor),
            pipelines=round(self.pipelines * factor),
        )

    def generate(
        self,
        rng: np.random.Generator,
        start_s: int,
        horizon_s: int,
        interval_for: Callable[[int], int] | None = None,
    ) -> list[JobSpec]:
        """The month's jobs. ``interval_for(gpus)`` gives the checkpoint interval of an
        "auto" workload (from the failure model in force); without it, or with a fixed
        interval, every checkpointing job uses the fixed one."""

        def every(gpus: int) -> int:
            if self.checkpoint_interval_s is not None:
                return self.checkpoint_interval_s
            return interval_for(gpus) if interval_for is not None else FIXED_INTERVAL_S

        jobs: list[JobSpec] = []
        pre = self.prefix or self.tenant
        for i in range(self.pretraining_runs):
            gpus = _pow2_between(rng, *self.pretraining_gpus)
            days = float(rng.uniform(*self.pretraining_days))
            jobs.append(
                JobSpec(
                    id=f"{pre}-pretrain-{i}",
                    tenant=self.tenant,
                    gpus=gpus,
                    duration_s=int(days * DAY),
                    submit_s=start_s + i * 3 * DAY,
                    kind=JobKind.TRAINING,
                    checkpoint_interval_s=every(gpus),
                    priority=100,
                    name=f"pretrain-{i}",
                    providers=self.providers,
                )
            )
        for i in range(self.rl_runs):
            gpus = _pow2_between(rng, *self.rl_gpus)
            days = float(rng.uniform(*self.rl_days))
            at = start_s + int(rng.uniform(0.0, 0.8) * horizon_s)
            jobs.append(
                JobSpec(
                    id=f"{pre}-rl-{i}",
                    tenant=self.tenant,
                    gpus=gpus,
                    duration_s=int(days * DAY),
                    submit_s=at,
                    kind=JobKind.TRAINING,
                    checkpoint_interval_s=every(gpus),
                    priority=50,
                    name=f"rl-{i}",
                    providers=self.providers,
                )
            )
        n = self.experiments
        if n:
            arrivals = _working_day_arrivals(rng, n, start_s, horizon_s)
            lo, hi = self.experiment_gpus
            sizes = 2 ** rng.integers(int(np.log2(lo)), int(np.log2(hi)) + 1, size=n)
            hours = rng.lognormal(np.log(self.experiment_median_hours), self.experiment_sigma, n)
            secs = np.clip((hours * HOUR).astype(np.int64), 300, 5 * DAY)
            for i in range(n):
                d = int(secs[i])
                jobs.append(
                    JobSpec(
                        id=f"{pre}-exp-{i}",
                        tenant=self.tenant,
                        gpus=int(sizes[i]),
                        duration_s=d,
                        submit_s=int(arrivals[i]),
                        kind=JobKind.EXPERIMENT,
                        checkpoint_interval_s=every(int(sizes[i])) if d > HOUR else 0,
                        priority=0,
                        name=f"exp-{i}",
                        providers=self.providers,
                    )
                )
        for i in range(self.pipelines):
            jobs += self._pipeline(rng, i, start_s, horizon_s, every)
        return jobs

    def _pipeline(
        self,
        rng: np.random.Generator,
        i: int,
        start_s: int,
        horizon_s: int,
        every: Callable[[int], int],
    ) -> list[JobSpec]:
        """One pipeline's stages, each ``after_ok`` the one before; ids sort in stage
        order, so stages submitted at one instant are taken after what they wait for."""
        pre = self.prefix or self.tenant
        pid = f"{pre}-pipe-{i}"
        at = start_s + int(rng.uniform(0.0, PIPELINE_SUBMIT_SPAN) * horizon_s)
        out: list[JobSpec] = []
        for k, shape in enumerate(PIPELINE_STAGES):
            lo, hi = (max(1.0, g * self.pipeline_gpus_scale) for g in shape.gpus)
            gpus = _pow2_between(rng, lo, hi)
            secs = max(60, int(rng.uniform(*shape.hours) * HOUR * self.pipeline_time_scale))
            training = shape.kind is JobKind.TRAINING
            out.append(
                JobSpec(
                    id=f"{pid}-{k}-{shape.name}",
                    tenant=self.tenant,
                    gpus=gpus,
                    duration_s=secs,
                    submit_s=at,
                    kind=shape.kind,
                    checkpoint_interval_s=every(gpus) if training else 0,
                    priority=PIPELINE_PRIORITY,
                    name=f"pipe-{i}-{shape.name}",
                    after=(
                        (Dependency(DependencyKind.AFTER_OK, (out[-1].id,), shape.take_nodes),)
                        if out
                        else ()
                    ),
                    pipeline=pid,
                    providers=self.providers,
                )
            )
        return out


def _pow2_between(rng: np.random.Generator, lo: float, hi: float) -> int:
    a, b = int(np.ceil(np.log2(lo))), int(np.floor(np.log2(hi)))
    return int(2 ** rng.integers(a, max(a, b) + 1))  # (no power of two inside: the next)


def _working_day_arrivals(
    rng: np.random.Generator, n: int, start_s: int, horizon_s: int
) -> np.ndarray:
    """Arrival times with twice the rate in working hours (08-20 UTC) as at night."""
    cand = rng.uniform(0, horizon_s, size=n * 3)
    hour = (cand % DAY) / HOUR
    weight = np.where((hour >= 8) & (hour < 20), 1.0, 0.5)
    keep = cand[rng.uniform(size=cand.size) < weight][:n]
    if keep.size < n:
        keep = np.concatenate([keep, rng.uniform(0, horizon_s, size=n - keep.size)])
    return np.sort(start_s + keep.astype(np.int64))


_FIELDS = {
    "kind",
    "pretraining_runs",
    "pretraining_gpus",
    "pretraining_days",
    "rl_runs",
    "rl_gpus",
    "rl_days",
    "experiments",
    "experiment_gpus",
    "experiment_median_hours",
    "experiment_sigma",
    "checkpoint_interval",
    "pipelines",
    "pipeline_gpus_scale",
    "pipeline_time_scale",
    "providers",
}


def parse_workload(tenant: str, raw: Mapping[str, object], field: str) -> FrontierLabWorkload:
    kind = raw.get("kind", "frontier-lab")
    if kind != "frontier-lab":
        raise SpecError(f"{field}.kind", f"unknown workload kind {kind!r}; valid: frontier-lab")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise SpecError(
            f"{field}.{sorted(unknown)[0]}", f"unknown key; valid: {', '.join(sorted(_FIELDS))}"
        )
    kw: dict[str, object] = {}
    for name in ("pretraining_runs", "rl_runs", "experiments", "pipelines"):
        if name in raw:
            kw[name] = _count(raw[name], f"{field}.{name}")
    for name in ("pretraining_gpus", "rl_gpus", "experiment_gpus"):
        if name in raw:
            lo, hi = _pair(raw[name], f"{field}.{name}")
            if lo < 1:
                raise SpecError(f"{field}.{name}", f"GPUs must be >= 1, got {lo}")
            kw[name] = (int(lo), int(hi))
    for name in ("pretraining_days", "rl_days"):
        if name in raw:
            lo, hi = _pair(raw[name], f"{field}.{name}")
            if lo <= 0:
                raise SpecError(f"{field}.{name}", f"days must be > 0, got {lo}")
            kw[name] = (float(lo), float(hi))
    for name in (
        "experiment_median_hours",
        "experiment_sigma",
        "pipeline_gpus_scale",
        "pipeline_time_scale",
    ):
        if name in raw:
            v = raw[name]
            if not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
                raise SpecError(f"{field}.{name}", f"must be a number > 0, got {v!r}")
            kw[name] = float(v)
    if "providers" in raw:
        names = raw["providers"]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise SpecError(
                f"{field}.providers", f"must be a list of provider names, got {names!r}"
            )
        kw["providers"] = tuple(names)
    if raw.get("checkpoint_interval") == AUTO:
        kw["checkpoint_interval_s"] = None
    elif "checkpoint_interval" in raw:
        kw["checkpoint_interval_s"] = parse_duration(
            raw["checkpoint_interval"],  # type: ignore[arg-type]
            f"{field}.checkpoint_interval",
        )
    return FrontierLabWorkload(tenant=tenant, **kw)  # type: ignore[arg-type]


def _count(v: object, field: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise SpecError(field, f"must be a whole number >= 0, got {v!r}")
    return v


def _pair(v: object, field: str) -> tuple[float, float]:
    if (
        not isinstance(v, list | tuple)
        or len(v) != 2
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    ):
        raise SpecError(field, f"must be [low, high], got {v!r}")
    lo, hi = float(v[0]), float(v[1])
    if lo > hi:
        raise SpecError(field, f"low {v[0]} is above high {v[1]}")
    return lo, hi
