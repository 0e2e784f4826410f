"""API keys and roles. A key is a random 32-byte token shown once; the store keeps its
SHA-256 (a 256-bit random secret needs no slow hash: there is nothing to guess).

Roles (docs/design/0006-service.md has the full matrix):

- ``operator``: everything.
- ``tenant-admin``: its own tenant's jobs (any of them), usage, invoices and keys.
- ``tenant-member``: submits, lists, reads and asks why about its tenant's jobs; cancels
  only the jobs it submitted itself; reads its tenant's usage.
- ``auditor``: read-only: the audit log, usage, invoices, tenants and contracts, the
  cluster and metrics. Never jobs.

``KeyAdmin`` issues and revokes keys: stored with their audit entry first, then added to
or removed from the ``KeyRing`` the requests are checked against.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from cotenant.model.errors import Conflict, NotFound, SpecError
from cotenant.store import repo
from cotenant.store.mapping import KeyRecord, key_columns, key_from_row
from cotenant.store.repo import Store
from cotenant.store.writer import Tx

TOKEN_PREFIX = "ctk_"


class Role(StrEnum):
    OPERATOR = "operator"
    TENANT_ADMIN = "tenant-admin"
    TENANT_MEMBER = "tenant-member"
    AUDITOR = "auditor"

    @property
    def tenant_scoped(self) -> bool:
        return self in (Role.TENANT_ADMIN, Role.TENANT_MEMBER)


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: Role
    tenant: str | None = None  # set exactly for tenant roles
    name: str = ""


def new_token() -> tuple[str, str]:
    """(key id, token). The id is public (listed, audited); the token is the secret."""
    key_id = "key_" + secrets.token_hex(6)
    return key_id, TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class KeyRing:
    """Active keys by token hash, in memory: checking a key costs one hash and a dict
    lookup. The service adds and removes keys after their store writes commit."""

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        self._lock = threading.Lock()
        self._by_hash: dict[str, Principal] = {}
        for r in rows:
            self.add(r["hash"], principal_of(r))

    def add(self, digest: str, p: Principal) -> None:
        with self._lock:
            self._by_hash[digest] = p

    def remove(self, key_id: str) -> None:
        with self._lock:
            for digest, p in list(self._by_hash.items()):
                if p.key_id == key_id:
                    del self._by_hash[digest]

    def check(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return self._by_hash.get(hash_token(token))


def principal_of(row: Mapping[str, Any]) -> Principal:
    return Principal(row["id"], Role(row["role"]), row["tenant"], row["name"])


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    role: Role
    tenant: str | None
    name: str
    token: str  # shown once


def make_key(role: Role, tenant: str | None, name: str) -> tuple[IssuedKey, str]:
    """A new key and its token's hash."""
    key_id, token = new_token()
    return IssuedKey(key_id, role, tenant, name, token), hash_token(token)


def store_key(tx: Tx, key: IssuedKey, digest: str, by: str, now: int) -> None:
    record = KeyRecord(key.key_id, key.role.value, key.tenant, key.name, now, by, None)
    repo.add_key(tx, key_columns(record, digest))
    tx.audit(
        now,
        "key-issued",
        {
            "key_id": key.key_id,
            "role": key.role.value,
            "tenant": key.tenant,
            "name": key.name,
            "by": by,
        },
    )


class KeyAdmin:
    """The keys routes' operations: issue and revoke, stored and audited, then applied to
    the ring."""

    def __init__(
        self, store: Store, ring: KeyRing, tenant_names: set[str], now: Callable[[], int]
    ) -> None:
        self.store = store
        self.ring = ring
        self.tenant_names = tenant_names  # (the tenant service's set, shared)
        self.now = now

    def issue(self, by: Principal, role: Role, tenant: str | None, name: str) -> IssuedKey:
        if role.tenant_scoped and tenant is None:
            raise SpecError("tenant", f"a {role.value} key needs a tenant")
        if not role.tenant_scoped and tenant is not None:
            raise SpecError("tenant", f"a {role.value} key belongs to no tenant")
        if tenant is not None and tenant not in self.tenant_names:
            raise NotFound(f"no tenant {tenant!r}")
        key, digest = make_key(role, tenant, name)
        now = self.now()
        self.store.writer.call(lambda tx: store_key(tx, key, digest, by.key_id, now))
        self.ring.add(digest, Principal(key.key_id, role, tenant, name))
        return key

    def get(self, key_id: str) -> KeyRecord | None:
        row = self.store.key(key_id)
        return None if row is None else key_from_row(row)

    def all(self, tenant: str | None = None) -> list[KeyRecord]:
        """Every key (of ``tenant``), oldest first."""
        return [key_from_row(r) for r in self.store.keys(tenant)]

    def revoke(self, by: Principal, key_id: str) -> KeyRecord:
        key = self.get(key_id)
        if key is None:
            raise NotFound(f"no key {key_id!r}")
        if key.revoked_s is not None:
            raise Conflict(f"key {key_id!r} is already revoked")
        now = self.now()

        def op(tx: Tx) -> None:
            repo.revoke_key(tx, key_id, now)
            tx.audit(now, "key-revoked", {"key_id": key_id, "by": by.key_id})

        self.store.writer.call(op)
        self.ring.remove(key_id)
        return replace(key, revoked_s=now)
