"""The acceptance figure of the replay: Philly, fifo against las.

The first 2,000 Philly jobs submitted from 2017-10-01 that ask for at most 8 GPUs
(larger ones are filtered out, not bad rows), on 128 GPUs in 16 nodes of 8, replayed
until every job has ended. On this input (measured when this test was written):

    policy  avg JCT  p50 JCT  utilisation (run / while jobs arrive)
    fifo    40.0 h   21.3 h   35.6% / 67.3%
    las      4.8 h    1.5 h   34.3% / 62.3%

LAS (Tiresias-style, preemptive) cuts the average JCT about eightfold: most jobs are
short and no longer wait behind long ones. The test asks for at least fourfold.
Utilisation over the whole run is low because a few week-long jobs run alone at the
end; ``utilization_arrivals`` covers only the three days in which jobs arrive.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cotenant.model.time import parse_time
from cotenant.traces import load_trace
from cotenant.twin.replay import nodes_cluster, replay, select_jobs

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
PHILLY = DATA / "philly" / "philly_jobs.csv"

pytestmark = pytest.mark.shared


def test_las_gives_a_much_lower_average_jct_than_fifo_on_philly() -> None:
    if not PHILLY.exists():
        pytest.skip(f"shared data not found at {PHILLY} (expected beside the repo checkout)")
    trace = load_trace("philly", PHILLY, start_s=parse_time("2017-10-01", "start"))
    trace = select_jobs(trace, max_job_gpus=8, limit=2000)
    assert len(trace.jobs) == 2000 and max(j.gpus for j in trace.jobs) == 8
    cluster = nodes_cluster(16, 8)
    assert cluster.total_gpus == 128
    fifo, las = replay(trace, cluster, ["fifo", "las"])
    for r in (fifo, las):
        e = r.extra
        print(
            f"{r.policy}: avg JCT {e['jct_s']['avg'] / 3600:.1f} h, "
            f"p50 {e['jct_s']['p50'] / 3600:.1f} h, p99 {e['jct_s']['p99'] / 3600:.1f} h; "
            f"avg queue {e['queue_delay_s']['avg'] / 3600:.1f} h; "
            f"utilisation {r.utilization:.1%} (while jobs arrive {e['utilization_arrivals']:.1%}); "
            f"makespan {e['makespan_s'] / 86_400:.1f} d; preemptions {e['preemptions']}"
        )
        assert e["jobs"]["completed"] == 2000
        assert 0.0 < r.utilization <= 1.0
    assert fifo.extra["preemptions"] == 0
    assert las.extra["preemptions"] > 0
    assert las.extra["jct_s"]["avg"] < 0.25 * fifo.extra["jct_s"]["avg"]
    assert las.extra["queue_delay_s"]["avg"] < 0.25 * fifo.extra["queue_delay_s"]["avg"]
