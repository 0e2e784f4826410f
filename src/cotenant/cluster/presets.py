"""Built-in clusters, chosen by name; an unknown name lists the valid ones."""

from __future__ import annotations

from collections.abc import Callable

from cotenant.cluster.topology import ClusterSpec, NodeGroup
from cotenant.model.errors import SpecError

PRESETS: dict[str, Callable[[], ClusterSpec]] = {
    # Colossus 1 class: 100,000 H100 in 12,500 HGX nodes, 8 per rack, 8 racks per block.
    "colossus-1": lambda: ClusterSpec("colossus-1", (NodeGroup("H100-SXM-80GB", 12_500, 8, 8),)),
    # Colossus after expansion: about 200,000 H100/H200.
    "colossus-2x": lambda: ClusterSpec(
        "colossus-2x",
        (NodeGroup("H100-SXM-80GB", 12_500, 8, 8), NodeGroup("H200-SXM-141GB", 12_500, 8, 8)),
    ),
    # The next site, for what-if planning: 1,000,000 GB200 GPUs in NVL72 racks. Each rack
    # is one NVLink domain of 18 trays (nodes) of 4 GPUs; 8 racks (576 GPUs, a GB200
    # SuperPOD scalable unit) to a fabric block. 250,000 trays fill 13,888 racks and 16
    # trays of a last one (1,000,000 GPUs exactly). Not to be confused with colossus-2x.
    "colossus-2": lambda: ClusterSpec("colossus-2", (NodeGroup("GB200-NVL72", 250_000, 18, 8),)),
    # One GB200 NVL72 pod per rack: 18 nodes of 4 GPUs share one NVLink domain.
    "nvl72-64": lambda: ClusterSpec("nvl72-64", (NodeGroup("GB200-NVL72", 64 * 18, 18, 8),)),
    # A small cluster for tests and demos: 16 nodes of 8 H100.
    "small-16": lambda: ClusterSpec("small-16", (NodeGroup("H100-SXM-80GB", 16, 4, 2),)),
}


def preset(name: str, field: str = "cluster.preset") -> ClusterSpec:
    try:
        return PRESETS[name]()
    except KeyError:
        raise SpecError(
            field, f"unknown preset {name!r}; valid: {', '.join(sorted(PRESETS))}"
        ) from None
