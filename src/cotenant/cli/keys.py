"""``cotenant keys issue``: a new API key, through a running server (with an operator or
tenant-admin key) or, with ``--db``, written straight into a store (for the first key
after the ones ``serve`` printed are lost; a running server knows it after a restart).

Registered in ``cli/main.py``; does not import ``cli.main`` back."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from cotenant.cli.client import call, print_json
from cotenant.cli.common import console, fail, friendly

keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
ROLES = ("operator", "auditor", "tenant-admin", "tenant-member")


@keys_app.command("issue")
@friendly
def keys_issue(
    role: Annotated[str, typer.Option(help="operator, auditor, tenant-admin or tenant-member")],
    tenant: Annotated[str | None, typer.Option(help="the tenant of a tenant-* key")] = None,
    name: Annotated[str, typer.Option(help="a name for people")] = "",
    db: Annotated[
        str | None,
        typer.Option(
            help="write the key into the store at this database URL instead of asking a "
            "server (a running server knows it after a restart)"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Issue an API key; prints its token (shown once)."""
    if role not in ROLES:
        fail(f"--role: unknown role {role!r}; valid: {', '.join(ROLES)}")
    if db is None:
        body: dict[str, Any] = {"role": role, "name": name}
        if tenant is not None:
            body["tenant"] = tenant
        out = call("POST", "/v1/keys", json=body)
    else:
        out = _issue_in_store(db, role, tenant, name)
    if as_json:
        print_json(out)
    else:
        who = out.get("tenant") or "-"
        console.print(f"{out['role']:<14} {who:<20} {out['token']}", highlight=False)


def _issue_in_store(db: str, role_name: str, tenant: str | None, name: str) -> dict[str, Any]:
    from cotenant.server.bootstrap import CLOCK_META
    from cotenant.server.keys import Role, make_key, store_key
    from cotenant.store.repo import Store

    role = Role(role_name)
    if role.tenant_scoped and tenant is None:
        fail(f"--tenant: a {role.value} key needs a tenant")
    if not role.tenant_scoped and tenant is not None:
        fail(f"--tenant: a {role.value} key belongs to no tenant")
    from cotenant.cli.client import require_store

    require_store(db, given=True)
    store = Store(db)
    try:
        raw = store.meta(CLOCK_META)
        if store.cluster_spec() is None or raw is None:
            fail(f"--db: the store {db} is not set up; start it once with cotenant serve")
        if tenant is not None and store.tenant(tenant) is None:
            fail(f"--tenant: no tenant {tenant!r} in the store")
        a = json.loads(raw)
        now = int(a["sim0"] + (time.time() - a["wall0"]) * a["speed"])
        key, digest = make_key(role, tenant, name or role.value)
        store.writer.call(lambda tx: store_key(tx, key, digest, "cli", now))
    finally:
        store.close()
    return {
        "key_id": key.key_id,
        "role": role.value,
        "tenant": tenant,
        "name": key.name,
        "token": key.token,
    }
