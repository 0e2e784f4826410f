"""Running a study's grid of variants x seeds: serially in this process, or on Dask
(a ``LocalCluster`` of worker processes sized to the machine, or the scheduler at a
given address). Every run is a pure function of its task (the scenario text, the
variant, the seed), so where it runs does not change its numbers; finished runs go to
the cache as they arrive, so a cancelled study keeps them."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cotenant.model.errors import SpecError
from cotenant.whatif.cache import RunCache, run_key
from cotenant.whatif.metrics import metrics_of
from cotenant.whatif.variants import BaseScenario, Variant, build


@dataclass(frozen=True)
class RunTask:
    """One run: a variant of the scenario under one seed."""

    base: BaseScenario
    variant: Variant
    seed: int
    days: float | None = None
    policy: str | None = None

    @property
    def key(self) -> str:
        return run_key(
            self.base.text,
            self.base.base_dir,
            self.variant.canonical(),
            self.seed,
            self.days,
            self.policy,
        )


def run_one(task: RunTask) -> dict[str, Any]:
    """Build and simulate one run; its metrics and its own wall time, from reading the
    scenario to the metrics (what a worker runs)."""
    from cotenant.twin.runtime import simulate

    t0 = time.perf_counter()
    spec = build(task.base, task.variant, task.seed, task.days)
    _, report = simulate(spec.scenario, policy=task.policy, failure_scale=spec.failure_scale)
    return {
        "variant": task.variant.label,
        "seed": task.seed,
        "metrics": metrics_of(report, spec.scenario),
        "wall_s": time.perf_counter() - t0,
        "pid": os.getpid(),  # which process ran it (for the tests and the benchmark)
    }


@dataclass(frozen=True)
class Plan:
    """The grid: every variant under every seed, variant by variant."""

    base: BaseScenario
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    days: float | None = None
    policy: str | None = None

    def tasks(self) -> list[RunTask]:
        return [
            RunTask(self.base, v, s, self.days, self.policy)
            for v in self.variants
            for s in self.seeds
        ]


@dataclass
class Outcome:
    """What a study's execution gave: results by task key, and how they came."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached: int = 0
    ran: int = 0
    cancelled: bool = False
    wall_s: float = 0.0
    workers: int = 1
    startup_s: float = 0.0  # starting the local cluster (or connecting) until it is ready

    @property
    def run_s(self) -> float:
        """The runs' own time, summed over the runs done now (not those from the cache)."""
        return sum(float(r["wall_s"]) for r in self.results.values() if r.get("_ran"))

    @property
    def overhead(self) -> float | None:
        """Wall time x workers over the runs' own time: 1.0 is perfect, 1.1 is 10% lost
        to distribution (start-up, shipping tasks and results, idle workers at the end)."""
        return self.wall_s * self.workers / self.run_s if self.run_s > 0 else None


Progress = Callable[[int, int], None]  # (done, total)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def execute(
    tasks: Sequence[RunTask],
    cache: RunCache,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    serial: bool = False,
    progress: Progress | None = None,
) -> Outcome:
    """Run what the cache does not have. ``serial``: here, one by one; else on Dask (the
    scheduler at ``scheduler``, or a LocalCluster of ``workers`` processes). Ctrl-C
    cancels the runs not finished; the finished ones are in the cache and the outcome."""
    out = Outcome()
    todo: list[RunTask] = []
    seen: set[str] = set()
    for t in tasks:
        k = t.key
        hit = cache.get(k)
        if hit is not None:
            out.results[k] = hit
            out.cached += 1
        elif k not in seen:
            seen.add(k)
            todo.append(t)
    total = len(out.results) + len(todo)

    def tick() -> None:
        if progress is not None:
            progress(len(out.results), total)

    tick()
    t0 = time.perf_counter()
    try:
        if not todo:
            pass
        elif serial:
            for t in todo:
                _keep(out, cache, t.key, run_one(t))
                tick()
        else:
            _on_dask(todo, out, cache, scheduler, workers, tick)
    except KeyboardInterrupt:
        out.cancelled = True
    out.wall_s = time.perf_counter() - t0
    return out


