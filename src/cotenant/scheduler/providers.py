"""Why a placement went to the provider it did, where one topology holds several (the
live server's Slurm clusters under one engine): a reason code and a sentence for the
decision log, as the twin's federation routes carry (``federation/policy.py``).

Providers are tried in the order the topology lists them (those the job accepts, if it
names some), each counted the way placement counts it: the GPUs free on nodes the tenant
may use (healthy, of the job's kind, no rival in the way). Pure: a state and the
tenant's rivals in, the reason out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from cotenant.cluster.state import ClusterState, Placement
from cotenant.model.jobs import JobSpec
from cotenant.scheduler.placement import find_placement
from cotenant.scheduler.snapshot import Rivals, blocked_nodes


class ProviderReason(StrEnum):
    FIRST = "first-provider"  # on the first provider in order
    NO_ROOM_BEFORE = "no-room-before"  # every provider before it had no room for the gang
    BEST_FIT = "best-fit"  # one before it had room too; placement took the tighter fit
    NAMED = "named-by-job"  # the job accepts none of the providers before it


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    provider: str
    reason: ProviderReason
    detail: str


def provider_choice(
    state: ClusterState, rivals: Mapping[str, Rivals], job: JobSpec, placement: Placement
) -> ProviderChoice:
    """Why ``placement`` (not yet applied to ``state``) is on its provider: the providers
    before it in order and, for each, whether it had room for the gang then."""
    topo = state.topo
    units = topo.providers
    chosen = int(units.of_node[placement.nodes[0]])
    name = topo.provider_names[chosen]
    if chosen == 0:
        return ProviderChoice(name, ProviderReason.FIRST, f"on {name}: the first provider")
    eligible = state.usable()
    blocked = blocked_nodes(state, job.tenant, rivals)
    if blocked is not None:
        eligible = eligible & ~blocked
    kind_and_named = topo.job_nodes(job.accelerator, job.providers)
    if kind_and_named is not None:
        eligible = eligible & kind_and_named
    only = topo.provider_nodes(job.providers)
    parts: list[str] = []
    reason = ProviderReason.NO_ROOM_BEFORE
    for q in range(chosen):
        if only is not None and topo.provider_names[q] not in job.providers:
            continue  # not one the job accepts
        s0, s1 = int(units.start[q]), int(units.start[q + 1])
        inside = np.zeros_like(eligible)
        inside[s0:s1] = eligible[s0:s1]
        free = int(state.free[s0:s1][inside[s0:s1]].sum())
        total = int(topo.node_gpus[s0:s1].sum())
        other = topo.provider_names[q]
        if find_placement(topo, state.free, inside, job.gpus, job.constraint) is None:
            parts.append(
                f"{other} has no room for {job.gpus} GPUs ({free} of its {total} free to it)"
            )
        else:
            reason = ProviderReason.BEST_FIT
            parts.append(f"{other} has room too ({free} of {total} free); {name} fits tighter")
    if not parts:
        accepts = ", ".join(job.providers)
        return ProviderChoice(name, ProviderReason.NAMED, f"on {name}: the job accepts {accepts}")
    return ProviderChoice(name, reason, f"on {name}: " + "; ".join(parts))
