"""The adversarial search in the default run: a few hundred generated worlds, each run on
the twin and checked after every step (see adversarial.py). The deep profile (10,000+
worlds) is ``python3 bench/bench_adversarial.py``."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings

from adversarial import World, run_world, worlds

EXAMPLES = int(os.environ.get("COTENANT_ADVERSARIAL_EXAMPLES", "200"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(worlds())
def test_no_generated_world_breaks_an_invariant(world: World) -> None:
    try:
        run_world(world)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{world.describe()}") from None
