"""The local backend: each placed job runs as real processes on this host.

One process group per job (a new session), started under a tiny wrapper
(``cotenant.backends.local_wrapper``) that writes the command's exit status to a
file, so the status outlives the server. The job sees the GPU indices it was given
in ``CUDA_VISIBLE_DEVICES``; a host without GPUs declares virtual nodes of N virtual
GPUs (the cluster spec), and a per-node index allocator keeps two jobs on one node
on disjoint indices. ``checkpoint()`` sends SIGTERM to the group (the cue to write a
checkpoint); ``stop()`` sends SIGKILL (the engine calls it when the grace period is
over). Exit statuses become ``JobEnded``.

Every started run is recorded in ``<state_dir>/runs.json`` (written atomically), so a
new backend on the same directory, after the server was killed, adopts the runs
still going (it watches them by pid) and collects the statuses of those that ended
while it was down. Layout of the state directory::

    lock                      held (flock) by the one backend using the directory
    runs.json                 the runs started and not yet reported
    jobs/<job>/checkpoint/    COTENANT_CHECKPOINT_DIR, kept across attempts (and
                              COTENANT_PREVIOUS_CHECKPOINT_DIR of the jobs that wait for it)
    jobs/<job>/attempt-N.out  stdout (and .err, .pid, .exit) of attempt N
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cotenant.backends.base import BackendEvent, JobEnded, StartRequest
from cotenant.backends.local_wrapper import proc_start_ticks
from cotenant.cluster.topology import Topology
from cotenant.model.errors import Conflict, SpecError

EXIT_LOST = -1  # the run vanished and left no exit status
EXIT_NOT_STARTED = -2  # the run could not be launched (see its .err file)
_STATE_VERSION = 1
_START_GRACE_S = 10.0  # a recorded run with no pid yet may still be starting


# -- shared with the Slurm backend -------------------------------------------------------------
class NoCommand(ValueError):
    """A job without a command (a simulated one) was handed to a real backend."""


def job_command(req: StartRequest) -> tuple[str, ...]:
    """The job's command. A job without one is the twin's (a duration, nothing to run):
    a real backend never runs it, not even as a stand-in ``sleep``."""
    if req.spec.command:
        return req.spec.command
    raise NoCommand(
        "the job has no command (a simulated job); a real backend runs only jobs submitted with one"
    )


def job_env(req: StartRequest, checkpoint_dir: Path | str) -> dict[str, str]:
    """What a job learns about itself from its environment. A job that waited for others
    (a pipeline's stage) also gets their checkpoint directories, which sit beside its own
    (``jobs/<job>/checkpoint``): ``COTENANT_PREVIOUS_CHECKPOINT_DIR``, the first job it
    names (a stage's previous stage), and ``COTENANT_DEPENDENCY_CHECKPOINT_DIRS``, all of
    them in the order named, separated by ``os.pathsep``."""
    env = {
        "COTENANT_JOB_ID": req.spec.id,
        "COTENANT_TENANT": req.spec.tenant,
        "COTENANT_ATTEMPT": str(req.attempt),
        "COTENANT_CHECKPOINT_DIR": str(checkpoint_dir),
        "COTENANT_WORK_SAVED_S": str(req.work_saved_s),
        "COTENANT_NODES": ",".join(req.node_names),
        "COTENANT_GPUS": str(req.placement.total_gpus),
    }
    waited = list(dict.fromkeys(j for d in req.spec.after for j in d.jobs))
    if waited:
        jobs_dir = Path(checkpoint_dir).parent.parent
        dirs = [str(jobs_dir / safe_name(j) / "checkpoint") for j in waited]
        env["COTENANT_PREVIOUS_CHECKPOINT_DIR"] = dirs[0]
        env["COTENANT_DEPENDENCY_CHECKPOINT_DIRS"] = os.pathsep.join(dirs)
    return env


def safe_name(job_id: str) -> str:
    """A file name for a job id: readable, and distinct for distinct ids."""
    s = re.sub(r"[^A-Za-z0-9._-]", "_", job_id)[:80]
    if s != job_id or s in ("", ".", ".."):
        s += "-" + hashlib.sha1(job_id.encode()).hexdigest()[:8]
    return s


def not_started(
    state_dir: Path, req: StartRequest, why: str, code: int = EXIT_NOT_STARTED
) -> JobEnded:
    """The report of a run that was not started, its cause written to the run's ``.err``
    (``EXIT_NOT_RUN``, from ``backends.base``: the engine queues the job again)."""
    logging.getLogger("cotenant.backends").warning(
        "job %s attempt %d not started: %s", req.spec.id, req.attempt, why
    )
    job_dir = state_dir / "jobs" / safe_name(req.spec.id)
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / f"attempt-{req.attempt}.err").write_text(f"cotenant: not started: {why}\n")
    return JobEnded(req.spec.id, req.attempt, req.start_s, code, why)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# -- GPU indices ----------------------------------------------------------------------------------
class GpuIndices:
    """Which GPU indices are free on each node; a job takes the lowest free ones."""

    def __init__(self, capacity: Mapping[str, int]) -> None:
        self._free: dict[str, list[int]] = {n: list(range(c)) for n, c in capacity.items()}

    def take(self, node: str, count: int) -> tuple[int, ...] | None:
        free = self._free.get(node)
        if free is None or len(free) < count:
            return None
        got, self._free[node] = tuple(free[:count]), free[count:]
        return got

    def give(self, node: str, ids: Iterable[int]) -> None:
        if node in self._free:
            self._free[node] = sorted({*self._free[node], *ids})

    def hold(self, node: str, ids: Iterable[int]) -> bool:
        """Mark indices held (an adopted run's); False if one of them is not free."""
        free = self._free.get(node)
        want = set(ids)
        if free is None or not want <= set(free):
            return False
        self._free[node] = [i for i in free if i not in want]
        return True

    def free(self, node: str) -> tuple[int, ...]:
        return tuple(self._free.get(node, ()))


# -- one run --------------------------------------------------------------------------------------
@dataclass(slots=True)
class LocalRun:
    """One started run, as recorded in ``runs.json``."""

    job_id: str
    attempt: int
    start_s: int  # engine time
    started_wall: float
    nodes: tuple[str, ...]
    gpu_ids: tuple[tuple[int, ...], ...]  # per node, in the order of ``nodes``
    stem: str  # path of this run's files without the suffix
    pid: int | None = None  # the wrapper's; also the process group id
    proc_start: int | None = None  # guards against a reused pid
    signalled_s: int | None = None  # when checkpoint() sent SIGTERM
    adopted: bool = field(default=False, compare=False)

    @property
    def stdout(self) -> Path:
        return Path(self.stem + ".out")

    @property
    def stderr(self) -> Path:
        return Path(self.stem + ".err")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["adopted"]
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LocalRun:
        return cls(
            job_id=str(d["job_id"]),
            attempt=int(d["attempt"]),
            start_s=int(d["start_s"]),
            started_wall=float(d["started_wall"]),
            nodes=tuple(d["nodes"]),
            gpu_ids=tuple(tuple(int(i) for i in ids) for ids in d["gpu_ids"]),
            stem=str(d["stem"]),
            pid=None if d.get("pid") is None else int(d["pid"]),
            proc_start=None if d.get("proc_start") is None else int(d["proc_start"]),
            signalled_s=None if d.get("signalled_s") is None else int(d["signalled_s"]),
            adopted=True,
        )


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of a process, or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat.rsplit(")", 1)[1].split()
    return rest[0], int(rest[19])


def _alive(pid: int, proc_start: int | None) -> bool:
    if not Path("/proc/self/stat").exists():  # no procfs: the best we can do
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    st = _proc_state(pid)
    if st is None or st[0] in "ZXx":
        return False
    return proc_start is None or st[1] == proc_start


def _read_exit(stem: str) -> tuple[int, float] | None:
    try:
        status, wall = Path(stem + ".exit").read_text().split()
    except (OSError, ValueError):
        return None
    return int(status), float(wall)


def _read_pid(stem: str) -> tuple[int, int | None] | None:
    try:
        pid, ticks = Path(stem + ".pid").read_text().split()
    except (OSError, ValueError):
        return None
    return int(pid), (int(ticks) or None)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# -- the backend ----------------------------------------------------------------------------------
class LocalBackend:
    name = "local"

    def __init__(
        self,
        topo: Topology,
        state_dir: str | Path,
        *,
        poll_interval_s: int = 1,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        if poll_interval_s < 1:
            raise SpecError("backend.poll_interval_s", f"must be >= 1, got {poll_interval_s}")
        self.state_dir = Path(state_dir).resolve()  # jobs run in their own directories
        self.poll_interval_s = poll_interval_s
        self.env = dict(env or {})
        self.python = python
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = self._lock()
        self._gpus = GpuIndices(
            {n: int(g) for n, g in zip(topo.node_names, topo.node_gpus, strict=True)}
        )
        self._runs: dict[str, LocalRun] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # runs this instance started
        self._reap: list[subprocess.Popen[bytes]] = []  # stopped, not yet reaped
        self._yielded: dict[str, LocalRun] = {}  # ended after checkpoint(), awaiting stop()
        self._events: list[BackendEvent] = []  # launch failures, for the next poll
        self._last_poll_s: int | None = None
        self._last_poll_wall: float | None = None
        self._adopt()

    # -- the Backend operations ------------------------------------------------------------
    def start(self, req: StartRequest) -> None:
        job_id = req.spec.id
        old = self._runs.get(job_id)
        if old is not None and old.adopted and old.attempt == req.attempt:
            old.start_s = req.start_s  # a restored engine restarting what still runs here:
            return  # re-attach to it
        if old is not None:  # an earlier attempt still tracked: it must not run on
            self.stop(job_id, req.start_s)
        job_dir = self.state_dir / "jobs" / safe_name(job_id)
        ckpt = job_dir / "checkpoint"
        ckpt.mkdir(parents=True, exist_ok=True)
        stem = str(job_dir / f"attempt-{req.attempt}")
        for suffix in (".exit", ".pid"):  # left by an earlier server that reused the id
            Path(stem + suffix).unlink(missing_ok=True)
        try:
            command = job_command(req)
        except NoCommand as e:
            self._fail(req, stem, str(e))
            return
        gpu_ids: list[tuple[int, ...]] = []
        for node, count in zip(req.node_names, req.placement.gpus, strict=True):
            ids = self._gpus.take(node, count)
            if ids is None:
                for n, got in zip(req.node_names, gpu_ids, strict=False):
                    self._gpus.give(n, got)
                self._fail(
                    req,
                    stem,
                    f"node {node!r} has no {count} free GPU indices "
                    f"(free: {self._gpus.free(node)})",
                )
                return
            gpu_ids.append(ids)
        run = LocalRun(
            job_id,
            req.attempt,
            req.start_s,
            time.time(),
            tuple(req.node_names),
            tuple(gpu_ids),
            stem,
        )
        self._runs[job_id] = run
        self._save()
        env = {
            **os.environ,
            **self.env,
            **job_env(req, ckpt),
            "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpu_ids[0])),
            "COTENANT_GPU_IDS": " ".join(
                f"{n}:{','.join(map(str, ids))}" for n, ids in zip(run.nodes, gpu_ids, strict=True)
            ),
        }
        argv = [self.python, "-m", "cotenant.backends.local_wrapper", stem, "--", *command]
        try:
            with open(stem + ".out", "ab") as out, open(stem + ".err", "ab") as err:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=job_dir,
                    env=env,
                    start_new_session=True,
                )
        except OSError as e:
            del self._runs[job_id]
            self._release(run)
            self._fail(req, stem, f"cannot start the wrapper: {e}")
            return
        run.pid, run.proc_start = proc.pid, proc_start_ticks(proc.pid)
        self._procs[job_id] = proc
        self._save()

    def checkpoint(self, job_id: str, now: int) -> None:
        run = self._runs.get(job_id)
        if run is None or run.signalled_s is not None:
            return
        run.signalled_s = now
        if self._running(run):
            _killpg(run.pid or 0, signal.SIGTERM)
        self._save()

    def stop(self, job_id: str, now: int) -> None:
        self._yielded.pop(job_id, None)
        run = self._runs.pop(job_id, None)
        if run is None:
            return
        if run.pid is not None and (self._running(run) or job_id in self._procs):
            _killpg(run.pid, signal.SIGKILL)
        proc = self._procs.pop(job_id, None)
        if proc is not None:
            self._reap.append(proc)
        self._release(run)
        self._save()

    def poll(self, now: int) -> list[BackendEvent]:
        wall = time.time()
        events, self._events = self._events, []
        self._reap = [p for p in self._reap if p.poll() is None]
        ended = False
        for job_id, run in list(self._runs.items()):
            status = self._ended(run, wall)
            if status is None:
                continue
            code, end_wall = status
            ended = True
            del self._runs[job_id]
            self._procs.pop(job_id, None)
            if run.pid is not None:
                _killpg(run.pid, signal.SIGKILL)  # whatever the command left behind
            self._release(run)
            if run.signalled_s is not None:
                # It ended after the checkpoint cue: it yielded. The engine preempts and
                # requeues it at the deadline; stop() then finds nothing to kill.
                self._yielded[job_id] = run
                continue
            if self._last_poll_wall is not None and end_wall >= self._last_poll_wall:
                end_s = now  # ended since the last poll: seen now
            else:  # ended while no backend watched: map its wall end onto engine time
                end_s = int(end_wall + (now - wall))
            events.append(JobEnded(job_id, run.attempt, max(run.start_s, min(now, end_s)), code))
        if ended:
            self._save()
        self._last_poll_s, self._last_poll_wall = now, wall
        return events

    def next_event_time(self) -> int | None:
        if not (self._runs or self._events or self._reap):
            return None
        if self._last_poll_s is None:
            return 0  # as soon as possible
        return self._last_poll_s + self.poll_interval_s

    # -- views and lifecycle -----------------------------------------------------------------
    def runs(self) -> list[LocalRun]:
        """The runs being watched (started here or adopted), by job id."""
        return [self._runs[j] for j in sorted(self._runs)]

    def log_paths(self, job_id: str, attempt: int) -> tuple[Path, Path]:
        stem = self.state_dir / "jobs" / safe_name(job_id) / f"attempt-{attempt}"
        return Path(f"{stem}.out"), Path(f"{stem}.err")

    def checkpoint_dir(self, job_id: str) -> Path:
        return self.state_dir / "jobs" / safe_name(job_id) / "checkpoint"

    def close(self) -> None:
        """Let go of the state directory; the runs go on and the next backend adopts them."""
        for p in self._reap:
            p.poll()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- internals ---------------------------------------------------------------------------
    def _lock(self) -> int:
        fd = os.open(self.state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise Conflict(
                f"{self.state_dir} is used by another local backend (pid {holder}); "
                "give each server its own state directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _adopt(self) -> None:
        path = self.state_dir / "runs.json"
        if not path.exists():
            return
        data = json.loads(path.read_text())
        if data.get("version") != _STATE_VERSION:
            raise SpecError(
                "backend.state_dir",
                f"{path} has version {data.get('version')}, this cotenant reads {_STATE_VERSION}",
            )
        for d in data["runs"]:
            run = LocalRun.from_json(d)
            if run.pid is None and (found := _read_pid(run.stem)) is not None:
                run.pid, run.proc_start = found
            for node, ids in zip(run.nodes, run.gpu_ids, strict=True):
                self._gpus.hold(node, ids)
            self._runs[run.job_id] = run

    def _save(self) -> None:
        runs = [self._runs[j].to_json() for j in sorted(self._runs)]
        write_json_atomic(self.state_dir / "runs.json", {"version": _STATE_VERSION, "runs": runs})

    def _release(self, run: LocalRun) -> None:
        for node, ids in zip(run.nodes, run.gpu_ids, strict=True):
            self._gpus.give(node, ids)
        run.gpu_ids = tuple(() for _ in run.nodes)

    def _running(self, run: LocalRun) -> bool:
        proc = self._procs.get(run.job_id)
        if proc is not None:
            return proc.poll() is None
        return run.pid is not None and _alive(run.pid, run.proc_start)

    def _ended(self, run: LocalRun, wall: float) -> tuple[int, float] | None:
        """(exit status, wall end) once the run has ended; None while it runs."""
        proc = self._procs.get(run.job_id)
        if proc is not None:
            rc = proc.poll()
            if rc is None:
                return None
        else:
            if run.pid is None and (found := _read_pid(run.stem)) is not None:
                run.pid, run.proc_start = found
            if run.pid is None:
                if wall - run.started_wall < _START_GRACE_S and _read_exit(run.stem) is None:
                    return None  # its wrapper may not have written the pid file yet
            elif _alive(run.pid, run.proc_start):
                return None
        status = _read_exit(run.stem)
        if status is not None:
            return status
        if proc is not None and proc.returncode is not None:  # the wrapper itself was killed
            rc = proc.returncode
            return (128 - rc if rc < 0 else rc), wall
        return EXIT_LOST, wall

    def _fail(self, req: StartRequest, stem: str, why: str) -> None:
        with open(stem + ".err", "a") as f:
            f.write(f"cotenant: attempt {req.attempt} not started: {why}\n")
        self._events.append(JobEnded(req.spec.id, req.attempt, req.start_s, EXIT_NOT_STARTED))
