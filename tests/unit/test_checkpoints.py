"""Checkpoint arithmetic (model/checkpoints.py): lost work and restart points, pinned.

A run: restart cost, then cycles of ``every`` seconds of work and ``write`` seconds of
writing. The table's run starts at 1,000 with a restart cost of 5, a 100 s interval and
a 10 s write, so its timeline after the restart (``ran``) is:
work 0-100, write 100-110 (checkpoint of 100 done at 110), work 110-210, write 210-220...
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cotenant.backends.base import StartRequest
from cotenant.backends.sim import SimBackend
from cotenant.cluster.state import Placement
from cotenant.engine.jobs import JobRun
from cotenant.model.checkpoints import CheckpointedRun, lost_at, run_length_s
from cotenant.model.jobs import JobSpec


def a_run(
    *, every: int = 100, write: int = 10, restart: int = 5, saved: int = 0, duration: int = 1000
) -> CheckpointedRun:
    return CheckpointedRun(1000, restart, saved, duration, every, write)


@pytest.mark.parametrize(
    ("run", "ran", "progress", "saved", "lost", "writing"),
    [
        pytest.param(a_run(), -5, 0, 0, 0, 0, id="during-the-restart"),
        pytest.param(a_run(), 0, 0, 0, 0, 0, id="restart-done"),
        pytest.param(a_run(), 50, 50, 0, 50, 0, id="mid-first-interval"),
        pytest.param(a_run(), 100, 100, 0, 100, 0, id="interval-done-write-starts"),
        pytest.param(a_run(), 105, 100, 0, 100, 5, id="mid-write-not-yet-safe"),
        pytest.param(a_run(), 110, 100, 100, 0, 10, id="write-done-all-safe"),
        pytest.param(a_run(), 150, 140, 100, 40, 10, id="second-interval"),
        pytest.param(a_run(), 215, 200, 100, 100, 15, id="second-write"),
        pytest.param(a_run(every=0), 150, 150, 0, 150, 0, id="never-checkpoints"),
        pytest.param(a_run(write=0), 150, 150, 100, 50, 0, id="instant-writes"),
        pytest.param(
            a_run(saved=300, duration=350), 150, 350, 350, 0, 10, id="capped-at-the-duration"
        ),
        pytest.param(a_run(saved=300), 150, 440, 400, 40, 10, id="on-top-of-earlier-runs"),
    ],
)
def test_progress_saved_and_lost_work(
    run: CheckpointedRun, ran: int, progress: int, saved: int, lost: int, writing: int
) -> None:
    now = run.start_s + run.restart_s + ran
    assert run.progress_s(now) == progress
    assert run.saved_s(now) == saved
    assert run.lost_s(now) == lost
    assert run.writing_s(now) == writing


@pytest.mark.parametrize(
    ("deadline_ran", "notice", "want"),
    [
        pytest.param(150, 60, 130, id="checkpoint-holds-work-done-when-its-write-began"),
        pytest.param(150, 10, 130, id="notice-of-exactly-one-write"),
        pytest.param(150, 9, None, id="notice-shorter-than-a-write-keeps-periodic-only"),
        pytest.param(5, 60, 0, id="write-began-during-the-restart"),
    ],
)
def test_a_checkpoint_on_notice(deadline_ran: int, notice: int, want: int | None) -> None:
    run = a_run()
    deadline = run.start_s + run.restart_s + deadline_ran
    assert run.saved_on_notice_s(deadline - notice, deadline) == want


@pytest.mark.parametrize(
    ("left", "every", "write", "length"),
    [
        pytest.param(0, 100, 10, 0, id="nothing-left"),
        pytest.param(100, 100, 10, 100, id="one-interval-no-write-after-the-last"),
        pytest.param(101, 100, 10, 111, id="one-write-then-one-second"),
        pytest.param(250, 100, 10, 270, id="two-writes"),
        pytest.param(250, 0, 10, 250, id="never-checkpoints"),
    ],
)
def test_run_length(left: int, every: int, write: int, length: int) -> None:
    assert run_length_s(left, every, write) == length


@given(
    duration=st.integers(1, 50_000),
    saved=st.integers(0, 50_000),
    every=st.integers(0, 5_000),
    write=st.integers(0, 600),
    restart=st.integers(0, 900),
)
def test_the_restart_point_is_where_the_work_ends(
    duration: int, saved: int, every: int, write: int, restart: int
) -> None:
    """A run ends exactly when its work is done (the simulated backend ends it there);
    whatever is saved never exceeds what is done, and nothing is lost once it ends."""
    saved = min(saved, duration)
    run = CheckpointedRun(0, restart, saved, duration, every, write)
    end = run.end_s()
    assert run.progress_s(end) == duration
    assert end == 0 or run.progress_s(end - 1) < duration or saved == duration
    for now in (0, restart, end // 3, end // 2, end - 1):
        assert run.saved_s(now) <= run.progress_s(now)
        assert run.lost_s(now) == run.progress_s(now) - run.saved_s(now)
    spec = JobSpec("j", "t", gpus=1, duration_s=duration, submit_s=0, checkpoint_interval_s=every)
    req = StartRequest(spec, 1, Placement((0,), (1,)), ("n0",), 0, saved, restart, write)
    assert SimBackend().run_length_s(req) == end


@pytest.mark.parametrize(
    "ran",
    [pytest.param(r, id=f"ran-{r}") for r in (0, 50, 100, 105, 110, 150, 215, 230, 990)],
)
def test_the_snapshot_counts_lost_work_as_the_engine_does(ran: int) -> None:
    """A victim's lost work as the policy ranks it (the snapshot's running view) is the
    work the engine takes away when it stops the run: checkpoint write time counted."""
    spec = JobSpec("j", "t", gpus=8, duration_s=5_000, submit_s=0, checkpoint_interval_s=100)
    engine_run = JobRun(spec, placement=Placement((0,), (8,)), start_s=1000, restart_s=5)
    engine_run.write_s, engine_run.work_saved_s = 10, 300
    now = 1005 + ran
    lost = engine_run.progress_s(now) - engine_run.saved_by_periodic_checkpoints_s(now)
    assert engine_run.running_view().work_since_checkpoint_s(now) == lost


@given(
    start=st.integers(0, 10**6),
    restart=st.integers(0, 1_000),
    saved=st.integers(0, 10**6),
    duration=st.integers(1, 10**6),
    every=st.integers(0, 5_000),
    write=st.integers(0, 600),
    now=st.integers(0, 3 * 10**6),
)
def test_lost_at_is_progress_less_saved(
    start: int, restart: int, saved: int, duration: int, every: int, write: int, now: int
) -> None:
    """The one-call form the victim ranking uses agrees with its definition: the work done
    by ``now`` less the work its last finished checkpoint holds."""
    run = CheckpointedRun(start, restart, saved, duration, every, write)
    expected = max(0, run.progress_s(now) - run.saved_s(now))
    assert lost_at(start, restart, saved, duration, every, write, now) == expected
    assert run.lost_s(now) == expected
