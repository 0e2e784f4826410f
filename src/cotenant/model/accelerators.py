"""The accelerator catalogue: what a GPU kind is, for placement and for energy."""

from __future__ import annotations

from dataclasses import dataclass

from cotenant.model.errors import SpecError


@dataclass(frozen=True, slots=True)
class AcceleratorKind:
    """One kind of accelerator.

    ``nvlink_domain`` is how many GPUs share one NVLink domain: 8 for an HGX H100
    board, 72 for a GB200 NVL72 rack. Placement treats the domain as the unit a
    small gang should not cross.
    """

    name: str
    memory_gb: int
    busy_watts: int  # board power at full load (TDP)
    idle_watts: int  # documented default idle draw; an assumption, see docs/glossary.md
    nvlink_domain: int
    gpus_per_node: int


# Idle draws are planning assumptions (about 10-15% of TDP for SXM boards at idle).
CATALOGUE: dict[str, AcceleratorKind] = {
    k.name: k
    for k in (
        AcceleratorKind("H100-SXM-80GB", 80, 700, 90, 8, 8),
        AcceleratorKind("H200-SXM-141GB", 141, 700, 90, 8, 8),
        AcceleratorKind("GB200-NVL72", 192, 1200, 150, 72, 4),
        AcceleratorKind("A100-SXM-80GB", 80, 400, 60, 8, 8),
    )
}


def accelerator(name: str, field: str = "accelerator") -> AcceleratorKind:
    """Look up a kind by name; an unknown name lists the valid ones."""
    try:
        return CATALOGUE[name]
    except KeyError:
        valid = ", ".join(sorted(CATALOGUE))
        raise SpecError(field, f"unknown accelerator kind {name!r}; valid: {valid}") from None


def register(kind: AcceleratorKind) -> AcceleratorKind:
    """Add a kind (e.g. a trace's own GPU models). Re-registering the same name must agree."""
    old = CATALOGUE.get(kind.name)
    if old is not None and old != kind:
        raise SpecError("accelerator", f"kind {kind.name!r} already registered differently")
    CATALOGUE[kind.name] = kind
    return kind
