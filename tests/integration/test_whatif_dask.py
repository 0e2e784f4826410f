"""A what-if study on a real Dask scheduler with two workers, each its own process on
127.0.0.1 (``dask scheduler`` / ``dask worker``, started and stopped here, on free
ports): the same numbers as on a LocalCluster and as a serial run. Tiny runs
(small-lease, one day) so the default test run stays short."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cotenant.whatif.cache import RunCache
from cotenant.whatif.runner import Plan, execute
from cotenant.whatif.summary import summarise
from cotenant.whatif.variants import grid, parse_vary, read_base
from harness import free_ports

pytest.importorskip("distributed", reason="Dask's distributed is not installed")

SCHEDULER = ["dask", "scheduler", "--host", "127.0.0.1"]
WORKER = ["dask", "worker", "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny"]
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dask scheduler`` and two ``dask worker`` processes; the address."""
    if shutil.which("dask") is None:
        pytest.skip("the dask command is not on PATH")
    port, dash, wd1, wd2 = free_ports(4)
    logs = tmp_path_factory.mktemp("dask")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    addr = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    cmds = [
        [*SCHEDULER, "--port", str(port), "--dashboard-address", f"127.0.0.1:{dash}"],
        *([*WORKER, addr, "--dashboard-address", f"127.0.0.1:{d}"] for d in (wd1, wd2)),
    ]
    try:
        for i, cmd in enumerate(cmds):
            with (logs / f"p{i}.log").open("wb") as out:  # the child keeps its own copy
                procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT))
            if i == 0:
                time.sleep(0.5)
        from distributed import Client

        with Client(addr, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _plan() -> Plan:
    base = read_base("small-lease")
    axes = [
        parse_vary("run.failure_scale=1,30"),
        parse_vary("run.notice.lessee-lab=none,2026-10-01"),
    ]
    return Plan(base, tuple(grid(axes)), (1, 2, 3), 1.0)


def _numbers(out: object) -> dict[str, object]:
    results = out.results  # type: ignore[attr-defined]
    return {k: (r["variant"], r["seed"], r["metrics"]) for k, r in results.items()}


@pytest.mark.slow
def test_a_study_on_a_remote_scheduler_matches_local_and_serial(
    scheduler: str, tmp_path: Path
) -> None:
    plan = _plan()
    tasks = plan.tasks()
    remote = execute(tasks, RunCache(tmp_path / "remote"), scheduler=scheduler)
    assert remote.ran == len(tasks) == 12 and remote.workers == 2 and not remote.cancelled
    local = execute(tasks, RunCache(tmp_path / "local"), workers=2)
    serial = execute(tasks, RunCache(None), serial=True)
    assert _numbers(remote) == _numbers(local) == _numbers(serial)
    a, b = (summarise(plan, o).to_json() for o in (remote, serial))
    assert a == b
    # the runs differ between seeds and variants: the comparison is not vacuous
    values = {str(m["metrics"]) for m in remote.results.values()}
    assert len(values) > 6
    # both worker processes ran some of it, neither of them this one
    pids = {r["pid"] for r in remote.results.values()}
    assert len(pids) == 2 and os.getpid() not in pids


@pytest.mark.slow
def test_cancelling_on_dask_keeps_finished_runs(scheduler: str, tmp_path: Path) -> None:
    plan = _plan()

    def stop_after_one(done: int, total: int) -> None:
        if done >= 1:
            raise KeyboardInterrupt

    out = execute(plan.tasks(), RunCache(tmp_path), scheduler=scheduler, progress=stop_after_one)
    assert out.cancelled and 1 <= out.ran < 12
    kept = len(list(tmp_path.rglob("*.json")))
    assert kept == out.ran
    rest = execute(plan.tasks(), RunCache(tmp_path), scheduler=scheduler)
    assert rest.cached == kept and rest.ran == 12 - kept


@pytest.mark.slow
def test_ctrl_c_on_the_command_cancels_cleanly_and_keeps_finished_runs(tmp_path: Path) -> None:
    """What a terminal's Ctrl-C does: SIGINT to the whole process group (the command and
    its local cluster's workers). The command exits 130 within seconds, says how many
    runs it kept, prints no traceback, and leaves no process behind; the runs it
    finished are in the cache."""
    import glob
    import signal

    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = ["cotenant", "whatif", "small-lease", "--vary", "run.failure_scale=0,1"]
    cmd += ["--seeds", "30", "--workers", "2", "--cache", str(cache)]
    p = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 180
    while len(glob.glob(f"{cache}/*/*.json")) < 3 and time.monotonic() < deadline:
        assert p.poll() is None, p.communicate()
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    kept = len(glob.glob(f"{cache}/*/*.json"))
    assert 3 <= kept < 60
    assert f"cancelled: {kept} of 60 runs finished and are cached" in err
    left = ""
    for _ in range(40):  # multiprocessing's resource tracker goes once its pipe closes
        ps = ["ps", "-o", "pid=,args=", "--sid", str(p.pid)]
        left = subprocess.run(ps, capture_output=True, text=True).stdout.strip()
        if not left:
            break
        time.sleep(0.5)
    assert left == "", left


def test_an_unreachable_scheduler_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cotenant.cli.main import run

    (port,) = free_ports(1)  # nothing listens there
    args = ["whatif", "small-lease", "--vary", "run.failure_scale=0,1", "--seeds", "1"]
    args += ["--scheduler", f"tcp://127.0.0.1:{port}", "--cache", str(tmp_path)]
    assert run(args) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and err[0].startswith("error: --scheduler: cannot reach"), err
