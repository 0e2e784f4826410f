"""Scheduling policies, chosen by name. A policy is a pure function of a snapshot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from cotenant.model.registry import Registry
from cotenant.scheduler.decisions import Decisions
from cotenant.scheduler.snapshot import Snapshot


class Policy(Protocol):
    name: str
    description: str
    honours_contracts: bool
    # A policy whose decisions change with time alone (LAS demotes a job once it has had
    # its quantum) asks the engine to cycle this often while work waits and runs; None:
    # only events change its decisions.
    wake_every_s: int | None

    def decide(self, snap: Snapshot) -> Decisions: ...


def _load_builtins() -> None:
    # Imported for their @register side effect.
    from cotenant.scheduler.policies import contract, fifo_backfill, las, sjf  # noqa: F401


POLICIES: Registry[Callable[[], Policy]] = Registry("policy", "policy", _load_builtins)


def register(name: str) -> Callable[[Callable[[], Policy]], Callable[[], Policy]]:
    return POLICIES.register(name)


def policy_names() -> list[str]:
    return POLICIES.names()


def get_policy(name: str, field: str = "policy") -> Policy:
    return POLICIES.get(name, field)()
