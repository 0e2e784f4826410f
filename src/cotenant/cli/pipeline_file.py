"""A pipeline file (TOML), checked and read into the body of ``POST /v1/pipelines``.

Apart from ``cli/pipelines.py`` so that ``cotenant --help`` does not load pydantic: only
``pipelines submit`` reads a file. The format is described there.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from cotenant.model.errors import SpecError
from cotenant.model.jobs import Constraint, JobKind
from cotenant.model.spec import (
    Count,
    Duration,
    Flag,
    Integer,
    SpecTable,
    Text,
    one_of,
    problem,
)


def _names(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise problem(f"must be an array of names, got {v!r}")
    return list(v)


Names = Annotated[list[str], BeforeValidator(_names)]


class StageTable(SpecTable):
    name: Text
    gpus: Count
    duration: Duration
    kind: Annotated[str, BeforeValidator(one_of([k.value for k in JobKind], "kind"))] = (
        JobKind.EXPERIMENT.value
    )
    constraint: Annotated[
        str, BeforeValidator(one_of([c.value for c in Constraint], "constraint"))
    ] = Constraint.AUTO.value
    checkpoint_interval: Duration = 0
    priority: Integer = 0
    estimate: Duration | None = None
    accelerator: Text | None = None
    command: Names = Field(default_factory=list)
    after: Names = Field(default_factory=list)
    after_ok: Names = Field(default_factory=list)
    after_failed: Names = Field(default_factory=list)
    after_any: Names = Field(default_factory=list)
    take_nodes: Flag = False
    providers: Names = Field(default_factory=list)  # the clusters it may run on (none: any)


class PipelineFile(SpecTable):
    name: Text
    tenant: Text | None = None
    stages: list[StageTable]


def read_pipeline_file(path: Path) -> dict[str, Any]:
    """The file as the body of ``POST /v1/pipelines``; ``SpecError`` naming the field."""
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError("file", f"not valid TOML: {e}", str(path)) from None
    try:
        f = PipelineFile.read(raw)
    except SpecError as e:
        raise SpecError(e.field, e.problem, str(path)) from None
    if not f.stages:
        raise SpecError("stages", "a pipeline needs at least one stage", str(path))
    body: dict[str, Any] = {"name": f.name, "stages": [_stage(s) for s in f.stages]}
    if f.tenant is not None:
        body["tenant"] = f.tenant
    return body


def _stage(s: StageTable) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": s.name,
        "gpus": s.gpus,
        "duration_s": s.duration,
        "kind": s.kind,
        "constraint": s.constraint,
        "checkpoint_interval_s": s.checkpoint_interval,
        "priority": s.priority,
        "command": s.command,
    }
    if s.estimate is not None:
        out["estimate_s"] = s.estimate
    if s.accelerator is not None:
        out["accelerator"] = s.accelerator
    for key in ("after", "after_ok", "after_failed", "after_any", "take_nodes", "providers"):
        if getattr(s, key):
            out[key] = getattr(s, key)
    return out
