"""Providers in the live API (issue 16): a store whose cluster is two providers (as a
server over two Slurm clusters seeds it, here with the simulated backend): where each job
went and why, each provider's free GPUs, each tenant's usage and invoice split per
provider, the split adding up to the totals."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from test_api import LESSEE, OWNER, Api, key_map, settings_for

from cotenant.api.app import create_app
from cotenant.cluster.topology import ClusterSpec
from cotenant.server.bootstrap import bootstrap
from cotenant.store.mapping import cluster_to_json
from cotenant.store.repo import Store
from cotenant.store.tables import CLUSTER


def two_providers(spec: ClusterSpec) -> ClusterSpec:
    """small-16 (16 nodes of 8 GPUs) as two providers of 8 nodes each."""
    [g] = spec.groups
    east, west = replace(g, nodes=8, provider="east"), replace(g, nodes=8, provider="west")
    return replace(spec, groups=(east, west))


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    s = settings_for(tmp_path / "api.db")
    store = Store(s.db)
    keys = bootstrap(store, s)
    spec = store.cluster_spec()
    assert spec is not None
    with store.engine.begin() as conn:
        conn.execute(sa.update(CLUSTER).values(spec=cluster_to_json(two_providers(spec))))
    store.close()
    with TestClient(create_app(s)) as c:
        yield Api(c, key_map(keys))


def test_usage_and_invoices_name_each_provider(api: Api) -> None:
    wide = api.submit(LESSEE, 72, duration_s=36000)  # wider than either provider
    assert api.wait_state(LESSEE, wide["id"], "failed")["reason"] == "too-large"
    jobs = [api.submit(LESSEE, 64, duration_s=36000)["id"] for _ in range(2)]
    for j in jobs:
        api.wait_state(LESSEE, j, "running")
    nodes = [api.get(LESSEE, f"/v1/jobs/{j}").json()["attempts"][0]["nodes"] for j in jobs]
    assert sorted(len(n) for n in nodes) == [8, 8]
    why = sorted(api.get(LESSEE, f"/v1/jobs/{j}").json()["reason_detail"] for j in jobs)
    assert why == [
        "on east: the first provider",
        "on west: east has no room for 64 GPUs (0 of its 64 free to it)",
    ]

    view = api.get(LESSEE, "/v1/cluster").json()["providers"]
    assert [(v["name"], v["total_gpus"], v["free_gpus"], v["healthy_nodes"]) for v in view] == [
        ("east", 64, 0, 8),
        ("west", 64, 0, 8),
    ]

    [u] = api.get(LESSEE, "/v1/usage").json()["tenants"]
    per = {p["provider"]: p for p in u["providers"]}
    assert list(per) == ["east", "west"]
    assert all(p["gpu_seconds"] > 0 for p in per.values())
    for key in ("gpu_seconds", "own_gpu_seconds", "borrowed_gpu_seconds"):
        assert sum(p[key] for p in per.values()) == u[key], (key, u)
    owner = api.get("operator", "/v1/usage", params={"tenant": OWNER}).json()["tenants"][0]
    assert [p["gpu_seconds"] for p in owner["providers"]] == [0, 0]

    inv = api.get(LESSEE, f"/v1/invoices/{LESSEE}/2026-10").json()
    month = {p["provider"]: p["gpu_seconds"] for p in inv["providers"]}
    assert list(month) == ["east", "west"] and all(v > 0 for v in month.values())
    used = inv["usage"]["own_gpu_seconds"] + inv["usage"]["borrowed_gpu_seconds"]
    assert sum(month.values()) == used


def test_a_job_runs_only_on_the_providers_it_names(api: Api) -> None:
    # east is empty and first in order, yet the job names west: it runs on west.
    west = api.submit(LESSEE, 16, duration_s=36000, providers=["west"])
    assert west["providers"] == ["west"]
    ran = api.wait_state(LESSEE, west["id"], "running")
    assert all(on_west(n) for n in ran["attempts"][0]["nodes"]), ran["attempts"]
    assert ran["reason_detail"] == "on west: the job accepts west"
    # east full: a job naming east waits though west has room; one naming both runs.
    filler = api.submit(LESSEE, 64, duration_s=36000, providers=["east"])
    api.wait_state(LESSEE, filler["id"], "running")
    east = api.submit(LESSEE, 8, duration_s=36000, providers=["east"])
    both = api.submit(LESSEE, 8, duration_s=36000, providers=["east", "west"])
    assert on_west(api.wait_state(LESSEE, both["id"], "running")["attempts"][0]["nodes"][0])
    assert api.get(LESSEE, f"/v1/jobs/{east['id']}").json()["state"] == "pending"
    # each job lists the providers it names
    listed = {j["id"]: j["providers"] for j in api.get(LESSEE, "/v1/jobs").json()["items"]}
    assert listed[east["id"]] == ["east"] and listed[both["id"]] == ["east", "west"]


def on_west(node: str) -> bool:
    return int(node.rsplit("-n", 1)[1]) >= 8  # nodes 8-15 (names end in the node's index)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"providers": ["north"]}, "providers[0]", "no provider 'north'; this server has east"),
        ({"providers": ["west", "west"]}, "providers[1]", "'west' appears twice"),
        ({"providers": ["West"]}, "body.providers[0]", "should match pattern"),
        ({"gpus": 72, "providers": ["east", "west"]}, "gpus", "a gang never spans two"),
    ],
)
def test_naming_a_provider_badly_is_one_line_naming_the_field(
    api: Api, body: dict[str, object], field: str, words: str
) -> None:
    r = api.post(LESSEE, "/v1/jobs", {"gpus": 8, "duration_s": 60, **body})
    assert r.status_code in (400, 422), r.text  # a bad value; a malformed one
    text = r.text
    assert field in text and words in text, text
