"""The usage meter (engine/usage.py): allocation intervals closed into the ledger."""

from __future__ import annotations

import pytest

from builders import H100, T0, cluster, job
from cotenant.cluster.state import Placement
from cotenant.engine.jobs import JobRun
from cotenant.engine.usage import UsageMeter


def run_on(nodes: tuple[int, ...]) -> JobRun:
    return JobRun(job("j", "A", 8 * len(nodes)), placement=Placement(nodes, (8,) * len(nodes)))


def test_an_interval_closes_into_one_record() -> None:
    meter = UsageMeter(cluster())
    run = run_on((2, 3))
    meter.open("j", T0, borrowed=True)
    assert dict(meter.open_intervals()) == {"j": (T0, True)}
    meter.close(run, T0 + 100)
    (rec,) = list(meter.ledger)
    assert (rec.job_id, rec.tenant, rec.gpus, rec.start_s, rec.end_s) == (
        "j",
        "A",
        16,
        T0,
        T0 + 100,
    )
    assert rec.borrowed and rec.nodes == (2, 3) and rec.accelerator == H100
    assert dict(meter.open_intervals()) == {}


def test_an_empty_interval_records_nothing_and_a_retag_reopens() -> None:
    meter = UsageMeter(cluster())
    run = run_on((0,))
    meter.open("j", T0, borrowed=False)
    meter.close(run, T0)  # zero length
    meter.open("j", T0, borrowed=True)  # retagged at once
    meter.close(run, T0 + 5)
    assert [(r.start_s, r.end_s, r.borrowed) for r in meter.ledger] == [(T0, T0 + 5, True)]


def test_the_open_intervals_are_read_only() -> None:
    meter = UsageMeter(cluster())
    meter.open("j", T0, borrowed=False)
    with pytest.raises(TypeError):
        meter.open_intervals()["k"] = (T0, False)  # type: ignore[index]
