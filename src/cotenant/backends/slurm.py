"""The Slurm backend: cotenant stays the scheduler, Slurm runs the work.

A placed job becomes one Slurm batch job pinned to exactly the nodes and GPU counts
cotenant chose (``--nodelist``, ``--nodes``, ``--gres=gpu:N``), with cotenant's id and
attempt in its comment (``cotenant:<job id>:<attempt>``) and ``--no-requeue`` (cotenant
requeues, not Slurm). A gang whose nodes take different GPU counts (8 + 4) is a
heterogeneous job, one component per count: exact, but Slurm starts heterogeneous jobs
only from its backfill scheduler (``bf_interval``, 30 s by default). ``--exclusive`` is
added, by default, when the job fills every node it is on (see ``exclusive``).

The job's command runs as the batch script (on the first node; multi-node programs
launch their ranks with ``srun``), with the ``COTENANT_*`` variables the local backend
sets. ``checkpoint()`` signals the job (``scancel --signal=TERM --full``: the batch
shell, its children and every step); ``stop()`` cancels it (``scancel``: SIGTERM, then
SIGKILL after Slurm's KillWait). ``poll()`` reads ``squeue --json`` (``sacct`` for
jobs Slurm no longer holds in memory) into ``JobEnded`` and ``sinfo --json`` into
``NodeHealthChanged`` (DOWN -> down, DRAIN -> draining). Slurm's own start and end
times are kept per run (``accounting()``) so they can be compared with the ledger.
The comment is the whole record: a new backend adopts the Slurm jobs it finds.
``backends/slurm_cli.py`` runs the commands and parses what they print.

Several clusters: each backend drives the one its ``slurm_conf`` names (and checks its
``cluster`` name); a controller that stops answering is found by ``scontrol ping`` (a
refused connection answers at once): its nodes are reported draining at once (nothing
new is placed there; a start that reaches it anyway is handed back, ``EXIT_NOT_RUN``, and
the engine queues the job again) and, after ``controller_timeout_s``, down
(``backends/slurm_clusters.py`` puts several under one engine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cotenant.backends.base import (
    EXIT_NOT_RUN,
    BackendEvent,
    JobEnded,
    NodeHealthChanged,
    StartRequest,
)
from cotenant.backends.local import (
    EXIT_LOST,
    EXIT_NOT_STARTED,
    not_started,
    safe_name,
)
from cotenant.backends.slurm_cli import (
    COMMENT_PREFIX,
    TERMINAL,
    SlurmError,
    SlurmJob,
    batch_script,
    comment_id,
    exit_status,
    expand_hostlist,
    owns,
    parse_sacct,
    parse_sinfo_health,
    parse_squeue,
    read_cluster_spec,
)
from cotenant.backends.slurm_controller import SlurmController
from cotenant.cluster.state import Health
from cotenant.cluster.topology import Topology
from cotenant.model.errors import SpecError

__all__ = [
    "COMMENT_PREFIX",
    "TERMINAL",
    "Exclusive",
    "SlurmBackend",
    "SlurmError",
    "SlurmJob",
    "SlurmRun",
    "exit_status",
    "expand_hostlist",
    "parse_sinfo_health",
    "parse_squeue",
    "read_cluster_spec",
]
Exclusive = Literal["never", "full-nodes", "always"]
log = logging.getLogger("cotenant.backends.slurm")


# -- what cotenant keeps ---------------------------------------------------------------------
@dataclass(slots=True)
class SlurmRun:
    """One cotenant run in Slurm: what cotenant asked for and what Slurm reported."""

    job_id: str
    attempt: int
    slurm_id: int
    nodes: tuple[str, ...]  # as placed
    gpus: tuple[int, ...]  # per placed node
    submit_s: int  # engine time of the sbatch
    submitted_wall: float = 0.0
    state: str = "PENDING"
    slurm_nodes: tuple[str, ...] = ()
    slurm_gpus: tuple[int, ...] = ()  # per Slurm node, seen while running
    slurm_start: int | None = None  # Unix seconds, Slurm's StartTime
    slurm_end: int | None = None
    started_s: int | None = None  # Slurm's start and end on the engine's clock
    ended_s: int | None = None
    end_s: int | None = None  # engine time of the JobEnded report
    exit_code: int | None = None
    signalled_s: int | None = None
    signal_pending: bool = False  # checkpoint() came while Slurm had not started it
    stopped: bool = False  # stop() cancelled it; no JobEnded is due
    cancel_due: bool = False  # stopped while scancel could not reach the controller
    node_failed: int = 0  # 1: its node was reported down for it; 2: and one poll has passed
    missing: int = 0  # polls in which neither squeue nor sacct knew it
    adopted: bool = field(default=False, compare=False)


# -- the backend ----------------------------------------------------------------------------------
class SlurmBackend:
    name = "slurm"

    def __init__(
        self,
        topo: Topology,
        state_dir: str | Path,
        *,
        env: Mapping[str, str] | None = None,
        slurm_conf: str | Path | None = None,
        cluster: str | None = None,
        label: str | None = None,
        partition: str | None = None,
        exclusive: Exclusive = "full-nodes",
        extra_args: Sequence[str] = (),
        poll_interval_s: int = 1,
        controller_timeout_s: int = 10,
        comment_prefix: str = COMMENT_PREFIX,
        adopt: bool = True,
    ) -> None:
        """``state_dir`` holds each run's output and checkpoint directory; on a real
        cluster it must be on a filesystem the nodes share. ``env`` is the environment of
        the Slurm commands (e.g. ``SLURM_CONF``; None: this process's). ``exclusive``:
        ``full-nodes`` adds ``--exclusive`` when a job takes every GPU of its nodes;
        ``always`` to every job (then Slurm will not put two of cotenant's jobs on one
        node, so cotenant's packing and Slurm's disagree); ``never``. ``extra_args`` go
        to every sbatch (account, QoS, CPUs or memory per GPU).

        Several clusters: ``slurm_conf`` points every command at one cluster's
        configuration (``SLURM_CONF``); ``cluster``, if given, must be that cluster's
        ``ClusterName`` (checked when the controller answers), so a backend never drives
        another provider's cluster by mistake. A controller that does not answer for
        ``controller_timeout_s`` is lost: every node is reported down, so the engine
        requeues the work that was there (see ``poll``). ``label`` names the cluster in
        messages (default: ``cluster``, else the configuration file). ``comment_prefix``
        marks this server's jobs (a store's own prefix keeps two stores' jobs on one
        cluster apart: each adopts, and cancels as strays, only its own)."""
        if exclusive not in ("never", "full-nodes", "always"):
            raise SpecError(
                "backend.exclusive", f"must be never, full-nodes or always, got {exclusive!r}"
            )
        if poll_interval_s < 1:
            raise SpecError("backend.poll_interval_s", f"must be >= 1, got {poll_interval_s}")
        self.ctl = SlurmController(env, slurm_conf, cluster, label, controller_timeout_s)
        if not comment_prefix.startswith(COMMENT_PREFIX) or not comment_prefix.endswith(":"):
            raise SpecError(
                "backend.comment_prefix", f"must be {COMMENT_PREFIX}...:, got {comment_prefix!r}"
            )
        self.prefix = comment_prefix
        self.topo = topo
        self.state_dir = Path(state_dir).resolve()  # jobs run in their own directories
        self.partition = partition
        self.exclusive = exclusive
        self.extra_args = tuple(extra_args)
        self.poll_interval_s = poll_interval_s
        self._index = {n: i for i, n in enumerate(topo.node_names)}
        self._capacity = {n: int(g) for n, g in zip(topo.node_names, topo.node_gpus, strict=True)}
        self._runs: dict[str, SlurmRun] = {}  # live, by cotenant job id
        self._closing: dict[int, SlurmRun] = {}  # stopped or yielded, until Slurm ends them
        self._done: list[SlurmRun] = []
        self._health: dict[str, Health] = {}  # last reported per node
        self._events: list[BackendEvent] = []  # submission failures, for the next poll
        self._last_poll_s: int | None = None
        self._last_poll_wall: float | None = None
        self._sacct: list[str] | None = None  # the sacct form that works here
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # (job, attempt) whose sbatch failed as the controller went away: Slurm may have
        # taken it all the same; cancelled when the controller answers again.
        self._unsure: dict[str, int] = {}
        self._adopt_due = False  # adopt when the controller first answers
        if self.ctl.answers():
            self.ctl.check_cluster()
            if adopt:
                self._adopt()
        else:
            self._events += self._silence(time.time())
            self._adopt_due = adopt

    @property
    def env(self) -> dict[str, str] | None:
        """The environment of the Slurm commands (None: this process's)."""
        return self.ctl.env

    # -- the Backend operations ------------------------------------------------------------
    def start(self, req: StartRequest) -> None:
        job_id = req.spec.id
        old = self._runs.get(job_id)
        if old is not None and old.adopted and old.attempt == req.attempt:
            old.submit_s = req.start_s  # a restored engine restarting what Slurm still
            return  # runs: re-attach to it
        if old is not None:  # an earlier attempt still tracked: it must not run on
            self.stop(job_id, req.start_s)
        if self.ctl.silent:  # (its nodes are draining: placed before that was seen)
            self._not_run(req, f"the Slurm controller of {self.ctl.name} does not answer")
            return
        self._submit(req)

    def _submit(self, req: StartRequest) -> None:
        job_id = req.spec.id
        job_dir = self.state_dir / "jobs" / safe_name(job_id)
        (job_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
        stem = job_dir / f"attempt-{req.attempt}"
        try:
            out = self._slurm(
                "sbatch",
                *self.sbatch_args(req, stem),
                stdin=batch_script(req, job_dir / "checkpoint"),
            )
            slurm_id = int(out.strip().split(";")[0])
            self._forget(slurm_id, req.start_s)
        except (SlurmError, ValueError) as e:
            if isinstance(e, SlurmError) and not self.ctl.answers():
                # The controller went away under the sbatch: not the job's fault. Slurm
                # may have taken it before it died: cancelled there when it answers.
                self._unsure[job_id] = req.attempt
                self._events += self._silence(time.time())
                self._not_run(req, f"the Slurm controller of {self.ctl.name} stopped answering")
                return
            log.warning("job %s attempt %d not submitted: %s", job_id, req.attempt, e)
            Path(f"{stem}.err").write_text(f"cotenant: not submitted to Slurm: {e}\n")
            self._events.append(JobEnded(job_id, req.attempt, req.start_s, EXIT_NOT_STARTED))
            return
        self._runs[job_id] = SlurmRun(
            job_id,
            req.attempt,
            slurm_id,
            tuple(req.node_names),
            tuple(req.placement.gpus),
            req.start_s,
            time.time(),
        )

    def _not_run(self, req: StartRequest, why: str) -> None:
        """The run was not started, through no fault of the job: the engine queues it
        again (``EXIT_NOT_RUN`` at the next poll), where the controller answers."""
        self._events.append(not_started(self.state_dir, req, why, EXIT_NOT_RUN))

    def checkpoint(self, job_id: str, now: int) -> None:
        run = self._runs.get(job_id)
        if run is None or run.signalled_s is not None:
            return
        run.signalled_s = now
        if self.ctl.silent or not self._signal(run):
            run.signal_pending = True  # not started in Slurm yet: signal it once it is

    def stop(self, job_id: str, now: int) -> None:
        run = self._runs.pop(job_id, None)
        if run is None:
            return
        run.stopped = True
        if run.state not in TERMINAL:
            run.cancel_due = True
            if not self.ctl.silent:
                self._cancel(run)
        self._closing[run.slurm_id] = run

    def poll(self, now: int) -> list[BackendEvent]:
        """What Slurm reports since the last poll. The controller is pinged first (a
        refused connection answers in milliseconds, where squeue retries for about
        MessageTimeout): while it is away nothing else is asked; its nodes drain at once
        (nothing new is placed there), and once it has been away ``controller_timeout_s``
        every node is reported down. When it answers again, sinfo's states are reported
        (nodes back), and runs stopped meanwhile are cancelled in Slurm at last."""
        wall = time.time()
        events, self._events = self._events, []
        if not self.ctl.answers() or not self.ctl.right_cluster():
            events += self._silence(wall)
            self._last_poll_s, self._last_poll_wall = now, wall
            return events
        self.ctl.answered(wall)
        if self._adopt_due:
            self._adopt_due = False
            self._cancel_strays()
        if self._unsure:
            self._cancel_unsure()
        try:
            jobs = parse_squeue(self._slurm("squeue", "--json"), self.prefix)
            health = parse_sinfo_health(self._slurm("sinfo", "--json"))
        except (SlurmError, ValueError, KeyError) as e:
            log.warning("cannot read Slurm's state: %s", e)
            return events
        for run in [r for r in self._closing.values() if r.cancel_due]:
            if owns(run.job_id, run.attempt, jobs.get(run.slurm_id), self.prefix):
                self._cancel(run)
            else:  # Slurm no longer holds it (ended, or forgotten in a controller crash)
                run.cancel_due = False
        for name, (h, reason) in sorted(health.items(), key=lambda kv: self._index.get(kv[0], -1)):
            if name in self._index and self._health.get(name, Health.HEALTHY) is not h:
                self._health[name] = h
                events.append(NodeHealthChanged(self._index[name], h, reason))
        ended: list[tuple[SlurmRun, SlurmJob]] = []
        for run in [*self._runs.values(), *self._closing.values()]:
            listed = jobs.get(run.slurm_id)
            mine = owns(run.job_id, run.attempt, listed, self.prefix)
            job = listed if mine else self._from_sacct(run, wall)
            if job is None:
                continue
            self._observe(run, job, now - wall)
            if run.signal_pending and job.state == "RUNNING" and self._signal(run):
                run.signal_pending = False
            if job.state not in TERMINAL:
                continue
            if run.slurm_id in self._closing:
                del self._closing[run.slurm_id]
                self._done.append(run)
            elif run.signalled_s is None:  # (else it yielded: preempted at the deadline)
                ended.append((run, job))
        events += self._node_failures(ended)
        for run, job in ended:
            if run.node_failed == 1 and run.job_id in self._runs:
                run.node_failed = 2  # the engine interrupts it (stop()) on the report
                continue
            self._runs.pop(run.job_id, None)
            end_s = self._engine_time(job.end, now, wall, run.submit_s)
            run.end_s, run.exit_code = end_s, job.exit_code
            self._done.append(run)
            events.append(JobEnded(run.job_id, run.attempt, end_s, job.exit_code))
        self._last_poll_s, self._last_poll_wall = now, wall
        return events

    def next_event_time(self) -> int | None:
        """Slurm is asked every ``poll_interval_s`` (node health changes without notice)."""
        if self._last_poll_s is None:
            return 0
        return self._last_poll_s + self.poll_interval_s

    def _node_failures(self, ended: list[tuple[SlurmRun, SlurmJob]]) -> list[BackendEvent]:
        """Nodes to report down for jobs Slurm ended with NODE_FAIL.

        A node set DOWN kills its jobs, and Slurm may return it to service at once
        (ReturnToService=2): sinfo may never show it down. The failed node is among the
        job's nodes on which nothing of cotenant's still runs (a failure kills all there);
        it is reported down now and, at the next poll, healthy again as sinfo shows it."""
        failed = [run for run, job in ended if job.state == "NODE_FAIL" and not run.node_failed]
        if not failed:
            return []
        busy = {n for r in self._runs.values() if r.state not in TERMINAL for n in r.slurm_nodes}
        out: list[BackendEvent] = []
        for run in failed:
            suspects = [
                n for n in run.slurm_nodes or run.nodes if n in self._index and n not in busy
            ]
            if not suspects:
                continue
            run.node_failed = 1
            for n in suspects:
                if self._health.get(n, Health.HEALTHY) is not Health.DOWN:
                    self._health[n] = Health.DOWN
                    reason = f"slurm: NODE_FAIL of job {run.slurm_id} ({run.job_id})"
                    out.append(NodeHealthChanged(self._index[n], Health.DOWN, reason))
        return out

    def _forget(self, slurm_id: int, now: int) -> None:
        """Slurm gave a new job the id of a run still tracked: its controller lost that run
        (a crash before it saved its state restarts the id counter). A stopped run is
        over; a live one is reported lost at the next poll (it runs nowhere Slurm knows)."""
        old = self._closing.pop(slurm_id, None)
        if old is not None:
            old.state, old.cancel_due = "LOST", False
            self._done.append(old)
        for run in [r for r in self._runs.values() if r.slurm_id == slurm_id]:
            log.warning("Slurm forgot job %d (%s): lost", slurm_id, run.job_id)
            del self._runs[run.job_id]
            run.state, run.exit_code, run.end_s = "LOST", EXIT_LOST, now
            self._done.append(run)
            self._events.append(JobEnded(run.job_id, run.attempt, now, EXIT_LOST))

    def _silence(self, wall: float) -> list[BackendEvent]:
        """The controller did not answer at ``wall``: when it first stops answering, every
        healthy node drains (nothing new is placed where nothing can be started); once it
        has been silent ``controller_timeout_s`` it is lost and every node goes down."""
        first = not self.ctl.silent
        if self.ctl.went_silent(wall):
            return self._all_nodes_down(wall)
        if not first:
            return []
        reason = f"slurm: controller of {self.ctl.name} does not answer"
        out: list[BackendEvent] = []
        for name in self.topo.node_names:
            if self._health.get(name, Health.HEALTHY) is Health.HEALTHY:
                self._health[name] = Health.DRAINING
                out.append(NodeHealthChanged(self._index[name], Health.DRAINING, reason))
        return out

    def _cancel_unsure(self) -> None:
        """Cancel what Slurm took of the sbatches that failed as the controller went away
        (their jobs were queued again, as other attempts)."""

        def sent_as_it_died(job: SlurmJob) -> bool:
            ident = comment_id(job.comment, self.prefix)
            return ident is not None and self._unsure.get(ident[0]) == ident[1]

        if self._cancel_where(sent_as_it_died, "sent as the controller went away"):
            self._unsure.clear()

    def _all_nodes_down(self, wall: float) -> list[BackendEvent]:
        """The controller is lost: report every node down (the engine requeues their jobs;
        sinfo reports them again when it answers)."""
        assert self.ctl.silent_since is not None
        silent = wall - self.ctl.silent_since
        reason = f"slurm: controller of {self.ctl.name} unreachable for {silent:.0f} s"
        out: list[BackendEvent] = []
        for name in self.topo.node_names:
            if self._health.get(name, Health.HEALTHY) is not Health.DOWN:
                self._health[name] = Health.DOWN
                out.append(NodeHealthChanged(self._index[name], Health.DOWN, reason))
        return out

    def _cancel(self, run: SlurmRun) -> None:
        try:
            self._slurm("scancel", str(run.slurm_id))
        except SlurmError as e:
            log.warning("cannot cancel Slurm job %d (%s): %s", run.slurm_id, run.job_id, e)
            return
        run.cancel_due = False

    # -- what is sent -----------------------------------------------------------------------
    def sbatch_args(self, req: StartRequest, stem: Path) -> list[str]:
        """sbatch's options for a run: one component per distinct GPU count."""
        common = [
            "--parsable",
            f"--job-name={req.spec.id}",
            f"--comment={self.prefix}{req.spec.id}:{req.attempt}",
            "--no-requeue",
            f"--output={stem}.out",
            f"--error={stem}.err",
            f"--chdir={stem.parent}",
            *([f"--partition={self.partition}"] if self.partition else []),
            *self.extra_args,
        ]
        groups: dict[int, list[str]] = {}
        for node, gpus in zip(req.node_names, req.placement.gpus, strict=True):
            groups.setdefault(gpus, []).append(node)
        args = common
        for i, (gpus, nodes) in enumerate(groups.items()):
            full = all(self._capacity.get(n) == gpus for n in nodes)
            exclusive = self.exclusive == "always" or (self.exclusive == "full-nodes" and full)
            args = [
                *args,
                *([":"] if i else []),
                f"--nodelist={','.join(nodes)}",
                f"--nodes={len(nodes)}",
                f"--gres=gpu:{gpus}",
                *(["--exclusive"] if exclusive else []),
            ]
        return args

    # -- views ------------------------------------------------------------------------------
    def accounting(self) -> list[SlurmRun]:
        """Every run submitted (ended, stopped or live), in submission order."""
        runs = [*self._done, *self._closing.values(), *self._runs.values()]
        return sorted(runs, key=lambda r: (r.submit_s, r.slurm_id))

    def runs(self) -> list[SlurmRun]:
        """The runs cotenant still waits on (started here or adopted), by job id."""
        return [self._runs[j] for j in sorted(self._runs)]

    def log_paths(self, job_id: str, attempt: int) -> tuple[Path, Path]:
        stem = self.state_dir / "jobs" / safe_name(job_id) / f"attempt-{attempt}"
        return Path(f"{stem}.out"), Path(f"{stem}.err")

    # -- internals ---------------------------------------------------------------------------
    def _slurm(self, *argv: str, stdin: str | None = None) -> str:
        return self.ctl.run(*argv, stdin=stdin)

    def _signal(self, run: SlurmRun) -> bool:
        try:
            self._slurm("scancel", "--signal=TERM", "--full", str(run.slurm_id))
        except SlurmError as e:
            log.info("Slurm job %d (%s) not signalled yet: %s", run.slurm_id, run.job_id, e)
            return False
        return True

    def _observe(self, run: SlurmRun, job: SlurmJob, offset: float | None) -> None:
        """Take what Slurm reports; ``offset`` maps its Unix times onto the engine clock."""
        run.state = job.state
        if job.nodes and job.state != "PENDING":
            run.slurm_nodes = job.nodes
        if job.gpus:
            run.slurm_gpus = job.gpus
        if job.start and job.state != "PENDING":
            run.slurm_start = job.start
            if offset is not None and run.started_s is None:
                run.started_s = round(job.start + offset)
        if job.end and job.state in TERMINAL:
            run.slurm_end = job.end
            if offset is not None and run.ended_s is None:
                run.ended_s = round(job.end + offset)

    def _engine_time(self, end: int | None, now: int, wall: float, floor: int) -> int:
        """Engine time of a Slurm end: now if it ended since the last poll (Slurm's times
        are whole seconds); else its wall time mapped onto the engine clock."""
        if end is None or (self._last_poll_wall is not None and end >= self._last_poll_wall - 1):
            return now
        return max(floor, min(now, int(end + (now - wall))))

    def sacct_job(self, slurm_id: int, name: str | None = None) -> SlurmJob | None:
        """A job as accounting records it: ``sacct``, or ``sacct -c`` (the jobcomp file)
        where accounting storage is off; None if neither knows it. With ``name``, only a
        record of that job name, the latest (a controller that lost its state reuses ids)."""
        forms = [["sacct"], ["sacct", "-c"]] if self._sacct is None else [self._sacct]
        fields = "JobID,JobName,State,ExitCode,Start,End,NodeList"
        for form in forms:
            try:
                out = self._slurm(*form, "-X", "-n", "-P", "-j", str(slurm_id), "-o", fields)
            except SlurmError:
                continue
            self._sacct = form
            found = parse_sacct(out, slurm_id, name)
            if found is not None:
                return found
        return None

    def _from_sacct(self, run: SlurmRun, wall: float) -> SlurmJob | None:
        """A job squeue does not list: slurmctld forgot it (MinJobAge), so ask accounting.
        Unknown there too for three polls (and not just submitted): lost."""
        job = self.sacct_job(run.slurm_id, run.job_id)
        if job is not None:
            return job
        run.missing += 1
        if run.missing < 3 or (run.state == "PENDING" and wall - run.submitted_wall < 60):
            return None
        return SlurmJob(run.slurm_id, "", "FAILED", EXIT_LOST, None, None, (), ())

    def _cancel_strays(self) -> None:
        """The controller was away when this backend started, so nothing was adopted and
        the engine has requeued what the store said ran here. Cotenant's jobs Slurm still
        holds are runs from before the restart: cancel them (they would run twice)."""
        mine = {r.slurm_id for r in [*self._runs.values(), *self._closing.values()]}
        self._cancel_where(lambda job: job.slurm_id not in mine, "a run from before the restart")

    def _cancel_where(self, pick: Callable[[SlurmJob], bool], why: str) -> bool:
        """Cancel this server's Slurm jobs not yet ended that ``pick`` picks; False if
        they could not all be listed and cancelled (to try again)."""
        try:
            jobs = parse_squeue(self._slurm("squeue", "--json"), self.prefix)
        except (SlurmError, ValueError, KeyError) as e:
            log.warning("cannot list Slurm jobs (%s): %s", why, e)
            return False
        done = True
        for job in jobs.values():
            if job.state not in TERMINAL and pick(job):
                log.warning("cancelling %s (Slurm job %d): %s", job.comment, job.slurm_id, why)
                try:
                    self._slurm("scancel", str(job.slurm_id))
                except SlurmError as e:
                    log.warning("cannot cancel Slurm job %d: %s", job.slurm_id, e)
                    done = False
        return done

    def _adopt(self) -> None:
        """Take over cotenant's jobs that Slurm still holds (after a restart)."""
        try:
            jobs = parse_squeue(self._slurm("squeue", "--json"), self.prefix)
        except (SlurmError, ValueError, KeyError) as e:
            log.warning("cannot list Slurm jobs to adopt: %s", e)
            return
        latest: dict[str, SlurmRun] = {}
        for job in sorted(jobs.values(), key=lambda j: j.slurm_id):
            ident = comment_id(job.comment, self.prefix)
            if ident is None:
                continue
            gpus = job.gpus or job.asked  # (an ended job's GPUs: as it asked for them)
            run = SlurmRun(
                ident[0], ident[1], job.slurm_id, job.nodes, gpus, 0, time.time(), adopted=True
            )
            self._observe(run, job, None)
            old = latest.get(run.job_id)
            if old is None or old.attempt <= run.attempt:
                latest[run.job_id] = run
        self._runs.update(latest)
