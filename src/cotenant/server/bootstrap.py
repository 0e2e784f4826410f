"""Seeding a new store (cluster, tenants, contracts, site energy, clock anchor, keys) and
the write the live service shares with it: a contract version with its audit entry
(keys are made and stored by ``server/keys.py``)."""

from __future__ import annotations

import os
import secrets
import time
from typing import TYPE_CHECKING

from cotenant.audit.chain import canonical_json
from cotenant.cluster.presets import preset
from cotenant.model.contracts import Contract
from cotenant.model.errors import SpecError
from cotenant.model.time import parse_time
from cotenant.server.keys import IssuedKey, Role, make_key, store_key
from cotenant.server.settings import Settings
from cotenant.store import repo
from cotenant.store.mapping import contract_to_dict
from cotenant.store.repo import Store
from cotenant.store.writer import Tx
from cotenant.twin.scenario import load_scenario

if TYPE_CHECKING:
    from cotenant.backends.slurm_clusters import ClusterConf

CLOCK_META = "clock"
ENERGY_META = "site-energy"  # the seeding scenario's [energy] table, as JSON
SEED_META = "seeded-from"  # the scenario that seeded the store ("" for none)
SLURM_CLUSTERS_META = "slurm-clusters"  # each Slurm cluster's node names, as JSON
STORE_ID_META = "store-id"  # marks this store's jobs where others may see them (Slurm)


def store_contract(tx: Tx, by: str, contract: Contract, change: str, now: int) -> None:
    version = repo.add_contract_version(tx, contract, change, now)
    payload = {
        "tenant": contract.tenant,
        "version": version,
        "by": by,
        "contract": contract_to_dict(contract),
    }
    tx.audit(now, f"contract-{change}", payload)


def bootstrap(store: Store, settings: Settings) -> list[IssuedKey]:
    """Seed an empty store: cluster, tenants and contracts (from the scenario, if any), the
    clock anchor, and keys (an operator key; with ``demo`` also an auditor key and one
    tenant-admin key per tenant). A store that holds a cluster already is left alone and
    no key is issued: keys are shown once, when they are made. Asking for a scenario
    other than the one that seeded the store is an error (a store keeps its cluster,
    tenants and contracts; the scenario would be silently ignored)."""
    if store.cluster_spec() is not None:
        check_seed(store, settings)
        return []
    name = settings.seed_scenario
    sc = load_scenario(name) if name is not None else None
    cluster_nodes: dict[str, list[str]] | None = None
    if settings.backend == "slurm" and settings.slurm_clusters:  # one provider per cluster
        from cotenant.backends.slurm_clusters import read_union_spec

        spec, cluster_nodes = read_union_spec(slurm_clusters(settings), os.environ)
    elif settings.backend == "slurm":  # the nodes Slurm has (a scenario gives tenants only)
        from cotenant.backends.slurm import read_cluster_spec

        spec = read_cluster_spec()
    else:
        spec = sc.cluster if sc is not None else preset(settings.cluster, "cluster")
    if settings.start is not None:
        start = parse_time(settings.start, "start")
    elif sc is not None:
        start = sc.start_s
    else:
        start = int(time.time())
    tenants = list(sc.tenants) if sc is not None else []
    anchor = canonical_json({"sim0": start, "wall0": time.time(), "speed": settings.speed})
    keys = [make_key(Role.OPERATOR, None, "operator")]
    if settings.demo:
        keys.append(make_key(Role.AUDITOR, None, "auditor"))
        keys += [make_key(Role.TENANT_ADMIN, t.name, f"{t.name} admin") for t in tenants]

    def op(tx: Tx) -> None:
        repo.put_cluster(tx, spec)
        repo.put_meta(tx, CLOCK_META, anchor)
        repo.put_meta(tx, SEED_META, sc.name if sc is not None else "")
        repo.put_meta(tx, STORE_ID_META, secrets.token_hex(4))
        if cluster_nodes is not None:
            repo.put_meta(tx, SLURM_CLUSTERS_META, canonical_json(cluster_nodes))
        if sc is not None and "energy" in sc.sections:
            repo.put_meta(tx, ENERGY_META, canonical_json(dict(sc.sections["energy"])))
        tx.audit(
            start,
            "cluster-created",
            {
                "cluster": spec.name,
                "gpus": spec.total_gpus,
                "scenario": sc.name if sc is not None else None,
            },
        )
        for t in tenants:
            repo.add_tenant(tx, t.name, t.display_name or t.name, start)
            tx.audit(
                start,
                "tenant-created",
                {"tenant": t.name, "display_name": t.display_name, "by": "bootstrap"},
            )
        for t in tenants:
            if t.contract is not None:
                store_contract(tx, "bootstrap", t.contract, "create", start)
        for key, digest in keys:
            store_key(tx, key, digest, "bootstrap", start)

    store.writer.call(op)
    return [k for k, _ in keys]


def slurm_clusters(settings: Settings) -> list[ClusterConf]:
    """The settings' Slurm clusters, as the backend takes them (imported on demand, like
    every backend)."""
    from cotenant.backends.slurm_clusters import ClusterConf

    return [ClusterConf(c.name, c.slurm_conf, c.cluster) for c in settings.slurm_clusters]


def slurm_comment_prefix(store: Store) -> str:
    """What this store's Slurm jobs' comments begin with: ``cotenant:<store id>:`` (a
    store made before stores had an id: ``cotenant:``)."""
    from cotenant.backends.slurm_cli import COMMENT_PREFIX

    sid = store.meta(STORE_ID_META)
    return f"{COMMENT_PREFIX}{sid}:" if sid else COMMENT_PREFIX


def seeded_from(store: Store) -> str | None:
    """The scenario that seeded the store ("" for none; None for a store made before
    stores remembered it)."""
    return store.meta(SEED_META)


def check_seed(store: Store, settings: Settings) -> None:
    """Refuse a ``scenario`` that is not the one the existing store was seeded from."""
    asked = settings.scenario
    seeded = seeded_from(store)
    if asked is None or seeded is None:
        return
    try:
        same = seeded == asked or seeded == load_scenario(asked).name
    except SpecError:
        same = False
    if not same:
        was = f"scenario {seeded!r}" if seeded else "no scenario"
        raise SpecError(
            "--scenario",
            f"the store {settings.db} was seeded from {was}, not {asked!r}; "
            "give another --db, or --reset to start it afresh",
        )
