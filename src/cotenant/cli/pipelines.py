"""``cotenant pipelines submit|list|get|cancel``: pipelines on a running server.

A pipeline file is TOML: a name and its stages, each a job whose ``after_ok`` (``after``,
``after_failed``, ``after_any``) names the stages it waits for, or any job of the tenant
by id::

    name = "llama-70b"
    # tenant = "lab-a"          # operator keys must give it

    [[stages]]
    name = "pretrain"
    gpus = 1024
    duration = "3d"
    checkpoint_interval = "1h"
    command = ["torchrun", "pretrain.py"]

    [[stages]]
    name = "sft"
    gpus = 128
    duration = "8h"
    after_ok = ["pretrain"]
    take_nodes = true           # start on the pretraining's nodes as it ends

The file is checked here before anything is sent: a problem is one line naming the file
and the field (``llm.toml: stages[1].gpus: must be a whole number >= 1, got 0``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BeforeValidator, Field

from cotenant.cli.client import JsonOpt, answer, call, connect, console, print_json, short_when
from cotenant.cli.common import friendly
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
from cotenant.tablefit import Col, fitted_tables

pipelines_app = typer.Typer(
    help="Pipelines (stages that wait for each other) on a running server.", no_args_is_help=True
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
    for key in ("after", "after_ok", "after_failed", "after_any", "take_nodes"):
        if getattr(s, key):
            out[key] = getattr(s, key)
    return out


def _print(pipes: list[dict[str, Any]]) -> None:
    cols = [
        Col("id", number=False, whole=True),
        Col("tenant", number=False),
        Col("name", number=False),
        Col("state", number=False, whole=True),
        Col("stages", number=False),
        Col("submitted", number=False, whole=True),
        Col("makespan"),
    ]
    rows = []
    for p in pipes:
        stages = " > ".join(f"{s['name']}:{s['state']}" for s in p["stages"])
        span = p["makespan_s"]
        rows.append(
            [
                p["id"],
                p["tenant"],
                p["name"],
                p["state"],
                stages,
                short_when(p["submit_s"]),
                "-" if span is None else f"{span / 3600:.1f}h",
            ]
        )
    for t in fitted_tables(console, None, cols, rows):
        console.print(t)


def _print_stages(p: dict[str, Any]) -> None:
    cols = [
        Col("stage", number=False, whole=True),
        Col("job", number=False, whole=True),
        Col("GPUs"),
        Col("state", number=False, whole=True),
        Col("after", number=False),
        Col("started", number=False, whole=True),
        Col("ended", number=False, whole=True),
        Col("reason", number=False),
    ]
    rows = []
    for s in p["stages"]:
        after = " ".join(
            f"{d['kind']}:{','.join(d['jobs'])}" + ("+nodes" if d.get("take_nodes") else "")
            for d in s["after"]
        )
        why = s["reason"] + (f" ({s['reason_detail']})" if s["reason_detail"] else "")
        rows.append(
            [
                s["name"],
                s["job"],
                str(s["gpus"]),
                s["state"],
                after,
                short_when(s["first_start_s"]),
                short_when(s["end_s"]),
                why,
            ]
        )
    for t in fitted_tables(console, None, cols, rows):
        console.print(t)


@pipelines_app.command("submit")
@friendly
def pipelines_submit(
    file: Annotated[Path, typer.Argument(help="the pipeline file (TOML)")],
    tenant: Annotated[str | None, typer.Option(help="tenant (operator keys must give it)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a pipeline file; prints the pipeline's id."""
    body = read_pipeline_file(file)
    if tenant is not None:
        body["tenant"] = tenant
    p = call("POST", "/v1/pipelines", json=body)
    if as_json:
        print_json(p)
    else:
        print(p["id"])


@pipelines_app.command("list")
@friendly
def pipelines_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant (operator)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List pipelines, oldest first, with their stages' states and makespans."""
    params: dict[str, Any] = {"limit": 500}
    if tenant is not None:
        params["tenant"] = tenant
    pipes: list[dict[str, Any]] = []
    with connect() as c:
        while True:
            page = answer(c.get("/v1/pipelines", params=params))
            pipes += page["items"]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
    if as_json:
        print_json(pipes)
    else:
        _print(pipes)


@pipelines_app.command("get")
@friendly
def pipelines_get(pipeline_id: str, as_json: JsonOpt = False) -> None:
    """Show one pipeline and its stages (what each waits for, and why)."""
    p = call("GET", f"/v1/pipelines/{pipeline_id}")
    if as_json:
        print_json(p)
    else:
        _print([p])
        _print_stages(p)


@pipelines_app.command("cancel")
@friendly
def pipelines_cancel(pipeline_id: str, as_json: JsonOpt = False) -> None:
    """Cancel a pipeline: its waiting and running stages."""
    p = call("POST", f"/v1/pipelines/{pipeline_id}/cancel")
    if as_json:
        print_json(p)
    else:
        print(f"{p['id']} {p['state']}")
