"""Trace loaders: real GPU-cluster workloads as JobSpecs for the digital twin.

One entry point, :func:`load_trace`, picks a loader by name from ``LOADERS`` (a
:class:`~cotenant.model.registry.Registry`): an unknown name fails with the list of
valid ones; ``alibaba`` is another name for ``alibaba-2023``. Every loader
takes ``strict``, ``limit``, ``start_s``, ``end_s`` and ``max_gpus`` (see
:class:`~cotenant.traces.base.Collector`) and returns a :class:`Trace`.
Formats and mappings are described in docs/traces.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cotenant.model.errors import SpecError
from cotenant.model.registry import Registry
from cotenant.traces.alibaba2023 import load_alibaba2023
from cotenant.traces.base import RowProblem, Trace, TraceNode
from cotenant.traces.csv_format import load_csv, write_csv
from cotenant.traces.philly import load_philly

Loader = Callable[..., Trace]

LOADERS: Registry[Loader] = Registry("trace kind", "trace.kind")
LOADERS.add("philly", load_philly)
LOADERS.add("alibaba-2023", load_alibaba2023, aliases=("alibaba",))
LOADERS.add("csv", load_csv)


def load_trace(kind: str, path: str | Path, **options: Any) -> Trace:
    """Load a trace by loader name. Unknown names and options raise SpecError
    listing the valid ones, so a typo in a scenario file is not a TypeError."""
    loader = LOADERS.get(kind)
    params = inspect.signature(loader).parameters
    accepted = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise SpecError(
            "trace.options",
            f"unknown option(s) {', '.join(unknown)} for {kind!r}; valid: {', '.join(accepted)}",
        )
    return loader(path, **options)


__all__ = [
    "LOADERS",
    "RowProblem",
    "Trace",
    "TraceNode",
    "load_alibaba2023",
    "load_csv",
    "load_philly",
    "load_trace",
    "write_csv",
]
