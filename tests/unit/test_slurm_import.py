"""cluster_spec_from_scontrol: Slurm's node listing becomes a cluster spec with Slurm's names.

The first sample is what `scontrol show nodes` printed for the test harness's 3-node
cluster (Debian's Slurm 22.05); the others are cut down to the fields that matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from cotenant.cluster.slurm_import import cluster_spec_from_scontrol, parse_scontrol_nodes
from cotenant.cluster.topology import NodeGroup, Topology
from cotenant.model.errors import SpecError

HARNESS = """\
NodeName=node1 Arch=x86_64 CoresPerSocket=1
   CPUAlloc=0 CPUEfctv=8 CPUTot=8 CPULoad=1.93
   AvailableFeatures=(null)
   ActiveFeatures=(null)
   Gres=gpu:8
   NodeAddr=127.0.0.1 NodeHostName=vm Port=43511 Version=22.05.8
   OS=Linux 6.18.44-fc-v657 #1 SMP PREEMPT_DYNAMIC @0
   RealMemory=16000 AllocMem=0 FreeMem=23114 Sockets=8 Boards=1
   State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A
   Partitions=gpu
   CfgTRES=cpu=8,mem=16000M,billing=8

NodeName=node2 Arch=x86_64 CoresPerSocket=1
   Gres=gpu:8
   State=IDLE+DRAIN ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A
   Reason=maint [root@2026-11-22T07:33:45]

NodeName=node3 Arch=x86_64 CoresPerSocket=1
   Gres=gpu:8
   State=DOWN ThreadsPerCore=1
"""


def node(name: str, gres: str, state: str = "IDLE") -> str:
    """One node of `scontrol show nodes --oneliner`."""
    return f"NodeName={name} Arch=x86_64 CPUTot=64 Gres={gres} State={state} Partitions=gpu\n"


@dataclass(frozen=True)
class Case:
    text: str
    groups: tuple[NodeGroup, ...]
    names: tuple[str, ...]
    kinds: dict[str, str] | None = None


CASES = [
    pytest.param(
        Case(HARNESS, (NodeGroup("H100-SXM-80GB", 3, 8, 8, 8),), ("node1", "node2", "node3")),
        id="harness-three-untyped-nodes",
    ),
    pytest.param(
        Case(
            node("a1", "gpu:h100:8(S:0-1)") + node("cpu1", "(null)") + node("a2", "gpu:h100:8"),
            (NodeGroup("H100-SXM-80GB", 2, 8, 8, 8),),
            ("a1", "a2"),
        ),
        id="typed-gpus-and-a-cpu-node-left-out",
    ),
    pytest.param(
        Case(
            node("h1", "gpu:h100:8") + node("g1", "gpu:gb:4") + node("h2", "gpu:h100:8"),
            (NodeGroup("H100-SXM-80GB", 2, 8, 8, 8), NodeGroup("GB200-NVL72", 1, 8, 8, 4)),
            ("h1", "h2", "g1"),
            kinds={"gb": "GB200-NVL72"},
        ),
        id="two-kinds-grouped-names-follow-groups",
    ),
    pytest.param(
        Case(
            node("n1", "gpu:8,shard:16") + node("n2", "gpu:4"),
            (NodeGroup("H100-SXM-80GB", 1, 8, 8, 8), NodeGroup("H100-SXM-80GB", 1, 8, 8, 4)),
            ("n1", "n2"),
        ),
        id="other-gres-ignored-counts-split-groups",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_spec_from_scontrol(case: Case) -> None:
    spec = cluster_spec_from_scontrol(case.text, kinds=case.kinds)

    assert spec.groups == case.groups
    assert spec.node_names == case.names
    topo = Topology(spec)
    assert topo.node_names == case.names
    assert [int(g) for g in topo.node_gpus] == [
        g.node_gpus for g in case.groups for _ in range(g.nodes)
    ]


def test_states_are_read_but_do_not_change_the_spec() -> None:
    states = {n.name: n.state for n in parse_scontrol_nodes(HARNESS)}

    assert states == {"node1": "IDLE", "node2": "IDLE+DRAIN", "node3": "DOWN"}


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        pytest.param(node("c1", "(null)"), "slurm.nodes", "no node declares GPUs", id="no-gpus"),
        pytest.param(
            node("x1", "gpu:mi300:8"),
            "slurm.nodes[x1].gres",
            "'mi300' matches no",
            id="unknown-type",
        ),
        pytest.param(
            node("m1", "gpu:h100:4,gpu:a100:4"),
            "slurm.nodes[m1].gres",
            "mixes GPU types",
            id="mixed-types-on-a-node",
        ),
    ],
)
def test_errors_name_the_node_and_the_fix(text: str, field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        cluster_spec_from_scontrol(text)

    assert err.value.field == field
    assert words in err.value.problem
