"""The admin routes' checks: the allocation's invariants (engine and store agree, no
GPU given twice) and why the server cannot make progress now."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cotenant.cluster.state import Placement
from cotenant.cluster.topology import Topology
from cotenant.model.errors import InvariantBroken
from cotenant.server.runner import Runner
from cotenant.store.mapping import placement_from_row
from cotenant.store.repo import Row, Store


def invariants(
    runner: Runner,
    store: Store,
    topo: Topology,
    unstored_job: Callable[[str], bool],
    pool_topos: Sequence[Topology] = (),
) -> list[str]:
    """Problems with the allocation: GPUs given twice, engine and store disagreeing.
    Holds the engine lock throughout, so both are read at the same step. Jobs for which
    ``unstored_job`` is true are the engine's only: their GPUs count, not their rows."""
    problems: list[str] = []
    writer = store.writer
    if writer.down:
        raise writer.unavailable()
    with runner.lock:
        runner.drain_inbox()
        runner.recorder.flush_all()  # every step's changes committed: the store is at this step
        engine_running: dict[str, Placement] = {}
        held: dict[int, int] = {}
        for eng in runner.engines():  # (the lease's, then each pool's)
            try:
                eng.state.check_invariants()
            except InvariantBroken as e:
                problems.append(f"engine: {e}")
            for run in eng.running():
                p = runner.recorder.global_placement(eng, run.placement)
                if p is None:
                    continue
                if not unstored_job(run.spec.id):
                    engine_running[run.spec.id] = p
                    continue
                _hold(held, p)
        stored = store.running_placements()
    problems += _compare(stored, engine_running, held)
    node_gpus = [int(g) for t in (topo, *pool_topos) for g in t.node_gpus]
    for n, g in sorted(held.items()):
        cap = node_gpus[n]
        if g > cap:
            problems.append(f"node {n} has {g} GPUs allocated but only {cap}")
    if len(stored) != len(engine_running):
        problems.append(f"store has {len(stored)} running jobs, engine {len(engine_running)}")
    return problems


def _hold(held: dict[int, int], p: Placement) -> None:
    for n, g in zip(p.nodes, p.gpus, strict=True):
        held[n] = held.get(n, 0) + g


def _compare(
    stored: list[Row], engine_running: dict[str, Placement], held: dict[int, int]
) -> list[str]:
    """The stored running jobs against the engine's (adding their GPUs to ``held``)."""
    problems: list[str] = []
    for r in stored:
        mine = engine_running.get(r["id"])
        if mine is not None and (r["nodes"], r["node_gpus"]) == (
            _int_list_json(mine.nodes),
            _int_list_json(mine.gpus),
        ):
            p: Placement | None = mine  # the same text as the engine's: no need to parse it
        else:
            p = placement_from_row(r)
        if p is None:
            problems.append(f"store: running job {r['id']} has no placement")
            continue
        _hold(held, p)
        if mine != p:
            problems.append(f"store and engine disagree on job {r['id']}")
    return problems


def _int_list_json(values: tuple[int, ...]) -> str:
    """``canonical_json(list(values))`` for integers (what ``placement_columns`` stores)."""
    return "[" + ",".join(map(str, values)) + "]"


def readiness_problems(runner: Runner, store: Store) -> list[str]:
    """Why the server cannot make progress now (empty: it can)."""
    problems: list[str] = []
    if not runner.alive():
        problems.append(runner.error or "the engine is not running")
    writer = store.writer
    if writer.down:
        problems.append(
            f"the store cannot take writes ({writer.health.last_error}) for "
            f"{writer.health.down_for_s():.0f} s"
        )
    return problems
