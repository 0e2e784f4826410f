"""A pipeline on the local backend, live (wall clock, real processes): each stage reads
what the stage before wrote in its checkpoint directory (``COTENANT_PREVIOUS_CHECKPOINT_DIR``),
and a stage whose previous stage failed never starts (``dependency-never-met``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import pytest

from builders import cluster, finished, job
from builders import drive as drive_until
from cotenant.backends.local import LocalBackend
from cotenant.engine.clock import WallClock
from cotenant.engine.core import Engine
from cotenant.model.dependencies import Dependency, DependencyKind, Pipeline
from cotenant.model.jobs import JobSpec, JobState
from cotenant.scheduler.policies import get_policy

drive = partial(drive_until, timeout_s=30.0)
ONE_NODE = cluster(nodes=1, per_rack=1, racks_per_block=1)  # 8 GPUs

# Stage 1 writes weights; each later stage reads the previous stage's and writes its own.
FIRST = 'echo "w1" > "$COTENANT_CHECKPOINT_DIR/weights"; {fail}'
NEXT = (
    'read w < "$COTENANT_PREVIOUS_CHECKPOINT_DIR/weights" && '
    'echo "$w+{name}" > "$COTENANT_CHECKPOINT_DIR/weights" && echo "read $w"'
)


@pytest.fixture
def backend(tmp_path: Path) -> Iterable[LocalBackend]:
    b = LocalBackend(ONE_NODE, tmp_path / "state")
    yield b
    for run in b.runs():
        b.stop(run.job_id, 0)
    b.close()


def submit_pipeline(eng: Engine, fail_first: bool) -> list[str]:
    now = eng.clock.now()

    def stage(i: int, name: str, command: str, after: str | None) -> JobSpec:
        return job(
            f"s{i}-{name}",
            "lab",
            2,
            duration_s=2,
            submit_s=now,
            command=("sh", "-c", command),
            after=(Dependency(DependencyKind.AFTER_OK, (after,)),) if after else (),
            pipeline="p",
        )

    stages = [
        stage(1, "pretrain", FIRST.format(fail="exit 3" if fail_first else "true"), None),
        stage(2, "sft", NEXT.format(name="sft"), "s1-pretrain"),
        stage(3, "eval", NEXT.format(name="eval"), "s2-sft"),
    ]
    runs = eng.deps.submit_pipeline(Pipeline("p", "lab", "llm", (), now), stages)
    return [r.id for r in runs]


def live_engine(backend: LocalBackend) -> Engine:
    return Engine(
        ONE_NODE,
        [],
        get_policy("fifo-backfill"),
        backend,
        WallClock(),
        restart_cost_s=0,
        checkpoint_write_s=0,
        tenants=["lab"],
    )


def test_each_stage_reads_what_the_stage_before_wrote(backend: LocalBackend) -> None:
    eng = live_engine(backend)
    ids = submit_pipeline(eng, fail_first=False)
    drive(eng, finished(eng))
    assert [eng.jobs[j].state for j in ids] == [JobState.COMPLETED] * 3
    assert (backend.checkpoint_dir("s3-eval") / "weights").read_text() == "w1+sft+eval\n"
    out2, _ = backend.log_paths("s2-sft", 1)
    out3, _ = backend.log_paths("s3-eval", 1)
    assert out2.read_text() == "read w1\n" and out3.read_text() == "read w1+sft\n"
    runs = [eng.jobs[j] for j in ids]
    for prev, r in itertools.pairwise(runs):
        assert prev.end_s is not None and r.first_start_s is not None
        assert r.first_start_s >= prev.end_s


def test_a_failed_first_stage_leaves_the_next_dependency_never_met(
    backend: LocalBackend,
) -> None:
    eng = live_engine(backend)
    ids = submit_pipeline(eng, fail_first=True)
    drive(eng, finished(eng))
    first, second, third = (eng.jobs[j] for j in ids)
    assert first.state is JobState.FAILED
    assert (second.state, second.reason) == (JobState.CANCELLED, "dependency-never-met")
    assert "job s1-pretrain failed" in second.reason_detail
    assert (third.state, third.reason) == (JobState.CANCELLED, "dependency-never-met")
    assert second.attempt == third.attempt == 0  # never started
    assert not (backend.checkpoint_dir("s2-sft")).exists()