def worker_version() -> str:
    """The cotenant version a worker runs; it loads the twin too, so that the first run's
    time does not include importing it (that is part of starting the cluster)."""
    import cotenant.twin.runtime  # noqa: F401
    from cotenant import __version__

    return __version__


def _check_workers(client: Any, scheduler: str) -> None:
    """Every worker of a remote scheduler can import cotenant, at this version."""
    from cotenant import __version__

    try:
        versions: dict[str, str] = client.run(worker_version)
    except Exception as e:
        raise SpecError(
            "--scheduler",
            f"the workers of {scheduler} cannot run cotenant ({e.__class__.__name__}: {e}); "
            f"install cotenant {__version__} where they run",
        ) from None
    if not versions:
        raise SpecError("--scheduler", f"{scheduler} has no workers")
    for addr, v in sorted(versions.items()):
        if v != __version__:
            raise SpecError(
                "--scheduler", f"worker {addr} runs cotenant {v}; this is {__version__}"
            )


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _keep(out: Outcome, cache: RunCache, key: str, result: dict[str, Any]) -> None:
    cache.put(key, result)
    out.results[key] = {**result, "_ran": True}
    out.ran += 1


def _on_dask(
    todo: list[RunTask],
    out: Outcome,
    cache: RunCache,
    scheduler: str | None,
    workers: int | None,
    tick: Callable[[], None],
) -> None:
    # distributed ships no type hints for these: use it as an untyped module
    try:
        dist: Any = importlib.import_module("distributed")
    except ModuleNotFoundError:
        raise SpecError(
            "dask",
            "Dask's distributed is not installed (a dependency of cotenant): "
            "python3 -m pip install 'distributed>=2024.6' (or run with --serial)",
        ) from None

    t0 = time.perf_counter()
    cluster: Any = None
    if scheduler is None:
        n = workers or default_workers()
        # The worker processes ignore Ctrl-C (a terminal sends it to the whole process
        # group): this process cancels their runs and shuts them down, without a
        # traceback from each. They inherit the ignored signal when they start.
        with _sigint_ignored():
            cluster = dist.LocalCluster(
                n_workers=n,
                threads_per_worker=1,  # the twin is pure Python: one run per process
                processes=True,
                host="127.0.0.1",  # a local cluster listens on loopback only
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            )
        client = dist.Client(cluster)
    else:
        try:
            client = dist.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as e:
            raise SpecError("--scheduler", f"cannot reach {scheduler}: {e}") from None
    try:
        if cluster is None:
            _check_workers(client, scheduler or "")
        else:
            client.run(worker_version)
        out.workers = max(1, len(client.scheduler_info().get("workers", {})))
        out.startup_s = time.perf_counter() - t0
        by_key = {t.key: t for t in todo}
        futures = [client.submit(run_one, t, key=f"whatif-{k}") for k, t in by_key.items()]
        pending = set(futures)
        try:
            for fut in dist.as_completed(futures):
                pending.discard(fut)
                result = fut.result()
                _keep(out, cache, fut.key.removeprefix("whatif-"), result)
                tick()
        except BaseException:
            client.cancel(list(pending))
            raise
    finally:
        if cluster is not None:
            _quiet(client)
        client.close()
        if cluster is not None:
            cluster.close()


def _quiet_logs() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def _quiet(client: Any) -> None:
    """Before our own cluster is stopped: its workers log nothing more. A worker's heartbeat
    cut short by the stop is logged as an error with a traceback, on the user's terminal
    after a Ctrl-C; a run's own error still reaches this process through its future."""
    with contextlib.suppress(Exception):
        client.run(_quiet_logs)


__all__ = ["Outcome", "Plan", "RunTask", "default_workers", "execute", "run_one"]
