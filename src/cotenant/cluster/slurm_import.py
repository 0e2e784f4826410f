"""A cluster spec from Slurm's own description of its nodes (``scontrol show nodes``).

Pure text in, ``ClusterSpec`` out: the nodes that have GPUs (``Gres=gpu:N`` or
``Gres=gpu:TYPE:N``), grouped by accelerator kind and GPU count, with Slurm's node
names kept in ``node_names`` so that cotenant's node indices map back to the names
``sbatch --nodelist`` takes. Slurm does not say which rack a node sits in, so racks
are cut from the node order (``nodes_per_rack``); nodes without GPUs are left out.
Running ``scontrol`` is the backend's job (``cotenant.backends.slurm.read_cluster_spec``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cotenant.cluster.topology import ClusterSpec, NodeGroup
from cotenant.model.accelerators import CATALOGUE, accelerator
from cotenant.model.errors import SpecError

_FIELD = re.compile(r"(\w[\w/:.]*)=(\S*)")
_GPU = re.compile(r"^gpu(?::(?P<type>[^:(]+))?:(?P<count>\d+)(?:\(.*\))?$")


@dataclass(frozen=True, slots=True)
class SlurmNode:
    name: str
    gpus: int
    gpu_type: str | None
    state: str


def parse_scontrol_nodes(text: str) -> list[SlurmNode]:
    """Every node in ``scontrol show nodes`` output (multi-line or ``--oneliner``)."""
    nodes: list[SlurmNode] = []
    for chunk in re.split(r"(?=\bNodeName=)", text):
        fields = dict(_FIELD.findall(chunk))
        name = fields.get("NodeName")
        if not name:
            continue
        gpus, gpu_type = _gpus(fields.get("Gres", ""), name)
        nodes.append(SlurmNode(name, gpus, gpu_type, fields.get("State", "")))
    return nodes


def _gpus(gres: str, node: str) -> tuple[int, str | None]:
    """GPUs declared in a node's Gres (other resources ignored); one GPU type per node."""
    total, types = 0, set()
    for item in gres.split(","):
        m = _GPU.match(item.strip())
        if m is None:
            continue
        total += int(m["count"])
        types.add(m["type"])
    if len(types) > 1:
        kinds = ", ".join(sorted(str(t) for t in types))
        raise SpecError(
            f"slurm.nodes[{node}].gres",
            f"mixes GPU types ({kinds}); cotenant needs one accelerator kind per node",
        )
    return total, next(iter(types), None)


def cluster_spec_from_scontrol(
    text: str,
    *,
    name: str = "slurm",
    accelerator_kind: str = "H100-SXM-80GB",
    kinds: Mapping[str, str] | None = None,
    nodes_per_rack: int = 8,
    racks_per_block: int = 8,
) -> ClusterSpec:
    """The GPU nodes of ``scontrol show nodes`` as a cluster spec.

    ``accelerator_kind`` is the kind of GPUs declared without a type (``gpu:8``);
    a typed GPU (``gpu:h100:8``) takes its kind from ``kinds`` (gres type to catalogue
    name), else from the catalogue entry whose name starts with the type
    (case-insensitive), else it is an error naming the type.
    """
    accelerator(accelerator_kind, "slurm.accelerator")
    groups: dict[tuple[str, int], list[str]] = {}
    for node in parse_scontrol_nodes(text):
        if node.gpus == 0:
            continue
        kind = _kind(node, accelerator_kind, kinds or {})
        groups.setdefault((kind, node.gpus), []).append(node.name)
    if not groups:
        raise SpecError("slurm.nodes", "no node declares GPUs (Gres=gpu:N) in this output")
    spec = ClusterSpec(
        name,
        tuple(
            NodeGroup(kind, len(names), nodes_per_rack, racks_per_block, gpus_per_node=gpus)
            for (kind, gpus), names in groups.items()
        ),
        node_names=tuple(n for names in groups.values() for n in names),
    )
    spec.validate("scontrol show nodes")
    return spec


def _kind(node: SlurmNode, default: str, kinds: Mapping[str, str]) -> str:
    if node.gpu_type is None:
        return default
    if node.gpu_type in kinds:
        return accelerator(kinds[node.gpu_type], f"slurm.kinds[{node.gpu_type}]").name
    want = node.gpu_type.lower()
    for known in sorted(CATALOGUE):
        if known.lower().startswith(want):
            return known
    valid = ", ".join(sorted(CATALOGUE))
    raise SpecError(
        f"slurm.nodes[{node.name}].gres",
        f"GPU type {node.gpu_type!r} matches no accelerator kind; map it with "
        f"kinds={{{node.gpu_type!r}: KIND}} (kinds: {valid})",
    )
