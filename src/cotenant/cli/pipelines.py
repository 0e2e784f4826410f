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

from pathlib import Path
from typing import Annotated, Any

import typer

from cotenant.cli.client import JsonOpt, answer, call, connect, console, print_json, short_when
from cotenant.cli.common import friendly
from cotenant.tablefit import Col, fitted_tables

pipelines_app = typer.Typer(
    help="Pipelines (stages that wait for each other) on a running server.", no_args_is_help=True
)


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
    from cotenant.cli.pipeline_file import read_pipeline_file

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
