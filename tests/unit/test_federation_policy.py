"""The federation's policy: where a job runs, and what moves under notice, as pure
functions over provider views (docs/design/0014-providers.md)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cotenant.federation.policy import (
    ClusterView,
    JobAsk,
    PoolView,
    RouteReason,
    _hours,
    drain,
    expected_wait_s,
    route,
)
from cotenant.model.jobs import JobKind

H = 3600
USD = 1_000_000


def ask(gpus: int = 64, max_wait: int | None = 2 * H, **kw: object) -> JobAsk:
    base = JobAsk(
        "j1",
        "lessee",
        gpus,
        JobKind.EXPERIMENT,
        0,
        4 * H,
        max_wait,
        ("lease", "aws-east", "gcp"),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def lease(
    room: int = 0,
    free: int = 0,
    releases: tuple[tuple[int, int], ...] = (),
    ahead: int = 0,
    noticed: bool = False,
) -> ClusterView:
    return ClusterView("lease", room, free, noticed, releases, ahead)


def pool(name: str = "aws-east", free: int = 1024, cost_usd: int = 1840) -> PoolView:
    return PoolView(name, free, 1800, cost_usd * USD)


@pytest.mark.parametrize(
    ("view", "gpus", "want"),
    [
        pytest.param(lease(room=64), 64, 0, id="inside-the-entitlement"),
        pytest.param(lease(free=64), 64, 0, id="idle-gpus-to-borrow"),
        pytest.param(lease(free=64, noticed=True), 64, None, id="under-notice-borrows-nothing"),
        pytest.param(lease(releases=((3 * H, 32), (5 * H, 32))), 64, 5 * H, id="own-runs-end"),
        pytest.param(lease(room=32, releases=((H, 32),)), 64, H, id="room-plus-a-release"),
        pytest.param(lease(room=64, ahead=64, releases=((7 * H, 64),)), 64, 7 * H, id="queue"),
        pytest.param(lease(releases=((H, 8),)), 64, None, id="never-enough"),
    ],
)
def test_expected_wait(view: ClusterView, gpus: int, want: int | None) -> None:
    assert expected_wait_s(view, gpus) == want


@pytest.mark.parametrize(
    ("views", "job", "budget", "reason", "provider"),
    [
        pytest.param(
            [lease(room=64), pool()], ask(), 10**4, RouteReason.ENTITLED, "lease", id="entitled"
        ),
        pytest.param(
            [lease(free=64), pool()], ask(), 10**4, RouteReason.BORROWABLE, "lease", id="borrow"
        ),
        pytest.param(
            [lease(releases=((H, 64),)), pool()],
            ask(),
            10**4,
            RouteReason.WAIT_OK,
            "lease",
            id="short-wait",
        ),
        pytest.param(
            [lease(releases=((6 * H, 64),)), pool()],
            ask(),
            10**4,
            RouteReason.OVERFLOWED,
            "aws-east",
            id="overflow",
        ),
        pytest.param(
            [lease(releases=((6 * H, 64),)), pool()],
            ask(),
            1000,
            RouteReason.OVER_BUDGET,
            "lease",
            id="over-budget",
        ),
        pytest.param(
            [lease(releases=((6 * H, 64),)), pool(free=32)],
            ask(),
            10**4,
            RouteReason.NO_POOL_ROOM,
            "lease",
            id="pool-full",
        ),
        pytest.param(
            [lease(releases=((6 * H, 64),))],
            ask(),
            10**4,
            RouteReason.NO_POOL,
            "lease",
            id="no-pool",
        ),
        pytest.param(
            [lease(releases=((6 * H, 64),)), pool()],
            ask(max_wait=None),
            10**4,
            RouteReason.NO_OVERFLOW,
            "lease",
            id="no-max-wait",
        ),
        pytest.param(
            [lease(releases=((H, 64),)), pool()],
            ask(waited_s=90 * 60),
            10**4,
            RouteReason.OVERFLOWED,
            "aws-east",
            id="waited-too",
        ),
        pytest.param(
            [lease(room=64), pool()],
            ask(pinned="aws-east"),
            0,
            RouteReason.PINNED,
            "aws-east",
            id="pinned",
        ),
        pytest.param(
            [pool()],
            ask(candidates=("aws-east",)),
            0,
            RouteReason.NAMED,
            "aws-east",
            id="only-pools",
        ),
    ],
)
def test_route(
    views: list[ClusterView | PoolView],
    job: JobAsk,
    budget: int,
    reason: RouteReason,
    provider: str,
) -> None:
    r = route(job, views, budget * USD)
    assert (r.reason, r.provider) == (reason, provider), r.detail
    assert r.overflow == (reason is RouteReason.OVERFLOWED)
    assert r.cost_micro == (1840 * USD if r.overflow or reason is RouteReason.NAMED else 0)


def test_an_overflow_says_why_and_what_it_costs() -> None:
    r = route(ask(), [lease(releases=((22320, 64),)), pool()], 10**4 * USD)
    assert r.detail == "overflowed to aws-east: expected wait 6.2 h > max_wait 2 h; cost $1,840"
    assert r.expected_wait_s == 22320
    assert r.to_json()["reason"] == "overflowed"


def test_the_cheapest_pool_with_room_is_taken() -> None:
    views = [lease(), pool("aws-east", cost_usd=2000), pool("gcp", cost_usd=1500)]
    assert route(ask(), views, 10**4 * USD).provider == "gcp"
    views = [lease(), pool("aws-east", cost_usd=2000), pool("gcp", free=8, cost_usd=1500)]
    assert route(ask(), views, 10**4 * USD).provider == "aws-east"


def test_a_budget_refusal_names_cost_and_what_is_left() -> None:
    r = route(ask(), [lease(), pool()], 1000 * USD)
    assert r.provider == "lease" and not r.overflow
    assert "would cost $1,840, budget left $1,000" in r.detail


def job_ask(job: str, gpus: int, priority: int) -> JobAsk:
    return replace(ask(gpus=gpus), job_id=job, priority=priority)


def test_drain_moves_the_most_important_first_until_the_excess_is_covered() -> None:
    jobs = [("exp", 64, 0), ("rl", 512, 50), ("pre", 1024, 100), ("exp2", 64, 0)]
    asks = [(job_ask(j, g, p), [pool(free=2048)]) for j, g, p in jobs]
    routes = drain("lease", 1500, asks)
    assert [(r.job_id, r.provider, r.reason) for r in routes] == [
        ("pre", "aws-east", RouteReason.MIGRATED),
        ("rl", "aws-east", RouteReason.MIGRATED),
    ]
    assert "migrated from lease to aws-east under notice" in routes[0].detail


def test_drain_fills_a_pool_then_says_where_nothing_fits() -> None:
    asks = [(job_ask(j, 512, p), [pool(free=600)]) for j, p in (("a", 2), ("b", 1))]
    routes = drain("lease", 2000, asks)
    assert [(r.job_id, r.provider, r.reason) for r in routes] == [
        ("a", "aws-east", RouteReason.MIGRATED),
        ("b", None, RouteReason.NO_TARGET),
    ]


def test_drain_never_targets_the_lease_it_leaves_nor_a_noticed_cluster_to_borrow() -> None:
    other = ClusterView("lease-2", 0, 4096, True, ())
    asks = [(job_ask("a", 64, 0), [lease(room=4096), other])]
    assert drain("lease", 64, asks)[0].reason is RouteReason.NO_TARGET
    roomy = replace(other, room_entitled=64)
    assert drain("lease", 64, [(job_ask("a", 64, 0), [roomy])])[0].provider == "lease-2"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, "unbounded"),
        (0, "0 s"),
        (45, "45 s"),
        (150, "2 min"),
        (180, "0.1 h"),  # (from 3 minutes on, hours to a tenth, as before)
        (3600, "1 h"),
        (5460, "1.5 h"),
    ],
)
def test_a_short_wait_is_not_worded_as_no_wait(seconds: int | None, words: str) -> None:
    assert _hours(seconds) == words
