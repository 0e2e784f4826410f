"""The local backend runs real processes: GPU indices, exit codes, preemption, adoption.

Most cases drive the real engine on a wall clock at speed 1 with jobs of a second or
two; the adoption case kills (SIGKILL) a child process that owns an engine and a
backend while its jobs run, and starts a new backend on the same state directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from builders import cluster, contract, finished, job, submit_command
from builders import drive as drive_until
from cotenant.backends import backend_names, get_backend
from cotenant.backends.base import JobEnded, StartRequest
from cotenant.backends.local import EXIT_NOT_STARTED, LocalBackend
from cotenant.cluster.state import Placement
from cotenant.cluster.topology import Topology
from cotenant.engine.clock import WallClock
from cotenant.engine.core import Engine
from cotenant.model.contracts import Contract
from cotenant.model.errors import Conflict, SpecError
from cotenant.model.jobs import JobSpec, JobState
from cotenant.scheduler.policies import get_policy

# Local processes start at once.
drive = partial(drive_until, timeout_s=20.0)

ONE_NODE = cluster(nodes=1, per_rack=1, racks_per_block=1)  # 8 GPUs
TWO_NODES = cluster(nodes=2, per_rack=2, racks_per_block=1)


def live_engine(
    topo: Topology,
    backend: LocalBackend,
    contracts: Iterable[Contract] = (),
    tenants: Iterable[str] = ("B",),
    policy: str = "fifo-backfill",
    events: list[dict[str, Any]] | None = None,
) -> Engine:
    eng = Engine(
        topo,
        list(contracts),
        get_policy(policy),
        backend,
        WallClock(),
        restart_cost_s=0,
        checkpoint_write_s=0,
        tenants=list(tenants),
    )
    if events is not None:
        eng.sinks.append(events.append)
    return eng


@pytest.fixture
def backend(tmp_path: Path) -> Iterable[LocalBackend]:
    b = LocalBackend(ONE_NODE, tmp_path / "state")
    yield b
    for run in b.runs():
        b.stop(run.job_id, 0)
    b.close()


# -- env, GPUs, output, exit codes -----------------------------------------------------------


def test_a_job_sees_its_gpus_and_identity_and_its_output_is_kept(
    backend: LocalBackend, tmp_path: Path
) -> None:
    eng = live_engine(ONE_NODE, backend)
    submit_command(
        eng,
        "j1",
        3,
        'echo "$CUDA_VISIBLE_DEVICES|$COTENANT_JOB_ID|$COTENANT_ATTEMPT|'
        '$COTENANT_CHECKPOINT_DIR|$(pwd)"; echo to-stderr >&2',
    )

    drive(eng, finished(eng))

    assert eng.jobs["j1"].state is JobState.COMPLETED
    out, err = backend.log_paths("j1", 1)
    cvd, job_id, attempt, ckpt, cwd = out.read_text().strip().split("|")
    assert (cvd, job_id, attempt) == ("0,1,2", "j1", "1")
    assert Path(ckpt) == backend.checkpoint_dir("j1") and Path(ckpt).is_dir()
    assert Path(cwd) == backend.checkpoint_dir("j1").parent
    assert err.read_text() == "to-stderr\n"
    assert backend.runs() == []


def test_a_relative_state_dir_is_taken_from_where_the_server_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    b = LocalBackend(ONE_NODE, "runs")
    eng = live_engine(ONE_NODE, b)
    submit_command(eng, "rel", 1, "echo here")

    drive(eng, finished(eng))
    b.close()

    assert eng.jobs["rel"].state is JobState.COMPLETED
    assert (tmp_path / "runs" / "jobs" / "rel" / "attempt-1.out").read_text() == "here\n"


def test_two_jobs_on_one_node_get_disjoint_gpus(backend: LocalBackend) -> None:
    eng = live_engine(ONE_NODE, backend)
    for name in ("a", "b"):
        submit_command(eng, name, 4, 'echo "$CUDA_VISIBLE_DEVICES"; sleep 1')

    drive(eng, finished(eng))

    seen = {n: backend.log_paths(n, 1)[0].read_text().split() for n in ("a", "b")}
    assert seen == {"a": ["0,1,2,3"], "b": ["4,5,6,7"]}
    assert [e.nodes for e in eng.ledger.records()] == [(0,), (0,)]


def test_indices_freed_by_one_job_go_to_the_next(backend: LocalBackend) -> None:
    eng = live_engine(ONE_NODE, backend)
    submit_command(eng, "first", 6, 'echo "$CUDA_VISIBLE_DEVICES"')
    submit_command(eng, "short", 2, 'echo "$CUDA_VISIBLE_DEVICES"; sleep 2')
    drive(eng, lambda: eng.jobs["first"].state is JobState.COMPLETED)
    submit_command(eng, "next", 5, 'echo "$CUDA_VISIBLE_DEVICES"')

    drive(eng, finished(eng))

    cvd = {n: backend.log_paths(n, 1)[0].read_text().strip() for n in ("first", "short", "next")}
    assert cvd == {"first": "0,1,2,3,4,5", "short": "6,7", "next": "0,1,2,3,4"}


@pytest.mark.parametrize(
    ("command", "state", "code"),
    [
        pytest.param("exit 0", JobState.COMPLETED, 0, id="exit-0-completes"),
        pytest.param("exit 3", JobState.FAILED, 3, id="exit-3-fails"),
        pytest.param("kill -9 $$", JobState.FAILED, 137, id="killed-by-a-signal-fails"),
        pytest.param("exec /nonexistent/cmd", JobState.FAILED, 127, id="missing-command-fails"),
    ],
)
def test_exit_codes_become_job_states(
    backend: LocalBackend, command: str, state: JobState, code: int
) -> None:
    ev: list[dict[str, Any]] = []
    eng = live_engine(ONE_NODE, backend, events=ev)
    submit_command(eng, "x", 1, command)

    drive(eng, finished(eng))

    assert eng.jobs["x"].state is state
    assert [e["exit_code"] for e in ev if e["event"] == "end"] == [code]


def test_a_gang_over_two_virtual_nodes_is_one_process_group(tmp_path: Path) -> None:
    b = LocalBackend(TWO_NODES, tmp_path / "state")
    eng = live_engine(TWO_NODES, b)
    eng.submit(
        job(
            "big",
            "B",
            12,
            duration_s=1,
            submit_s=eng.clock.now(),
            command=("sh", "-c", 'echo "$COTENANT_NODES|$COTENANT_GPU_IDS"'),
        )
    )

    drive(eng, finished(eng))
    b.close()

    names = TWO_NODES.node_names
    assert b.log_paths("big", 1)[0].read_text().strip() == (
        f"{names[0]},{names[1]}|{names[0]}:0,1,2,3,4,5,6,7 {names[1]}:0,1,2,3"
    )


# -- preemption ----------------------------------------------------------------------------------

TRAPS_TERM = """
echo "start $COTENANT_ATTEMPT $(date +%s.%N)" >> {log}
[ "$COTENANT_ATTEMPT" = 2 ] && exit 0
trap 'echo "term $COTENANT_ATTEMPT $(date +%s.%N)" >> {log}' TERM
while true; do echo "beat $COTENANT_ATTEMPT $(date +%s.%N)" >> {log}; sleep 0.1; done
"""


def test_a_preempted_job_gets_sigterm_then_sigkill_after_the_grace_and_runs_again(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """B borrows the node; A's contract reclaims it with a 2 s grace period. B's job traps
    SIGTERM and keeps going, so only SIGKILL at the deadline stops it; it is requeued and
    its second attempt runs once A's job is done."""
    log = tmp_path / "b1.log"
    ev: list[dict[str, Any]] = []
    eng = live_engine(ONE_NODE, backend, [contract("A", 8, grace=2)], ("B",), "contract", ev)
    submit_command(eng, "b1", 8, TRAPS_TERM.format(log=log), duration_s=30)
    drive(eng, lambda: log.exists())
    submit_command(eng, "a1", 8, "sleep 1", tenant="A")

    drive(eng, finished(eng))

    # SIGKILL can cut the last line of a run short ("beat 1" with no time): whole lines only
    lines = [p for p in (line.split() for line in log.read_text().splitlines()) if len(p) == 3]
    term = [float(t) for kind, att, t in lines if kind == "term" and att == "1"]
    beats = [float(t) for kind, att, t in lines if kind == "beat" and att == "1"]
    assert len(term) == 1, lines
    assert 1.0 <= beats[-1] - term[0] <= 3.0  # it kept running through the grace period
    assert [att for kind, att, _ in lines if kind == "start"] == ["1", "2"]
    kinds = [(e["event"], e["job"]) for e in ev if e["event"] in ("place", "reclaim", "preempt")]
    assert kinds == [
        ("place", "b1"),
        ("reclaim", "b1"),
        ("preempt", "b1"),
        ("place", "a1"),
        ("place", "b1"),
    ]
    assert eng.jobs["b1"].state is JobState.COMPLETED and eng.jobs["b1"].preemptions == 1
    assert not Path(str(backend.log_paths("b1", 1)[0])[: -len(".out")] + ".exit").exists()


