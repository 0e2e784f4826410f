"""CLI commands that talk to a running server over HTTP: ``cotenant jobs ...``,
``cotenant usage``, ``cotenant cluster``, and ``cotenant audit verify|export``.

The server is ``$COTENANT_URL`` (default http://127.0.0.1:8080) and the key
``$COTENANT_API_KEY``; either may instead come from the client config file
(``$COTENANT_CLIENT_CONFIG``, default ``~/.config/cotenant/client.toml``):

    url = "http://control-plane:8080"
    api_key = "ctk_..."

Errors print one line (the server's message names the field) and exit with 2; a
failed audit verification exits with 1.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cotenant.cli.common import fail, friendly
from cotenant.model.time import parse_duration
from cotenant.tablefit import Col, fitted_tables, print_fitted

if TYPE_CHECKING:
    import httpx

console = Console(width=None if sys.stdout.isatty() else 160)
DEFAULT_URL = "http://127.0.0.1:8080"


# -- the connection --------------------------------------------------------------------------
def client_config() -> dict[str, Any]:
    path = Path(
        os.environ.get("COTENANT_CLIENT_CONFIG", "~/.config/cotenant/client.toml")
    ).expanduser()
    if not path.exists():
        return {}
    import tomllib

    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        fail(f"{path}: {e}")
    return raw


def connect() -> httpx.Client:
    import httpx

    cfg = client_config()
    url = os.environ.get("COTENANT_URL") or cfg.get("url") or DEFAULT_URL
    key = os.environ.get("COTENANT_API_KEY") or cfg.get("api_key")
    if not key:
        fail("no API key: set COTENANT_API_KEY or api_key in the client config file")
    return httpx.Client(base_url=str(url), headers={"Authorization": f"Bearer {key}"}, timeout=30.0)


def call(method: str, path: str, **kw: Any) -> Any:
    with connect() as c:
        r = c.request(method, path, **kw)
    return answer(r)


def answer(r: httpx.Response) -> Any:
    if r.status_code >= 400:
        try:
            msg = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            msg = r.text.strip() or r.reason_phrase
        if r.status_code == 401:
            msg += " (check COTENANT_API_KEY)"
        fail(f"{msg} (HTTP {r.status_code})")
    return r.json()


def when(t: int | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


# -- jobs ------------------------------------------------------------------------------------
jobs_app = typer.Typer(help="Submit and follow jobs on a running server.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
WideOpt = Annotated[bool, typer.Option("--wide", help="every column, whatever the width")]


WIDE_AT = 150  # columns from which the job table shows every column without --wide


def _nodes(j: dict[str, Any]) -> str:
    p = j.get("placement")
    if not p:
        return ""
    return ", ".join(p["nodes"][:3]) + (f" +{len(p['nodes']) - 3}" if len(p["nodes"]) > 3 else "")


def _exit(j: dict[str, Any]) -> str:
    if j.get("signal"):
        return str(j["signal"])
    return "" if j.get("exit_code") is None else str(j["exit_code"])


def _job_tables(jobs: list[dict[str, Any]]) -> list[Table]:
    """Jobs as tables that fit the console: ids, numbers, states and times are never
    wrapped or cut; names and reasons fold; too wide, the columns are stacked in several
    tables, each starting with the id. Narrower than WIDE_AT columns (and without --wide)
    it leaves out the submission time and the nodes and writes times as MM-DD HH:MM."""
    return fitted_tables(console, None, *_job_columns(jobs, console.width >= WIDE_AT))


def _job_columns(jobs: list[dict[str, Any]], wide: bool) -> tuple[list[Col], list[list[str]]]:
    cols = [
        Col("id", number=False, whole=True),
        Col("tenant", number=False),
        Col("name", number=False),
        Col("GPUs"),
        Col("state", number=False, whole=True),
        Col("reason", number=False),
    ]
    if wide:
        cols.append(Col("submitted", number=False, whole=True))
    cols += [
        Col("started", number=False, whole=True),
        Col("ended", number=False, whole=True),
        Col("exit"),
    ]
    if wide:
        cols.append(Col("nodes", number=False))
    stamp = when if wide else short_when
    rows = []
    for j in jobs:
        cells = [j["id"], j["tenant"], j["name"], str(j["gpus"]), j["state"], j["reason"]]
        if wide:
            cells.append(when(j["submit_s"]))
        cells += [stamp(j["first_start_s"]), stamp(j.get("ended_at")), _exit(j)]
        if wide:
            cells.append(_nodes(j))
        rows.append(cells)
    return cols, rows


def _print_jobs(jobs: list[dict[str, Any]], wide: bool) -> None:
    """--wide: one table with every column, as wide as it needs (lines may be longer than
    the terminal: pipe it to ``less -S``)."""
    if wide:
        (t,) = fitted_tables(console, None, *_job_columns(jobs, True), split=False)
        console.print(t, width=10_000, crop=False)
        return
    for t in _job_tables(jobs):
        console.print(t)


def short_when(t: int | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M")


def _attempt_table(job: dict[str, Any]) -> Table:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"attempts of {job['id']}")
    fixed = {"no_wrap": True, "overflow": "ignore"}
    t.add_column("#", justify="right", **fixed)  # type: ignore[arg-type]
    t.add_column("started", **fixed)  # type: ignore[arg-type]
    t.add_column("ended", **fixed)  # type: ignore[arg-type]
    t.add_column("outcome", **fixed)  # type: ignore[arg-type]
    t.add_column("exit", justify="right", **fixed)  # type: ignore[arg-type]
    t.add_column("nodes", overflow="fold")
    t.add_column("detail", overflow="fold")
    for a in job.get("attempts", []):
        t.add_row(
            str(a["attempt"]),
            when(a["start_s"]),
            when(a["end_s"]),
            a["outcome"] or "running",
            a["signal"] or ("" if a["exit_code"] is None else str(a["exit_code"])),
            ", ".join(a["nodes"]),
            a["detail"],
        )
    return t


@jobs_app.command("submit")
@friendly
def jobs_submit(
    gpus: Annotated[int, typer.Option(help="GPUs in the gang")],
    duration: Annotated[str, typer.Option(help="work at full size: 90m, 12h, 3d, or seconds")],
    name: Annotated[str, typer.Option(help="a name for people")] = "",
    tenant: Annotated[str | None, typer.Option(help="tenant (operator keys must give it)")] = None,
    kind: Annotated[str, typer.Option(help="training, experiment or service")] = "experiment",
    constraint: Annotated[str, typer.Option(help="auto, node, rack, block or any")] = "auto",
    priority: Annotated[int, typer.Option(help="within the tenant; higher first")] = 0,
    checkpoint_interval: Annotated[
        str | None, typer.Option(help="how often it checkpoints (e.g. 1h)")
    ] = None,
    estimate: Annotated[str | None, typer.Option(help="runtime estimate for backfill")] = None,
    accelerator: Annotated[str | None, typer.Option(help="accelerator kind")] = None,
    provider: Annotated[
        list[str] | None, typer.Option(help="a cluster it may run on (repeatable; none: any)")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="retrying with the same key never submits twice")
    ] = None,
    after: Annotated[
        list[str] | None, typer.Option(help="start once this job ended, however (repeatable)")
    ] = None,
    after_ok: Annotated[
        list[str] | None, typer.Option(help="start once this job completed (repeatable)")
    ] = None,
    after_failed: Annotated[
        list[str] | None,
        typer.Option(help="start once this job ended without completing (repeatable)"),
    ] = None,
    after_any: Annotated[
        list[str] | None,
        typer.Option(help="start once any one of these jobs completed (repeatable)"),
    ] = None,
    take_nodes: Annotated[
        bool,
        typer.Option(
            "--take-nodes",
            help="start on the nodes the jobs it waits for ran on (inside entitlement)",
        ),
    ] = False,
    command: Annotated[list[str] | None, typer.Argument(help="the command to run")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a job; prints its id. --after-ok ID (and --after, --after-failed,
    --after-any) hold it until jobs of the same tenant end so."""
    body: dict[str, Any] = {
        "gpus": gpus,
        "duration_s": parse_duration(duration, "--duration"),
        "name": name,
        "kind": kind,
        "constraint": constraint,
        "priority": priority,
        "command": list(command or []),
    }
    given = {  # sent only when given (a plain job's request stays as it was)
        "tenant": tenant,
        "checkpoint_interval_s": None
        if checkpoint_interval is None
        else parse_duration(checkpoint_interval, "--checkpoint-interval"),
        "estimate_s": None if estimate is None else parse_duration(estimate, "--estimate"),
        "accelerator": accelerator,
        "providers": provider,
        "after": after,
        "after_ok": after_ok,
        "after_failed": after_failed,
        "after_any": after_any,
        "take_nodes": take_nodes or None,
    }
    body.update({k: v for k, v in given.items() if v is not None and v != []})
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    job = call("POST", "/v1/jobs", json=body, headers=headers)
    if as_json:
        print_json(job)
    else:
        print(job["id"])


