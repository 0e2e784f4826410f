"""Several Slurm clusters under one engine, each a provider (issue 16, the live half).

The engine schedules over the union of the clusters' nodes: each cluster's nodes form
their own node group, so their own racks and fabric blocks, in the configured order.
Each cluster keeps its own ``SlurmBackend`` (its own ``SLURM_CONF`` and ``ClusterName``
for every sbatch, squeue, scancel and sacct); this backend hands each operation to the
cluster that owns the nodes and translates node indices both ways. So:

- a job the first cluster cannot hold now is placed where room is: on the second
  (placement prefers the fullest node that holds it and, among equals, the first);
- cancel and checkpoint go to the cluster the job runs on;
- a controller that stops answering for ``controller_timeout_s`` has its nodes reported
  down: the engine requeues their jobs, which run on the other cluster if it has room,
  and come back to the first when it answers again.

A gang never spans clusters: each cluster's node groups name it as their provider, and
placement never crosses providers (``scheduler/placement.py``), so a gang that fits no
single cluster's free room waits until one has room, and one larger than every cluster
is refused at submission. A start whose nodes lay on two clusters all the same would be
refused (``EXIT_NOT_STARTED``, the cause in the run's ``.err``): a broken invariant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cotenant.backends.base import BackendEvent, NodeHealthChanged, StartRequest
from cotenant.backends.local import not_started
from cotenant.backends.slurm import (
    COMMENT_PREFIX,
    Exclusive,
    SlurmBackend,
    SlurmRun,
    read_cluster_spec,
)
from cotenant.cluster.state import Placement
from cotenant.cluster.topology import ClusterSpec, NodeGroup, Topology
from cotenant.model.errors import SpecError


@dataclass(frozen=True, slots=True)
class ClusterConf:
    """One Slurm cluster as a provider: its name in cotenant, its configuration file and
    (checked against the controller) its ``ClusterName``."""

    name: str
    slurm_conf: str
    cluster: str | None = None

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        return {**base, "SLURM_CONF": self.slurm_conf}


def union_spec(parts: Sequence[tuple[str, ClusterSpec]]) -> ClusterSpec:
    """One cluster spec of several (name, spec): their groups in order, so each keeps its
    own racks and blocks, each group naming its cluster as its provider (placement never
    spans providers). Node names must be distinct across clusters."""
    names = [n for _, spec in parts for n in spec.node_names]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpecError("slurm_clusters", f"node names must differ between clusters; shared: {dup}")
    spec = ClusterSpec(
        "+".join(name for name, _ in parts),
        tuple(replace(g, provider=name) for name, spec in parts for g in spec.groups),
        node_names=tuple(names),
    )
    spec.validate("slurm_clusters")
    return spec


def read_union_spec(
    clusters: Sequence[ClusterConf], base: Mapping[str, str]
) -> tuple[ClusterSpec, dict[str, list[str]]]:
    """The union of the clusters' specs (``scontrol show nodes`` on each), and each
    cluster's node names."""
    parts = [(c.name, read_cluster_spec(c.env(base), name=c.name)) for c in clusters]
    return union_spec(parts), {name: list(spec.node_names) for name, spec in parts}


def label_providers(spec: ClusterSpec, cluster_nodes: Mapping[str, Sequence[str]]) -> ClusterSpec:
    """``spec`` with each group naming the cluster its nodes belong to (a store seeded
    before groups named their provider). A spec whose groups name theirs is kept."""
    if all(g.provider for g in spec.groups):
        return spec
    owner = {n: name for name, nodes in cluster_nodes.items() for n in nodes}
    groups: list[NodeGroup] = []
    at = 0
    for i, g in enumerate(spec.groups):
        names = {owner.get(n) for n in spec.node_names[at : at + g.nodes]}
        at += g.nodes
        if len(names) != 1 or None in names:
            raise SpecError(
                f"cluster.groups[{i}]", f"its nodes are not of one Slurm cluster: {names}"
            )
        groups.append(replace(g, provider=names.pop()))
    return replace(spec, groups=tuple(groups))


def sub_topology(topo: Topology, name: str, nodes: Sequence[str]) -> Topology:
    """The part of ``topo`` made of ``nodes`` (in topology order), as its own topology."""
    index = {n: i for i, n in enumerate(topo.node_names)}
    missing = [n for n in nodes if n not in index]
    if missing:
        raise SpecError("slurm_clusters", f"cluster {name}: nodes {missing} are not in the store")
    ordered = sorted(nodes, key=index.__getitem__)
    groups: list[NodeGroup] = []
    for n in ordered:
        i = index[n]
        kind, gpus = topo.kind_of_node(i), int(topo.node_gpus[i])
        last = groups[-1] if groups else None
        if last is not None and (last.accelerator, last.gpus_per_node) == (kind, gpus):
            groups[-1] = replace(last, nodes=last.nodes + 1)
        else:
            groups.append(NodeGroup(kind, 1, gpus_per_node=gpus))
    return Topology(ClusterSpec(name, tuple(groups), node_names=tuple(ordered)))