def test_a_job_that_exits_on_the_cue_is_requeued_not_completed(
    backend: LocalBackend, tmp_path: Path
) -> None:
    """Exiting after SIGTERM means "checkpointed, yielding": the job is preempted at the
    deadline and runs again, rather than counting as done."""
    ev: list[dict[str, Any]] = []
    eng = live_engine(ONE_NODE, backend, [contract("A", 8, grace=2)], ("B",), "contract", ev)
    submit_command(
        eng,
        "b1",
        8,
        '[ "$COTENANT_ATTEMPT" = 2 ] && exit 0; trap "exit 0" TERM; while true; do sleep 0.1; done',
        duration_s=30,
    )
    drive(eng, lambda: eng.jobs["b1"].state is JobState.RUNNING)
    submit_command(eng, "a1", 8, "sleep 1", tenant="A")

    drive(eng, finished(eng))

    assert [e["event"] for e in ev if e.get("job") == "b1" and e["event"] != "submit"] == [
        "place",
        "reclaim",
        "preempt",
        "place",
        "end",
    ]
    assert eng.jobs["b1"].state is JobState.COMPLETED


# -- restart adoption ----------------------------------------------------------------------------

OWNER = textwrap.dedent("""
    import sys, time
    from builders import cluster, job
    from cotenant.backends.local import LocalBackend
    from cotenant.engine.clock import WallClock
    from cotenant.engine.core import Engine
    from cotenant.scheduler.policies import get_policy

    topo = cluster(nodes=1, per_rack=1, racks_per_block=1)
    backend = LocalBackend(topo, sys.argv[1])
    eng = Engine(topo, [], get_policy("fifo-backfill"), backend, WallClock(),
                 restart_cost_s=0, checkpoint_write_s=0, tenants=["B"])
    for name, gpus, cmd in [("ok", 2, "sleep 1; echo done"), ("bad", 2, "sleep 1; exit 7"),
                            ("long", 3, "sleep 5; echo long-done")]:
        eng.submit(job(name, "B", gpus, duration_s=5, submit_s=eng.clock.now(),
                       command=("sh", "-c", cmd)))
    eng.run(eng.clock.now() + 60,
            progress=lambda t: print("running", len(backend.runs()), flush=True))
""")


