"""``cotenant serve``: bootstrap the store if it is empty, print the keys it issues
(once), then run the API with uvicorn.

Registered in ``cli/main.py``; like ``replay`` it does not import ``cli.main`` back
(``python -m cotenant.cli.main`` would import it twice)."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cotenant.cli.client import console
from cotenant.cli.common import friendly


@friendly
def serve_command(
    config: Annotated[Path | None, typer.Option(help="TOML settings file")] = None,
    demo: Annotated[
        bool,
        typer.Option(
            help="seed an empty store from colossus-lease (or --scenario) and issue "
            "one key per tenant, an operator key and an auditor key"
        ),
    ] = False,
    scenario: Annotated[
        str | None, typer.Option(help="seed an empty store from this scenario")
    ] = None,
    db: Annotated[
        str | None, typer.Option(help="database URL (default sqlite:///cotenant.db)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    speed: Annotated[
        float | None, typer.Option(help="simulated seconds per wall second (time acceleration)")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="service-clock start for a new store (ISO or Unix s)")
    ] = None,
    keys_out: Annotated[
        Path | None, typer.Option(help="also write the new keys to this file (JSON, mode 0600)")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="uvicorn log level")] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="what runs the work: sim (the digital twin), local (processes on this "
            "host) or slurm (Slurm runs it; cotenant schedules)"
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="local/slurm: job output and checkpoints (shared for slurm)"),
    ] = None,
    reset: Annotated[
        bool,
        typer.Option(help="delete the store (a SQLite file) first and seed it afresh"),
    ] = False,
) -> None:
    """Run the control plane: the engine live on the wall clock, and its HTTP API."""
    import uvicorn

    from cotenant.api.app import create_app
    from cotenant.api.settings import load_settings
    from cotenant.bootstrap import bootstrap, seeded_from
    from cotenant.store.repo import Store

    settings = load_settings(
        config,
        demo=demo or None,
        scenario=scenario,
        db=db,
        host=host,
        port=port,
        speed=speed,
        start=start,
        log_level=log_level,
        backend=backend,
        state_dir=None if state_dir is None else str(state_dir),
    )
    if reset:
        reset_store(settings.db)
    store = Store(settings.db)
    try:
        keys = bootstrap(store, settings)
        seeded = seeded_from(store)
    finally:
        store.close()
    if keys:
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
    elif demo or keys_out is not None:
        was = f" (seeded from {seeded})" if seeded else ""
        console.print(
            f"no keys printed: the store {settings.db}{was} is already set up, and keys are "
            "shown only when they are made. Issue one with: cotenant keys issue --db "
            f"{settings.db} --role operator (or --reset to start afresh)",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"serving on http://{settings.host}:{settings.port} (db {settings.db}, "
        f"speed {settings.speed:g}x, backend {settings.backend})",
        highlight=False,
    )
    sys.stdout.flush()
    # The engine keeps every job it knows as objects; with the default thresholds the
    # cyclic GC walks them all every few hundred allocations, which showed up as the
    # p99 of submissions (bench/bench_api.py: 60 ms against 84-135 ms). Collect rarely.
    gc.set_threshold(100_000, 50, 100)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


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