class SlurmClusters:
    """The Backend operations over several ``SlurmBackend``s, one per cluster."""

    name = "slurm"

    def __init__(
        self,
        topo: Topology,
        state_dir: str | Path,
        clusters: Sequence[ClusterConf],
        cluster_nodes: Mapping[str, Sequence[str]],
        *,
        base_env: Mapping[str, str],
        exclusive: Exclusive = "full-nodes",
        poll_interval_s: int = 1,
        controller_timeout_s: int = 10,
        comment_prefix: str = COMMENT_PREFIX,
        adopt: bool = True,
    ) -> None:
        """``cluster_nodes``: each cluster's node names (as the store recorded them at
        bootstrap, so the server starts even while a controller is away)."""
        if not clusters:
            raise SpecError("slurm_clusters", "name at least one cluster")
        self.topo = topo
        self.state_dir = Path(state_dir).resolve()
        self.clusters = list(clusters)
        self.backends: dict[str, SlurmBackend] = {}
        self._global: dict[str, list[int]] = {}  # cluster -> global index of its local nodes
        owner: dict[int, str] = {}
        index = {n: i for i, n in enumerate(topo.node_names)}
        for c in self.clusters:
            sub = sub_topology(topo, c.name, cluster_nodes.get(c.name, ()))
            self._global[c.name] = [index[n] for n in sub.node_names]
            for g in self._global[c.name]:
                owner[g] = c.name
            self.backends[c.name] = SlurmBackend(
                sub,
                self.state_dir,  # shared: a job's attempts may run on different clusters
                env=c.env(base_env),
                cluster=c.cluster,
                label=c.name,
                exclusive=exclusive,
                poll_interval_s=poll_interval_s,
                controller_timeout_s=controller_timeout_s,
                comment_prefix=comment_prefix,
                adopt=adopt,
            )
        self._owner = owner
        self._local = {g: i for ix in self._global.values() for i, g in enumerate(ix)}
        self._where: dict[str, str] = {}  # job -> the cluster its current run is on
        self._events: list[BackendEvent] = []
        for name, b in self.backends.items():
            for run in b.runs():
                self._where[run.job_id] = name

    # -- the Backend operations ----------------------------------------------------------
    def start(self, req: StartRequest) -> None:
        on = {self._owner[n] for n in req.placement.nodes}
        if len(on) != 1:
            self._refuse(req, f"a gang never spans clusters; placed on {sorted(on)}")
            return
        [name] = on
        old = self._where.get(req.spec.id)
        if old is not None and old != name:
            self.backends[old].stop(req.spec.id, req.start_s)  # an earlier attempt elsewhere
        self._where[req.spec.id] = name
        local = Placement(tuple(self._local[n] for n in req.placement.nodes), req.placement.gpus)
        self.backends[name].start(replace(req, placement=local))

    def checkpoint(self, job_id: str, now: int) -> None:
        name = self._where.get(job_id)
        if name is not None:
            self.backends[name].checkpoint(job_id, now)

    def stop(self, job_id: str, now: int) -> None:
        name = self._where.get(job_id)
        if name is not None:
            self.backends[name].stop(job_id, now)

    def poll(self, now: int) -> list[BackendEvent]:
        events, self._events = self._events, []
        for name, b in self.backends.items():
            for ev in b.poll(now):
                if isinstance(ev, NodeHealthChanged):
                    ev = NodeHealthChanged(self._global[name][ev.node], ev.health, ev.reason)
                events.append(ev)
        return events

    def next_event_time(self) -> int | None:
        if self._events:
            return 0
        times = [t for t in (b.next_event_time() for b in self.backends.values()) if t is not None]
        return min(times) if times else None

    # -- views ---------------------------------------------------------------------------
    def runs(self) -> list[SlurmRun]:
        """The runs cotenant still waits on, on every cluster (node names are global)."""
        return sorted((r for b in self.backends.values() for r in b.runs()), key=lambda r: r.job_id)

    def accounting(self) -> list[tuple[str, SlurmRun]]:
        """Every run submitted, with the cluster it went to, in submission order."""
        out = [(name, r) for name, b in self.backends.items() for r in b.accounting()]
        return sorted(out, key=lambda nr: (nr[1].submit_s, nr[1].submitted_wall))

    def cluster_of(self, job_id: str) -> str | None:
        return self._where.get(job_id)

    def log_paths(self, job_id: str, attempt: int) -> tuple[Path, Path]:
        return next(iter(self.backends.values())).log_paths(job_id, attempt)

    def _refuse(self, req: StartRequest, why: str) -> None:
        self._events.append(not_started(self.state_dir, req, why))
