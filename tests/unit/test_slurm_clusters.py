"""Several Slurm clusters, the parts that need no Slurm: the union of their specs, each
cluster's part of it, the settings that name them, and what Slurm prints when its
controller is gone (backends/slurm_clusters.py, backends/slurm_cli.py, server/settings.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cotenant.backends.slurm_cli import SlurmError, parse_sinfo_health, parse_squeue
from cotenant.backends.slurm_clusters import sub_topology, union_spec
from cotenant.cluster.topology import ClusterSpec, NodeGroup, Topology
from cotenant.model.errors import SpecError
from cotenant.server.settings import load_settings


def spec(name: str, prefix: str, nodes: int, gpus: int = 8) -> ClusterSpec:
    group = NodeGroup("H100-SXM-80GB", nodes, 8, 8, gpus_per_node=gpus)
    return ClusterSpec(name, (group,), tuple(f"{prefix}{i}" for i in range(1, nodes + 1)))


def test_the_union_keeps_each_cluster_in_its_own_blocks() -> None:
    topo = Topology(union_spec([("alpha", spec("alpha", "a", 2)), ("beta", spec("beta", "b", 3))]))

    assert topo.node_names == ("a1", "a2", "b1", "b2", "b3")
    assert [int(b) for b in topo.node_block] == [0, 0, 1, 1, 1]
    assert topo.total_gpus == 40


def test_shared_node_names_are_refused() -> None:
    with pytest.raises(SpecError, match="shared: \\['n1'\\]") as err:
        union_spec([("alpha", spec("alpha", "n", 2)), ("beta", spec("beta", "n", 1))])
    assert err.value.field == "slurm_clusters"


@pytest.mark.parametrize(
    ("nodes", "names", "gpus"),
    [
        pytest.param(["b2", "b1"], ("b1", "b2"), [4, 4], id="in-topology-order"),
        pytest.param(["a1"], ("a1",), [8], id="one-node"),
    ],
)
def test_a_clusters_part_is_its_own_topology(
    nodes: list[str], names: tuple[str, ...], gpus: list[int]
) -> None:
    union = Topology(union_spec([("a", spec("a", "a", 2)), ("b", spec("b", "b", 2, gpus=4))]))

    part = sub_topology(union, "x", nodes)

    assert part.node_names == names
    assert [int(g) for g in part.node_gpus] == gpus


def test_a_part_with_a_node_the_store_lacks_names_it() -> None:
    union = Topology(union_spec([("a", spec("a", "a", 2))]))
    with pytest.raises(SpecError, match=r"nodes \['z9'\]"):
        sub_topology(union, "x", ["a1", "z9"])


# 22.05's `squeue --json` (and sinfo) with its controller gone: exit 0, no jobs, an error.
CONTROLLER_GONE = """{
  "meta": {"plugin": {"type": "openapi/v0.0.38"}},
  "errors": [{"description": "Failed while looking for jobs", "error_number": -1,
              "error": "Unspecified error", "source": "slurm_load_jobs"}],
  "jobs": [], "nodes": []
}"""


@pytest.mark.parametrize("parse", [parse_squeue, parse_sinfo_health], ids=["squeue", "sinfo"])
def test_an_answer_with_errors_is_not_an_empty_cluster(parse: Callable[[str], object]) -> None:
    with pytest.raises(SlurmError, match="Failed while looking for jobs"):
        parse(CONTROLLER_GONE)


def test_an_answer_without_errors_still_parses() -> None:
    assert parse_squeue('{"errors": [], "jobs": []}') == {}


def clusters_toml(tmp_path: Path, *entries: tuple[str, str]) -> Path:
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=x\n")
    body = "".join(
        f'[[slurm_clusters]]\nname = "{name}"\nslurm_conf = "{path or conf}"\n'
        for name, path in entries
    )
    path = tmp_path / "cotenant.toml"
    path.write_text(body)
    return path


def test_settings_take_several_clusters(tmp_path: Path) -> None:
    cfg = clusters_toml(tmp_path, ("alpha", ""), ("beta", ""))

    s = load_settings(cfg, backend="slurm")

    assert [c.name for c in s.slurm_clusters] == ["alpha", "beta"]
    assert s.controller_timeout_s == 10


@pytest.mark.parametrize(
    ("entries", "backend", "words"),
    [
        pytest.param([("alpha", "")], "sim", "needs backend slurm", id="not-slurm"),
        pytest.param([("a", ""), ("a", "")], "slurm", "names must differ", id="same-name"),
        pytest.param([("a", "/no/such.conf")], "slurm", "no such file", id="no-conf"),
    ],
)
def test_bad_cluster_settings_fail_in_one_line(
    tmp_path: Path, entries: list[tuple[str, str]], backend: str, words: str
) -> None:
    cfg = clusters_toml(tmp_path, *entries)
    with pytest.raises(SpecError, match=words) as err:
        load_settings(cfg, backend=backend)
    assert "\n" not in str(err.value)


def test_an_ended_jobs_gpus_are_read_from_what_it_asked() -> None:
    """Once a job ends squeue has no gres_detail; its request (tres_per_node) remains, so
    a backend adopting it after a restart still knows the GPUs it held."""
    text = """{"errors": [], "jobs": [
      {"job_id": 7, "comment": "cotenant:ab12:j1:2", "job_state": "COMPLETED",
       "exit_code": 0, "start_time": 10, "end_time": 20, "nodes": "b[1-2]",
       "tres_per_node": "gres:gpu:8", "gres_detail": []},
      {"job_id": 8, "comment": "cotenant:zz99:j2:1", "job_state": "RUNNING",
       "nodes": "b1", "tres_per_node": "gres:gpu:4", "gres_detail": ["gpu:4(IDX:0-3)"]}
    ]}"""

    jobs = parse_squeue(text, "cotenant:ab12:")

    assert list(jobs) == [7]  # another store's job is not this server's
    assert (jobs[7].nodes, jobs[7].gpus, jobs[7].asked) == (("b1", "b2"), (), (8, 8))
    assert parse_squeue(text)[8].gpus == (4,)
