"""API keys and roles. A key is a random 32-byte token shown once; the store keeps its
SHA-256 (a 256-bit random secret needs no slow hash: there is nothing to guess).

Roles (docs/design/0006-service.md has the full matrix):

- ``operator``: everything.
- ``tenant-admin``: its own tenant's jobs (any of them), usage, invoices and keys.
- ``tenant-member``: submits, lists, reads and asks why about its tenant's jobs; cancels
  only the jobs it submitted itself; reads its tenant's usage.
- ``auditor``: read-only: the audit log, usage, invoices, tenants and contracts, the
  cluster and metrics. Never jobs.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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
