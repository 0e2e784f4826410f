"""Dependencies between jobs of one tenant, and pipelines: named groups of stages.

A job may wait for other jobs of its tenant (Slurm's ``--dependency``): each
:class:`Dependency` is one clause, a kind over one or more jobs, and a job's clauses
must all hold. Once every job a clause names has ended the clause is decided for good
(jobs do not come back from an end), so a clause is either met, still waiting, or can
never be met:

==============  ======================================  ==============================
kind            met when                                never met when
==============  ======================================  ==============================
after           every job ended, however                (never)
after_ok        every job completed                     one ended without completing
after_failed    every job ended without completing      one completed
after_any       one of the jobs completed               all ended, none completed
==============  ======================================  ==============================

"Ended without completing" is failed (a non-zero exit, a rejection) or cancelled.
The functions here are pure: the engine (``engine/dependencies.py``) holds a job while
:func:`verdict` says ``waiting`` and acts on ``met`` and ``never``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cotenant.model.errors import NotFound, SpecError


class DependencyKind(StrEnum):
    AFTER = "after"
    AFTER_OK = "after_ok"
    AFTER_FAILED = "after_failed"
    AFTER_ANY = "after_any"


class OnNeverMet(StrEnum):
    """What becomes of a held job whose dependency can no longer be met: it ends
    (``cancel``, cancelled with reason ``dependency-never-met``) or stays pending with
    that reason until its tenant cancels it (``keep``, Slurm's default)."""

    CANCEL = "cancel"
    KEEP = "keep"


@dataclass(frozen=True, slots=True)
class Dependency:
    """One clause. ``take_nodes``: the waiting job is handed the nodes its jobs ran on
    when the clause is met (room reserved ahead: RL starts on the pretraining's nodes),
    where its contract allows (inside its entitlement); see ``engine/dependencies.py``."""

    kind: DependencyKind
    jobs: tuple[str, ...]
    take_nodes: bool = False

    def text(self) -> str:
        return f"{self.kind.value}:{','.join(self.jobs)}" + ("+nodes" if self.take_nodes else "")


class Verdict(StrEnum):
    MET = "met"
    WAITING = "waiting"
    NEVER = "never"


# How a dependency job stands, as its clause reads it.
LIVE, COMPLETED, UNCOMPLETED = "live", "completed", "uncompleted"


def clause_verdict(dep: Dependency, outcome: Callable[[str], str]) -> tuple[Verdict, str]:
    """Whether ``dep`` holds, given each job's ``outcome`` (``LIVE``, ``COMPLETED`` or
    ``UNCOMPLETED``), and the job that decides it (the one waited for, or the one whose
    end rules it out)."""
    outs = [(j, outcome(j)) for j in dep.jobs]
    live = [j for j, o in outs if o == LIVE]
    done = [j for j, o in outs if o == COMPLETED]
    undone = [j for j, o in outs if o == UNCOMPLETED]
    kind = dep.kind
    if kind is DependencyKind.AFTER_ANY:
        if done:
            return Verdict.MET, done[0]
        return (Verdict.WAITING, live[0]) if live else (Verdict.NEVER, undone[0])
    if kind is DependencyKind.AFTER_OK and undone:
        return Verdict.NEVER, undone[0]
    if kind is DependencyKind.AFTER_FAILED and done:
        return Verdict.NEVER, done[0]
    if live:
        return Verdict.WAITING, live[0]
    return Verdict.MET, dep.jobs[-1]


def verdict(deps: Iterable[Dependency], outcome: Callable[[str], str]) -> tuple[Verdict, str, str]:
    """All of a job's clauses together: (verdict, the deciding job, the clause's text).
    One clause never met rules the job out; it waits while any clause waits."""
    waiting: tuple[Verdict, str, str] | None = None
    for dep in deps:
        v, job = clause_verdict(dep, outcome)
        if v is Verdict.NEVER:
            return v, job, dep.text()
        if v is Verdict.WAITING and waiting is None:
            waiting = (v, job, dep.text())
    return waiting if waiting is not None else (Verdict.MET, "", "")


def from_fields(fields: Mapping[str, Any]) -> tuple[Dependency, ...]:
    """The clauses a request gives as lists under ``after``, ``after_ok``, ... (empty
    lists are no clause), in the kinds' order; ``take_nodes`` applies to every clause."""
    out = []
    take = bool(fields.get("take_nodes"))
    for kind in DependencyKind:
        jobs = fields.get(kind.value) or ()
        if jobs:
            out.append(Dependency(kind, tuple(dict.fromkeys(jobs)), take))
    if take and not out:
        raise SpecError(NO_DEPENDENCY[0], NO_DEPENDENCY[1])
    return tuple(out)


NO_DEPENDENCY = ("take_nodes", "waits for no job: give after, after_ok, after_failed or after_any")


def without_empty(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` without empty dependency lists (a request that gives none) and without
    a false ``take_nodes`` (a plain job's fingerprint stays as it was)."""
    kinds = {k.value for k in DependencyKind} | {"take_nodes"}
    return {k: v for k, v in fields.items() if k not in kinds or v}


def check_refs(
    job_id: str,
    tenant: str,
    after: Iterable[Dependency],
    tenant_of: Callable[[str], str | None],
) -> None:
    """Refuse clauses that name no job, the job itself (``SpecError`` naming the clause)
    or a job that is not ``tenant``'s (``tenant_of`` gives a job's tenant, None if there
    is no such job): ``NotFound`` worded as for a job that does not exist, so another
    tenant's jobs are not seen."""
    for dep in after:
        if not dep.jobs:
            raise SpecError(dep.kind.value, "names no job")
        for j in dep.jobs:
            if j == job_id:
                raise SpecError(dep.kind.value, f"job {job_id!r} cannot wait for itself (a cycle)")
            if tenant_of(j) != tenant:
                raise NotFound(f"no job {j!r}")


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in ``graph`` (node -> the nodes it depends on; edges to nodes outside the
    graph are ignored) as ``[a, b, ..., a]``, or None. Iterative, in the graph's order."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for root in graph:
        if state.get(root):
            continue
        path: list[str] = [root]
        todo: list[list[str]] = [[d for d in graph[root] if d in graph]]
        state[root] = 1
        while path:
            if not todo[-1]:
                state[path.pop()] = 2
                todo.pop()
                continue
            nxt = todo[-1].pop(0)
            s = state.get(nxt, 0)
            if s == 1:
                return [*path[path.index(nxt) :], nxt]
            if s == 0:
                state[nxt] = 1
                path.append(nxt)
                todo.append([d for d in graph[nxt] if d in graph])
    return None


def topological(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """The nodes of an acyclic ``graph`` with each after the nodes it depends on (ties in
    the graph's order); raises ``SpecError`` naming a cycle."""
    cycle = find_cycle(graph)
    if cycle is not None:
        raise SpecError("after", f"the dependencies form a cycle: {' -> '.join(cycle)}")
    out: list[str] = []
    placed: set[str] = set()
    remaining = list(graph)
    while remaining:
        rest = []
        for node in remaining:
            if all(d in placed or d not in graph for d in graph[node]):
                out.append(node)
                placed.add(node)
            else:
                rest.append(node)
        remaining = rest
    return out


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A named group of stages of one tenant, submitted in one call: its stages are jobs
    whose ids are listed in submission order (each after those it depends on)."""

    id: str
    tenant: str
    name: str
    stages: tuple[str, ...]
    submit_s: int


def pipeline_state(stages: Iterable[tuple[str, str, bool]]) -> str:
    """A pipeline's state from its stages' (state, reason, started): ``running`` while a
    stage is live and one has started, ``pending`` while stages are live and none has;
    once none is live, ``completed`` if every stage completed, ``cancelled`` if one was
    cancelled by request, else ``failed``."""
    rows = list(stages)
    live = [s for s in rows if s[0] in ("pending", "running", "reclaiming")]
    if live:
        return "running" if any(started for _, _, started in rows) else "pending"
    if all(state == "completed" for state, _, _ in rows):
        return "completed"
    if any(s == "cancelled" and r != "dependency-never-met" for s, r, _ in rows):
        return "cancelled"
    return "failed"