@jobs_app.command("list")
@friendly
def jobs_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant (operator)")] = None,
    state: Annotated[list[str] | None, typer.Option(help="only these states (repeatable)")] = None,
    limit: Annotated[int, typer.Option(help="jobs per page")] = 100,
    all_pages: Annotated[bool, typer.Option("--all", help="follow every page")] = False,
    name: Annotated[str | None, typer.Option(help="only jobs with this name")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", "-S", help="only jobs not ended before this time (ISO or Unix s)"),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", "-E", help="only jobs submitted by this time (ISO or Unix s)"),
    ] = None,
    wide: WideOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, oldest first (--since/--until: those in the system in that window, like
    sacct -S/-E)."""
    from cotenant.model.time import parse_time

    params: dict[str, Any] = {"limit": limit}
    if tenant is not None:
        params["tenant"] = tenant
    if state:
        params["state"] = state
    if name is not None:
        params["name"] = name
    if since is not None:
        params["since_s"] = parse_time(since, "--since")
    if until is not None:
        params["until_s"] = parse_time(until, "--until")
    jobs: list[dict[str, Any]] = []
    with connect() as c:
        while True:
            page = answer(c.get("/v1/jobs", params=params))
            jobs += page["items"]
            if not all_pages or page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
    if as_json:
        print_json(jobs)
    else:
        _print_jobs(jobs, wide)


@jobs_app.command("get")
@friendly
def jobs_get(job_id: str, wide: WideOpt = False, as_json: JsonOpt = False) -> None:
    """Show one job and its attempts."""
    job = call("GET", f"/v1/jobs/{job_id}")
    if as_json:
        print_json(job)
    else:
        _print_jobs([job], wide)
        if job.get("attempts"):
            console.print(_attempt_table(job))


@jobs_app.command("logs")
@friendly
def jobs_logs(
    job_id: str,
    attempt: Annotated[
        int | None, typer.Option(min=1, help="which attempt (default: the latest)")
    ] = None,
    err: Annotated[bool, typer.Option("--err", help="standard error, not output")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing until the run ends")
    ] = False,
) -> None:
    """Print a job's output (local and Slurm backends), as it runs or after it ended."""
    import httpx

    params: dict[str, Any] = {"stream": "err" if err else "out", "follow": follow}
    if attempt is not None:
        params["attempt"] = attempt
    timeout = httpx.Timeout(30.0, read=None if follow else 30.0)
    try:
        with (
            connect() as c,
            c.stream("GET", f"/v1/jobs/{job_id}/logs", params=params, timeout=timeout) as r,
        ):
            if r.status_code >= 400:
                r.read()
                answer(r)
            for chunk in r.iter_bytes():
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@jobs_app.command("cancel")
@friendly
def jobs_cancel(job_id: str, as_json: JsonOpt = False) -> None:
    """Cancel a pending or running job."""
    job = call("POST", f"/v1/jobs/{job_id}/cancel")
    if as_json:
        print_json(job)
    else:
        print(f"{job['id']}: {job['state']}")


