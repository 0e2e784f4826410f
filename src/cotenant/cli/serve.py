"""``cotenant serve``: bootstrap the store if it is empty, print the keys it issues
(once), start the service (restore the engine from the store, check the store takes
writes), then run the API with uvicorn. A store it cannot use (bad URL, wrong password,
unreachable host, missing directory, read-only file, a store it cannot reconcile) is
one line on stderr and exit code 2, before anything listens.

Registered in ``cli/main.py``; like ``replay`` it does not import ``cli.main`` back
(``python -m cotenant.cli.main`` would import it twice)."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cotenant.cli.client import console
from cotenant.cli.common import fail, friendly

if TYPE_CHECKING:
    from cotenant.server.keys import IssuedKey
    from cotenant.server.service import Service
    from cotenant.server.settings import Settings
    from cotenant.store.repo import Store

DEMO_SPEED = 60.0  # --demo without --speed: an hour of the cluster's life every minute


# The options (one alias each, so that the command reads as a list of them).
ConfigOpt = Annotated[Path | None, typer.Option(help="TOML settings file")]
DemoOpt = Annotated[
    bool,
    typer.Option(
        help="seed an empty store from colossus-lease (or --scenario) and issue "
        "one key per tenant, an operator key and an auditor key"
    ),
]
ScenarioOpt = Annotated[str | None, typer.Option(help="seed an empty store from this scenario")]
DbOpt = Annotated[str | None, typer.Option(help="database URL (default sqlite:///cotenant.db)")]
HostOpt = Annotated[str | None, typer.Option(help="address to listen on")]
PortOpt = Annotated[int | None, typer.Option(help="port to listen on")]
SpeedOpt = Annotated[
    float | None, typer.Option(help="simulated seconds per wall second (time acceleration)")
]
StartOpt = Annotated[
    str | None, typer.Option(help="service-clock start for a new store (ISO or Unix s)")
]
KeysOutOpt = Annotated[
    Path | None, typer.Option(help="also write the new keys to this file (JSON, mode 0600)")
]
LogLevelOpt = Annotated[str | None, typer.Option(help="uvicorn log level")]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        help="what runs the work: sim (the digital twin), local (processes on this "
        "host) or slurm (Slurm runs it; cotenant schedules)"
    ),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(help="local/slurm: job output and checkpoints (shared for slurm)"),
]
WorkloadOpt = Annotated[
    bool | None,
    typer.Option(
        help="feed the scenario's jobs, faults and services into the live engine "
        "(default: on for --demo without --scenario)"
    ),
]
ResetOpt = Annotated[
    bool, typer.Option(help="delete the store (a SQLite file) first and seed it afresh")
]


@friendly
def serve_command(
    config: ConfigOpt = None,
    demo: DemoOpt = False,
    scenario: ScenarioOpt = None,
    db: DbOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    speed: SpeedOpt = None,
    start: StartOpt = None,
    keys_out: KeysOutOpt = None,
    log_level: LogLevelOpt = None,
    backend: BackendOpt = None,
    state_dir: StateDirOpt = None,
    workload: WorkloadOpt = None,
    reset: ResetOpt = False,
) -> None:
    """Run the control plane: the engine live on the wall clock, and its HTTP API."""
    import uvicorn

    from cotenant.api.app import create_app
    from cotenant.server.settings import load_settings

    settings = load_settings(
        config,
        demo=demo or None,
        scenario=scenario,
        db=db,
        host=host,
        port=port,
        speed=DEMO_SPEED if speed is None and demo and config is None else speed,
        start=start,
        log_level=log_level,
        backend=backend,
        state_dir=None if state_dir is None else str(state_dir),
        workload=workload,
    )
    if reset:
        reset_store(settings.db)
    store, keys, seeded = _open_store(settings)
    if keys:
        _print_keys(keys, keys_out)
    elif demo or keys_out is not None:
        _say_no_keys(settings, seeded)
    svc = _start_service(store, settings)
    console.print(
        f"serving on http://{settings.host}:{settings.port} (db {_where(settings)}, "
        f"speed {settings.speed:g}x, backend {settings.backend})",
        highlight=False,
    )
    sys.stdout.flush()
    # The engine keeps every job it knows as objects; with the default thresholds the
    # cyclic GC walks them all every few hundred allocations, which showed up as the
    # p99 of submissions (bench/bench_api.py: 60 ms against 84-135 ms). Collect rarely.
    gc.set_threshold(100_000, 50, 100)
    uvicorn.run(
        create_app(settings, svc),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


def _where(settings: Settings) -> str:
    from cotenant.store.db import safe_url

    return safe_url(settings.db)


def _store_failed(settings: Settings, e: Exception) -> None:
    """A store it cannot use is one line and exit code 2; anything else is raised on."""
    from cotenant.model.errors import StoreUnavailable
    from cotenant.store.db import sqlite_problem
    from cotenant.store.health import is_store_fault

    if is_store_fault(e) or isinstance(e, StoreUnavailable):
        problem = sqlite_problem(settings.db)
        fail(f"cannot use the store {_where(settings)}: {_why(problem, e)}")


def _open_store(settings: Settings) -> tuple[Store, list[IssuedKey], str | None]:
    """The store, seeded if empty: (store, the keys it issued, what seeded it)."""
    from cotenant.server.bootstrap import bootstrap, seeded_from
    from cotenant.store.repo import Store

    store: Store | None = None
    try:
        store = Store(settings.db)
        keys = bootstrap(store, settings)
        store.writer.probe()  # the store takes writes (not only reads)
        return store, keys, seeded_from(store)
    except Exception as e:
        if store is not None:
            store.close()
        _store_failed(settings, e)
        raise


def _print_keys(keys: list[IssuedKey], keys_out: Path | None) -> None:
    console.print("[bold]API keys[/bold] (shown once; store them now):")
    for k in keys:
        who = k.tenant or "-"
        console.print(f"  {k.role.value:<14} {who:<20} {k.token}", highlight=False)
    if keys_out is not None:
        fd = os.open(keys_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(
                [
                    {
                        "key_id": k.key_id,
                        "role": k.role.value,
                        "tenant": k.tenant,
                        "name": k.name,
                        "token": k.token,
                    }
                    for k in keys
                ],
                f,
                indent=2,
            )


def _say_no_keys(settings: Settings, seeded: str | None) -> None:
    was = f" (seeded from {seeded})" if seeded else ""
    console.print(
        f"no keys printed: the store {_where(settings)}{was} is already set up, and keys are "
        "shown only when they are made. Issue one with: cotenant keys issue --db "
        f"{settings.db} --role operator (or --reset to start afresh)",
        highlight=False,
        soft_wrap=True,
    )


def _start_service(store: Store, settings: Settings) -> Service:
    """The service, started (the engine restored from the store, reconciled)."""
    from cotenant.server.service import Service

    try:
        svc = Service(store, settings)
        svc.start()
        return svc
    except Exception as e:
        store.close()
        _store_failed(settings, e)
        raise


def _why(problem: str | None, e: Exception) -> str:
    from cotenant.model.errors import StoreUnavailable
    from cotenant.store.health import one_line

    why = str(e) if isinstance(e, StoreUnavailable) else one_line(e)
    return why if problem is None else f"{problem} ({why})"


def reset_store(url: str) -> None:
    """Delete a SQLite store's file (with its WAL and shared-memory files)."""
    import sqlalchemy as sa

    from cotenant.model.errors import SpecError

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise SpecError("--db", f"cannot read {url!r} as a database URL") from None
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or path in (None, "", ":memory:"):
        raise SpecError(
            "--reset", f"only a SQLite file store can be reset; drop {url} with its own tools"
        )
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)
