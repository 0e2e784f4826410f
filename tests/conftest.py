"""Shared pytest fixtures.

The service fixtures start real daemons once per session (see tests/harness/).
Where the services are not installed they skip with the reason; CI sets
COTENANT_REQUIRE_SERVICES=1 so that a missing service fails the run instead of
silently skipping the integration tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.postgres import LocalPostgres, postgres_available
from harness.slurm import MUNGE_SOCKET, LocalSlurm, LocalSlurms, slurm_available


def _services_required() -> bool:
    return os.environ.get("COTENANT_REQUIRE_SERVICES", "") == "1"


def _unavailable(reason: str) -> None:
    """Skip locally, fail in CI: a CI run without its services must not pass."""
    if _services_required():
        pytest.fail(f"COTENANT_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[LocalSlurm]:
    """A real 3-node Slurm cluster with 8 fake GPUs per node, shared by the session."""
    reason = slurm_available()
    if reason is not None:
        _unavailable(reason)
    # Each test process (and pytest-xdist worker) owns its munged on a private socket: a
    # second run on the same host must not share, or stop, this run's munged.
    socket = MUNGE_SOCKET.with_name(f"cotenant-{os.getpid()}.socket")
    with LocalSlurm(n_nodes=3, gpus_per_node=8, munge_socket=socket) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def slurm_pair() -> Iterator[LocalSlurms]:
    """Two independent Slurm clusters on this host, `alpha` (nodes a1, a2) and `beta`
    (b1, b2), 8 fake GPUs per node, with their own controllers: two providers. Per
    module (they start in about a second), so their daemons do not run beside the
    timing-sensitive tests of other modules."""
    reason = slurm_available()
    if reason is not None:
        _unavailable(reason)
    socket = MUNGE_SOCKET.with_name(f"cotenant-{os.getpid()}-pair.socket")
    with LocalSlurms(("alpha", "beta"), n_nodes=2, gpus_per_node=8, munge_socket=socket) as pair:
        yield pair


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A real PostgreSQL server on 127.0.0.1, shared by the session."""
    reason = postgres_available()
    if reason is not None:
        _unavailable(reason)
    with LocalPostgres() as server:
        yield server