@jobs_app.command("why")
@friendly
def jobs_why(job_id: str, as_json: JsonOpt = False) -> None:
    """Why a job is pending; where a running job runs, since when; how an ended one ended."""
    w = call("GET", f"/v1/jobs/{job_id}/why")
    if as_json:
        print_json(w)
    else:
        print(why_line(w))


def why_line(w: dict[str, Any]) -> str:
    """One line: the state, then the reason (pending), the place and start (running), or
    the end and how (ended)."""
    state, detail = w["state"], w["detail"]
    where = f"on {', '.join(w['nodes'])}" if w.get("nodes") else ""
    if state in ("running", "reclaiming"):
        out = f"{state} {where} since {when(w['since_s'])}, attempt {w['attempt']}"
        if state == "reclaiming":
            out += f" ({w['reason']}{': ' + detail if detail else ''})"
        return f"{w['job']}: {out}"
    if state in ("completed", "failed", "cancelled"):
        how = [x for x in (w["reason"], detail) if x and x != state]
        if w.get("attempt"):
            how.append(f"attempt {w['attempt']}" + (f" {where}" if where else ""))
        return f"{w['job']}: {state} at {when(w['since_s'])}" + (
            f": {'; '.join(how)}" if how else ""
        )
    out = f"{w['job']}: {state}, {w['reason']}" + (f" ({detail})" if detail else "")
    if w.get("outcome"):  # it ran before: how its last run ended
        out += f"; last run (attempt {w['attempt']}) {w['outcome']}"
    return out