def test_a_new_backend_adopts_runs_after_the_server_is_killed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    tests_dir = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests_dir), os.environ.get("PYTHONPATH", "")]),
    }
    owner = subprocess.Popen(
        [sys.executable, str(script), str(state)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        for line in owner.stdout:
            if line.strip() == "running 3":
                break
        else:
            pytest.fail(f"the owner never ran its jobs: {owner.stderr and owner.stderr.read()}")
        with pytest.raises(Conflict, match="used by another local backend"):
            LocalBackend(ONE_NODE, state)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
    recorded = {r["job_id"]: r for r in json.loads((state / "runs.json").read_text())["runs"]}
    assert sorted(recorded) == ["bad", "long", "ok"]

    # "ok" and "bad" end while no server watches them: about a second after they started,
    # later on a busy machine, so wait for their wrappers' exit records (then a second
    # more, so that their ends are before the poll's second).
    exits = [state / "jobs" / j / "attempt-1.exit" for j in ("ok", "bad")]
    deadline = time.monotonic() + 20
    while not all(p.exists() for p in exits) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    b = LocalBackend(ONE_NODE, state)
    try:
        adopted = {r.job_id: r for r in b.runs()}
        assert sorted(adopted) == ["bad", "long", "ok"]
        assert all(r.adopted and r.pid == recorded[r.job_id]["pid"] for r in adopted.values())

        now = int(time.time())
        first = [e for e in b.poll(now) if isinstance(e, JobEnded)]
        assert sorted((e.job_id, e.attempt, e.exit_code) for e in first) == [
            ("bad", 1, 7),
            ("ok", 1, 0),
        ]
        # Ended while nobody watched: the end is the wrapper's record, not the time seen.
        assert all(recorded[e.job_id]["start_s"] <= e.end_s < now for e in first)
        assert [r.job_id for r in b.runs()] == ["long"]
        os.kill(recorded["long"]["pid"], 0)  # still running, not restarted
        # A restored engine starts its running job again: the backend re-attaches to it.
        b.start(start_request("long", 3, ONE_NODE, now, "echo launched-twice"))
        assert [(r.job_id, r.pid) for r in b.runs()] == [("long", recorded["long"]["pid"])]

        # Its GPUs stay held: a new job on the node gets the indices nobody holds.
        long_ids = set(adopted["long"].gpu_ids[0])
        b.start(start_request("fresh", 5, ONE_NODE, now, 'echo "$CUDA_VISIBLE_DEVICES"'))
        b.start(start_request("too-many", 1, ONE_NODE, now, "true"))

        ended: list[JobEnded] = []
        deadline = time.monotonic() + 15
        while len(ended) < 3 and time.monotonic() < deadline:
            ended += [e for e in b.poll(int(time.time())) if isinstance(e, JobEnded)]
            time.sleep(0.2)
        codes = {e.job_id: e.exit_code for e in ended}
        assert codes == {"long": 0, "fresh": 0, "too-many": EXIT_NOT_STARTED}
        fresh_ids = set(map(int, b.log_paths("fresh", 1)[0].read_text().strip().split(",")))
        assert not fresh_ids & long_ids and len(fresh_ids) == 5
        assert b.log_paths("long", 1)[0].read_text() == "long-done\n"
        assert json.loads((state / "runs.json").read_text())["runs"] == []
    finally:
        b.close()


def start_request(job_id: str, gpus: int, topo: Topology, now: int, command: str) -> StartRequest:
    spec: JobSpec = job(
        job_id, "B", gpus, duration_s=1, submit_s=now, command=("sh", "-c", command)
    )
    return StartRequest(spec, 1, Placement((0,), (gpus,)), (topo.node_names[0],), now, 0, 0)


# -- the registry ----------------------------------------------------------------------------


def test_backends_are_chosen_by_name(tmp_path: Path) -> None:
    assert backend_names() == ["local", "sim", "slurm"]
    b = get_backend("local", topo=ONE_NODE, state_dir=tmp_path / "s")
    assert b.name == "local"
    assert isinstance(b, LocalBackend)
    b.close()


@pytest.mark.parametrize(
    ("name", "settings", "field", "words"),
    [
        pytest.param("kubernetes", {}, "backend", "valid: local, sim, slurm", id="unknown-name"),
        pytest.param("local", {"topo": ONE_NODE}, "backend.state_dir", "needs", id="missing"),
        pytest.param("sim", {"speed": 2}, "backend.speed", "takes no setting", id="unknown-key"),
    ],
)
def test_a_bad_backend_choice_names_the_fix(
    name: str, settings: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as err:
        get_backend(name, **settings)

    assert err.value.field == field
    assert words in err.value.problem
