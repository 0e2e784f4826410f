"""A run made shorter or longer than its scenario is written for (``--days``, what-if
``--days``): the workloads' counts are for the written duration, so a shorter run is the
written run's first days and a longer one keeps the same rate per day."""

from __future__ import annotations

from dataclasses import replace

from cotenant.model.jobs import JobKind
from cotenant.model.time import DAY
from cotenant.twin.runtime import workload_of
from cotenant.twin.scenario import load_scenario


def test_a_shorter_run_is_the_first_days_of_the_written_one() -> None:
    sc = load_scenario("small-lease")
    assert sc.duration_s == 3 * DAY
    whole = workload_of(sc)
    first = workload_of(replace(sc, duration_s=DAY))
    assert first == [j for j in whole if j.submit_s < sc.start_s + DAY]
    assert 0 < len(first) < len(whole)


def test_a_shorter_run_does_not_squeeze_the_jobs_into_fewer_days() -> None:
    sc = load_scenario("colossus-lease")
    week = workload_of(replace(sc, duration_s=7 * DAY))
    experiments = [j for j in week if j.kind is JobKind.EXPERIMENT and "-exp-" in j.id]
    written = sum(w.experiments for w in sc.workloads)
    # About 7/30 of the month's experiments arrive in its first week (the working-day
    # pattern moves it a little); before, all of them did.
    assert 0.15 * written < len(experiments) < 0.32 * written
    assert all(j.submit_s < sc.start_s + 7 * DAY for j in week)


def test_a_longer_run_draws_at_the_same_rate_and_keeps_its_pretraining() -> None:
    sc = load_scenario("small-lease")
    longer = workload_of(replace(sc, duration_s=2 * sc.duration_s))
    for w in sc.workloads:
        pre = w.prefix or w.tenant
        mine = [j for j in longer if j.tenant == w.tenant and j.id.startswith(pre)]
        assert sum("-exp-" in j.id for j in mine) == 2 * w.experiments
        assert sum("-rl-" in j.id for j in mine) == 2 * w.rl_runs
        assert sum("-pretrain-" in j.id for j in mine) == w.pretraining_runs
    late = [j for j in longer if j.submit_s >= sc.end_s]
    assert late, "the second half of a doubled run has arrivals of its own"
    assert all(j.submit_s < sc.start_s + 2 * sc.duration_s for j in longer)