# -- usage, cluster -----------------------------------------------------------------------------
@friendly
def usage_command(
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    as_json: JsonOpt = False,
) -> None:
    """GPU-hours used per tenant, per cluster and per pool (a tenant key: its own).

    A row per provider where the cluster is several (Slurm clusters)
    or has pools (each at its own price)."""
    params = {"tenant": tenant} if tenant else {}
    u = call("GET", "/v1/usage", params=params)
    if as_json:
        print_json(u)
        return
    pools = any(x.get("pools") for x in u["tenants"])
    split = pools or any(x.get("providers") for x in u["tenants"])
    cols = [Col("tenant", number=False, whole=True)]
    cols += [Col("provider", number=False, whole=True)] if split else []
    cols += [Col(c) for c in ("GPU-hours", "own GPU-hours", "borrowed GPU-hours")]
    cols += [Col("pool cost")] if pools else []

    def hours(x: dict[str, Any]) -> list[str]:
        keys = ("gpu_seconds", "own_gpu_seconds", "borrowed_gpu_seconds")
        return [f"{x[k] / 3600:,.2f}" for k in keys]

    rows = []
    lease = ["all" if not pools else "lease"] if split else []
    for x in u["tenants"]:
        rows.append([x["tenant"], *lease, *hours(x), *([""] if pools else [])])
        rows += [
            [x["tenant"], p["provider"], *hours(p), *([""] if pools else [])]
            for p in x.get("providers", [])
        ]
        rows += [
            [x["tenant"], f"{p['provider']} (pool)", f"{p['gpu_hours']:,.2f}", "", "", p["cost"]]
            for p in x.get("pools", [])
        ]
    print_fitted(console, None, cols, rows)


@friendly
def cluster_command(as_json: JsonOpt = False) -> None:
    """The cluster: capacity, free GPUs, and allocations (a tenant key: its own)."""
    v = call("GET", "/v1/cluster")
    if as_json:
        print_json(v)
        return
    console.print(
        f"{v['name']}: {v['total_gpus']:,} GPUs, {v['free_gpus']:,} free; "
        f"{v['healthy_nodes']:,}/{v['nodes']:,} nodes healthy; time {when(v['time_s'])}"
        + (f"; {v['queue_depth']:,} jobs queued" if v["queue_depth"] is not None else ""),
        highlight=False,
    )
    for pv in v.get("providers", []):
        console.print(
            f"  {pv['name']}: {pv['total_gpus']:,} GPUs, {pv['free_gpus']:,} free; "
            f"{pv['healthy_nodes']:,}/{pv['nodes']:,} nodes healthy",
            highlight=False,
        )
    cols = [Col("tenant", number=False, whole=True)]
    cols += [Col(c) for c in ("entitled", "allocated", "owned", "borrowed", "running", "pending")]
    rows = [
        [
            a["tenant"],
            f"{a['entitled_gpus']:,}",
            f"{a['allocated_gpus']:,}",
            f"{a['owned_gpus']:,}",
            f"{a['borrowed_gpus']:,}",
            f"{a['running_jobs']:,}",
            f"{a['pending_jobs']:,}",
        ]
        for a in v["tenants"]
    ]
    print_fitted(console, None, cols, rows)


# -- audit --------------------------------------------------------------------------------------
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


@audit_app.command("verify")
@friendly
def audit_verify(
    db: Annotated[
        str | None,
        typer.Option(help="verify the store at this database URL (default: serve's default)"),
    ] = None,
    file: Annotated[Path | None, typer.Option(help="verify an export (JSON lines)")] = None,
    head: Annotated[
        str | None, typer.Option(help="the head SEQ:HASH the chain must end on")
    ] = None,
    full: Annotated[
        bool, typer.Option(help="with --db: every entry, not only those after the last verified")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check the chain: any edited, inserted, deleted or reordered entry is named. Exit 1 if bad.

    With neither --db nor --file it checks the store ``cotenant serve`` uses by default
    (./cotenant.db)."""
    from cotenant.audit.chain import Head, verify_file

    if db is not None and file is not None:
        fail("give one of --db URL or --file EXPORT.jsonl, not both")
    expected = None
    if head is not None:
        try:
            expected = Head.parse(head)
        except ValueError as e:
            fail(f"--head: {e}")
    if file is not None:
        verdict = verify_file(file, expected)
    else:
        from cotenant.server.settings import DEFAULT_DB
        from cotenant.store.repo import Store

        url = db or DEFAULT_DB
        require_store(url, given=db is not None)
        store = Store(url, read_only=True)
        try:
            verdict = store.verify_audit(full=full, head=expected)
        finally:
            store.close()
    if as_json:
        print_json(
            {
                "ok": verdict.ok,
                "entries": verdict.entries,
                "head": str(verdict.head),
                "first_bad_seq": verdict.first_bad_seq,
                "problem": verdict.problem,
            }
        )
        if not verdict.ok:
            raise typer.Exit(1)
    elif verdict.ok:
        console.print(str(verdict), highlight=False)
    else:
        fail(str(verdict), code=1)


def require_store(url: str, given: bool) -> None:
    """A SQLite store that does not exist is an error (opening it would create it)."""
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        fail(f"--db: cannot read {url!r} as a database URL")
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or path in (None, "", ":memory:"):
        return
    if not Path(path).is_file():
        where = "" if given else " (the default store of cotenant serve)"
        fail(f"--db: no store at {path}{where}; give --db URL or --file EXPORT.jsonl")


@audit_app.command("export")
@friendly
def audit_export(
    out: Annotated[
        Path | None, typer.Option(help="write the JSON lines here (default: standard output)")
    ] = None,
    after_seq: Annotated[int, typer.Option(min=0, help="only entries after this seq")] = 0,
) -> None:
    """Download the audit log (operator, auditor) as JSON lines; the head goes to stderr
    when the lines go to standard output."""
    if out is not None and out.is_dir():
        fail(f"--out: {out} is a directory")
    if out is not None and not out.parent.is_dir():
        fail(f"--out: no directory {out.parent} to write {out.name} in")
    with connect() as c, c.stream("GET", "/v1/audit", params={"after_seq": after_seq}) as r:
        if r.status_code >= 400:
            r.read()
            answer(r)
        if out is None:
            for chunk in r.iter_bytes():
                sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        else:
            with out.open("wb") as f:
                for chunk in r.iter_bytes():
                    f.write(chunk)
        note = f"head {r.headers.get('X-Audit-Head', '?')}"
        print(note, file=sys.stderr if out is None else sys.stdout)
