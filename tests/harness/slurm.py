"""A real Slurm 22.05 cluster of N fake GPU nodes on this one host.

Why: the Slurm backend must be tested against the real slurmctld/slurmd, not a
fake of our own. One slurmd per node (`slurmd -N nodeK`), each on its own port,
all on 127.0.0.1; GPUs are symlinks to /dev/null so Slurm's gres accounting and
CUDA_VISIBLE_DEVICES behave as on a GPU node. See shared/tools/slurm-local.md
for the measured facts this follows.

Every daemon runs in the foreground under a small supervisor that we start (see
harness.SupervisedProcess), and its PID is kept in a PID file in the work directory; `stop()`
signals only those PIDs and then the job processes whose environment names this
cluster's slurm.conf.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from harness import (
    HarnessError,
    SupervisedProcess,
    find_binary,
    free_ports,
    log_tails,
    wait_until,
)

__all__ = ["MUNGE_SOCKET", "LocalSlurm", "LocalSlurms", "slurm_available"]

MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
_DAEMONS = ("slurmctld", "slurmd", "munged")
_CLIENTS = ("sinfo", "squeue", "sbatch", "scontrol", "scancel", "munge", "unmunge")
# Marks slurmd (and the slurmstepd it forks) with the node it plays.
_NODE_MARK = "COTENANT_HARNESS_NODE"


def slurm_available() -> str | None:
    """None if a LocalSlurm can run here, else why not (for pytest.skip)."""
    missing = [name for name in (*_DAEMONS, *_CLIENTS) if find_binary(name) is None]
    if missing:
        return f"Slurm/munge not installed ({', '.join(missing)}); run .ci/install-services.sh"
    if os.geteuid() != 0:
        return "LocalSlurm needs root: slurmd starts jobs as their owner"
    return None


class LocalSlurm:
    """A Slurm cluster `node1..nodeN` with `gpus_per_node` fake GPUs each.

    Use as a context manager; `stop()` is also safe to call twice and runs at
    interpreter exit if a test forgot it. `node_prefix` names the nodes (`a1..aN`
    with "a"), so two clusters on this host (see `LocalSlurms`) have distinct names.
    """

    def __init__(
        self,
        n_nodes: int = 3,
        gpus_per_node: int = 8,
        cpus: int = 8,
        memory_mb: int = 16000,
        workdir: Path | None = None,
        *,
        slurmctld_port: int | None = None,
        slurmd_ports: list[int] | None = None,
        cluster_name: str = "cotenant",
        node_prefix: str = "node",
        munge_socket: Path = MUNGE_SOCKET,
        start_timeout: float = 30.0,
        keep_workdir: bool = False,
    ) -> None:
        if n_nodes < 1:
            raise ValueError("n_nodes must be at least 1")
        if slurmd_ports is not None and len(slurmd_ports) != n_nodes:
            raise ValueError(f"need {n_nodes} slurmd ports, got {len(slurmd_ports)}")
        if not re.fullmatch(r"[a-z][a-z-]*", node_prefix):
            raise ValueError(f"node_prefix must be lower-case letters, got {node_prefix!r}")
        self.nodes: list[str] = [f"{node_prefix}{i}" for i in range(1, n_nodes + 1)]
        self.gpus_per_node = gpus_per_node
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.cluster_name = cluster_name
        # The default socket is what slurmdbd would need; a private one lets two
        # harnesses (pytest-xdist workers) each own their munged.
        self.munge_socket = Path(munge_socket)
        self.hostname = socket.gethostname().split(".")[0]
        self.start_timeout = start_timeout
        self._requested_ctld_port = slurmctld_port
        self._requested_slurmd_ports = slurmd_ports
        self._own_workdir = workdir is None
        self._keep_workdir = keep_workdir or workdir is not None
        self.workdir = Path(workdir) if workdir is not None else Path()
        self.slurmctld_port = 0
        self.slurmd_ports: dict[str, int] = {}
        self.env: dict[str, str] = {}
        self._munged: SupervisedProcess | None = None
        self._slurmctld: SupervisedProcess | None = None
        self._slurmd: dict[str, SupervisedProcess] = {}
        self._retired: list[SupervisedProcess] = []  # killed slurmds whose supervisors still reap
        self._started = False

    # ----------------------------------------------------------------- paths
    @property
    def conf_path(self) -> Path:
        return self.workdir / "etc" / "slurm.conf"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    @property
    def jobs_dir(self) -> Path:
        """Working directory of CLI calls, so jobs' default output lands here."""
        return self.workdir / "jobs"

    @property
    def jobcomp_path(self) -> Path:
        """Slurm's jobcomp/filetxt record of finished jobs (read with `sacct -c`)."""
        return self.log_dir / "jobcomp.txt"

    @property
    def _pid_dir(self) -> Path:
        """Our PID files (the supervisor's record), apart from the ones Slurm writes."""
        return self.workdir / "run" / "harness"

    def _logs(self) -> list[Path]:
        return [
            self.log_dir / "munged.out",  # munged --foreground logs to stderr
            self.log_dir / "slurmctld.log",
            *(self.log_dir / f"slurmd-{n}.log" for n in self.nodes),
        ]

    # ----------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalSlurm:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalSlurm:
        """Write the config, start munged, slurmctld and every slurmd; wait for idle."""
        if self._started:
            return self
        reason = slurm_available()
        if reason is not None:
            raise HarnessError(reason)
        if self._own_workdir:
            self.workdir = Path(tempfile.mkdtemp(prefix="cotenant-slurm-"))
        self._started = True
        atexit.register(self.stop)
        try:
            self._allocate_ports()
            self._write_files()
            self._start_munged()
            self._start_slurmctld()
            for node in self.nodes:
                self.start_slurmd(node)
            self.wait_nodes_idle(self.nodes, self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel every job, wait for an empty queue, stop our daemons and job processes."""
        if not self._started:
            return
        self._started = False
        atexit.unregister(self.stop)
        try:
            if self._slurmctld is not None and self._slurmctld.alive():
                self._cancel_all_jobs(timeout=20.0)
            for daemon in self._slurmd.values():
                daemon.stop()
            if self._slurmctld is not None:
                self._slurmctld.stop()
            self._kill_job_processes()
            if self._munged is not None:
                self._munged.stop()
        finally:
            for daemon in self._all_daemons():
                daemon.reap()
            self._slurmd.clear()
            self._retired.clear()
            self._slurmctld = None
            self._munged = None
            if self._own_workdir and not self._keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------- public
    def run(
        self, *args: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm CLI command (`run("sinfo", "-N")`) against this cluster."""
        result = subprocess.run(
            list(args),
            env=self.env,
            cwd=self.jobs_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise HarnessError(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}"
            )
        return result

    def sbatch(self, *args: str) -> int:
        """Submit a batch job and return its id."""
        out = self.run("sbatch", "--parsable", *args).stdout.strip()
        return int(out.split(";")[0])

    def job_fields(self, job_id: int) -> dict[str, str]:
        """`scontrol show job -o` as a dict (values containing spaces are cut at the first)."""
        out = self.run("scontrol", "show", "job", "-o", str(job_id), check=False).stdout
        return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)

    def wait_job(self, job_id: int, states: set[str], timeout: float = 30.0) -> dict[str, str]:
        """Wait until the job's JobState is in `states` (e.g. {"RUNNING"}); return its fields."""
        fields: dict[str, str] = {}

        def reached() -> bool:
            nonlocal fields
            self._check_daemons()
            fields = self.job_fields(job_id)
            return fields.get("JobState") in states

        if not wait_until(reached, timeout, interval=0.2):
            raise HarnessError(
                f"job {job_id} not in {sorted(states)} after {timeout:.0f}s: "
                f"JobState={fields.get('JobState')} Reason={fields.get('Reason')}\n"
                + log_tails(self._logs()[1:2])
            )
        return fields

    def reset(self, timeout: float = 40.0) -> None:
        """Bring a shared cluster back to all-idle between tests: controller up, no jobs,
        every node up."""
        self.start_slurmctld()
        self._cancel_all_jobs(timeout=20.0)
        for node in self.nodes:
            self.start_slurmd(node)
        states = self.node_states()
        stuck = [n for n in self.nodes if states.get(n) not in ("idle", None)]
        for node in stuck:
            if any(word in states[node] for word in ("down", "drain", "fail")):
                self.run("scontrol", "update", f"nodename={node}", "state=resume", check=False)
        self.wait_nodes_idle(self.nodes, timeout)

    def pids(self) -> list[int]:
        """Every process this harness started itself (daemons and their supervisors)."""
        found: list[int] = []
        for d in self._all_daemons():
            found += [p for p in (d.pid, d.supervisor.pid if d.supervisor else None) if p]
        return found

    def job_output(self, job_id: int) -> str:
        """Text a batch job wrote to its default output file (empty if none yet)."""
        path = self.jobs_dir / f"slurm-{job_id}.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def node_states(self) -> dict[str, str]:
        """Node name to Slurm's long state in lower case (`idle`, `mixed`, `down*`, ...)."""
        out = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False).stdout
        states: dict[str, str] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2:
                states[parts[0]] = parts[1].lower()
        return states

    def active_job_ids(self) -> list[int]:
        """Ids of jobs that are pending, running, suspended or completing."""
        out = self.run(
            "squeue", "-h", "-o", "%i", "-t", "PD,R,S,CG,CF,RQ,RS,RH,SO,SI,ST", check=False
        ).stdout
        return [int(tok.split("_")[0]) for tok in out.split() if tok.split("_")[0].isdigit()]

    def wait_nodes_idle(self, nodes: list[str], timeout: float = 30.0) -> None:
        """Block until `nodes` are idle; fail with daemon log tails if they are not."""
        wanted = set(nodes)

        def ready() -> bool:
            self._check_daemons()
            states = self.node_states()
            return all(states.get(n) == "idle" for n in wanted)

        if not wait_until(ready, timeout, interval=0.2):
            raise HarnessError(
                f"Slurm nodes not idle after {timeout:.0f}s: {self.node_states()}\n"
                + log_tails(self._logs())
            )

    def kill_slurmd(self, node: str, sig: int = signal.SIGKILL, *, with_jobs: bool = True) -> None:
        """Simulate a node failure: kill that node's slurmd (and, like a crash, its jobs)."""
        daemon = self._slurmd.pop(node, None)
        if daemon is None:
            raise HarnessError(f"slurmd for {node} is not running")
        daemon.stop(sig, timeout=5.0)
        self._retired.append(daemon)
        if with_jobs:
            self._kill_job_processes(node)

    def kill_slurmctld(self, sig: int = signal.SIGKILL) -> None:
        """The controller goes away (SIGKILL: a crash). Its slurmds and the jobs on them run
        on, as on a real cluster whose controller host fails; CLI calls fail until
        `start_slurmctld()` brings it back from its saved state."""
        daemon, self._slurmctld = self._slurmctld, None
        if daemon is None or not daemon.alive():
            raise HarnessError(f"slurmctld of {self.cluster_name} is not running")
        daemon.stop(sig, timeout=5.0)
        self._retired.append(daemon)

    def wait_state_saved(self, since: float, timeout: float = 30.0) -> None:
        """Wait until slurmctld has written its job state (StateSaveLocation) after the
        wall time `since`. It saves at once after a quiet spell, else about 5 s after a
        change (measured), so a controller killed sooner restarts without its newest
        jobs, or with their old states, and gives their ids out again."""
        path = self.workdir / "state" / "job_state"

        def saved() -> bool:
            try:
                return path.stat().st_mtime >= since
            except OSError:
                return False

        if not wait_until(saved, timeout, interval=0.2):
            raise HarnessError(f"slurmctld of {self.cluster_name} saved no job state in {timeout}s")

    def save_state(self, timeout: float = 30.0) -> None:
        """Make slurmctld write its state now, as it stands (before a test kills it):
        a held job (it never runs) is submitted, which schedules a save, and cancelled
        once the save is on disk."""
        began = time.time()
        job = self.sbatch("--hold", "--job-name=harness-save-state", "--wrap", "true")
        try:
            self.wait_state_saved(began, timeout)
        finally:
            self.run("scancel", str(job), check=False)

    def controller_up(self) -> bool:
        """The controller answers `scontrol ping`."""
        return "UP" in self.run("scontrol", "ping", check=False, timeout=10).stdout

    def start_slurmctld(self) -> None:
        """Start (or restart after `kill_slurmctld`) the controller; it recovers its jobs
        and nodes from StateSaveLocation. Returns once it answers."""
        if self._slurmctld is not None and self._slurmctld.alive():
            return
        self._start_slurmctld()

    def start_slurmd(self, node: str) -> None:
        """Start (or restart after `kill_slurmd`) the slurmd that plays `node`."""
        if node not in self.nodes:
            raise ValueError(f"unknown node {node!r}; nodes are {self.nodes}")
        current = self._slurmd.get(node)
        if current is not None and current.alive():
            return
        slurmd = find_binary("slurmd")
        assert slurmd is not None
        (self.workdir / "spool" / node).mkdir(parents=True, exist_ok=True)
        daemon = SupervisedProcess(
            name=f"slurmd-{node}",
            argv=[
                slurmd,
                "-D",
                "-f",
                str(self.conf_path),
                "-N",
                node,
                "-L",
                str(self.log_dir / f"slurmd-{node}.log"),
            ],
            pid_file=self._pid_dir / f"slurmd-{node}.pid",
            log_file=self.log_dir / f"slurmd-{node}.out",
            env={**self.env, _NODE_MARK: node},
        )
        daemon.start()
        self._slurmd[node] = daemon

    # ------------------------------------------------------------ internals
    def _allocate_ports(self) -> None:
        wanted = (self._requested_ctld_port is None) + (self._requested_slurmd_ports is None) * len(
            self.nodes
        )
        free = iter(free_ports(wanted))
        self.slurmctld_port = self._requested_ctld_port or next(free)
        ports = self._requested_slurmd_ports or [next(free) for _ in self.nodes]
        self.slurmd_ports = dict(zip(self.nodes, ports, strict=True))

    def _write_files(self) -> None:
        for sub in ("etc", "state", "spool", "run/harness", "log", "dev", "munge", "jobs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self._slurm_conf())
        (self.workdir / "etc" / "gres.conf").write_text(self._gres_conf())
        for node in self.nodes:
            for i in range(self.gpus_per_node):
                dev = self.workdir / "dev" / f"{node}-gpu{i}"
                if not dev.is_symlink():
                    dev.symlink_to("/dev/null")  # gres needs a character device
        # Jobs and CLI calls must see this cluster only, not an outer Slurm job's vars.
        base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
        # SBATCH_OUTPUT keeps default job output (slurm-%j.out) out of the caller's cwd.
        self.env = {
            **base,
            "SLURM_CONF": str(self.conf_path),
            "SBATCH_OUTPUT": str(self.jobs_dir / "slurm-%j.out"),
        }

    def _slurm_conf(self) -> str:
        w = self.workdir
        gres = f" Gres=gpu:{self.gpus_per_node}" if self.gpus_per_node else ""
        node_lines = "\n".join(
            f"NodeName={n} NodeHostname={self.hostname} NodeAddr=127.0.0.1 "
            f"Port={self.slurmd_ports[n]} CPUs={self.cpus} RealMemory={self.memory_mb}"
            f"{gres} State=UNKNOWN"
            for n in self.nodes
        )
        mem_per_cpu = max(1, self.memory_mb // self.cpus)
        return f"""\
# Written by tests/harness/slurm.py; all daemons on 127.0.0.1.
ClusterName={self.cluster_name}
SlurmctldHost={self.hostname}(127.0.0.1)
SlurmctldPort={self.slurmctld_port}
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CommunicationParameters=NoInAddrAny
SlurmUser=root
SlurmdUser=root
StateSaveLocation={w}/state
SlurmdSpoolDir={w}/spool/%n
SlurmctldPidFile={w}/run/slurmctld.pid
SlurmdPidFile={w}/run/slurmd-%n.pid
SlurmctldLogFile={w}/log/slurmctld.log
SlurmdLogFile={w}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job with no --mem takes a whole node's memory.
DefMemPerCPU={mem_per_cpu}
SlurmdParameters=config_overrides
GresTypes=gpu
ReturnToService=2
SchedulerParameters=sched_interval=1
SlurmdTimeout=10
SlurmctldTimeout=30
KillWait=2
InactiveLimit=0
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp_path}
{node_lines}
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

    def _gres_conf(self) -> str:
        lines = ["AutoDetect=off"]
        if self.gpus_per_node:
            last = self.gpus_per_node - 1
            suffix = f"[0-{last}]" if last else "0"
            lines += [
                f"NodeName={n} Name=gpu File={self.workdir}/dev/{n}-gpu{suffix}" for n in self.nodes
            ]
        return "\n".join(lines) + "\n"

    def _munge_works(self) -> bool:
        """True if a munged answers on our socket (ours, or one already running there)."""
        munge, unmunge = find_binary("munge"), find_binary("unmunge")
        assert munge is not None and unmunge is not None
        try:
            cred = subprocess.run(
                [munge, "-n", "-S", str(self.munge_socket)],
                capture_output=True,
                timeout=5,
                check=False,
            )
            if cred.returncode != 0:
                return False
            back = subprocess.run(
                [unmunge, "-S", str(self.munge_socket)],
                input=cred.stdout,
                capture_output=True,
                timeout=5,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return back.returncode == 0

    def _start_munged(self) -> None:
        if self._munge_works():
            return  # another harness or the host runs one; use it, never stop it
        munged = find_binary("munged")
        assert munged is not None
        self.munge_socket.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        key = self.workdir / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._munged = SupervisedProcess(
            name="munged",
            argv=[
                munged,
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.workdir / 'run' / 'munged.pid'}",
                f"--log-file={self.log_dir / 'munged.log'}",
                f"--seed-file={self.workdir / 'munge' / 'munged.seed'}",
            ],
            pid_file=self._pid_dir / "munged.pid",
            log_file=self.log_dir / "munged.out",
            env=dict(os.environ),
        )
        self._munged.start()
        if not wait_until(self._munge_works, 10.0):
            raise HarnessError("munged did not answer within 10s\n" + log_tails(self._logs()[:1]))

    def _start_slurmctld(self) -> None:
        slurmctld = find_binary("slurmctld")
        assert slurmctld is not None
        self._slurmctld = SupervisedProcess(
            name="slurmctld",
            argv=[slurmctld, "-D", "-f", str(self.conf_path)],
            pid_file=self._pid_dir / "slurmctld.pid",
            log_file=self.log_dir / "slurmctld.out",
            env=dict(self.env),
        )
        self._slurmctld.start()

        def up() -> bool:
            self._check_daemons()
            return self.run("scontrol", "ping", check=False).stdout.count("UP") > 0

        if not wait_until(up, 15.0, interval=0.1):
            raise HarnessError("slurmctld did not answer within 15s\n" + log_tails(self._logs()))

    def _all_daemons(self) -> list[SupervisedProcess]:
        daemons = [self._munged, self._slurmctld, *self._slurmd.values(), *self._retired]
        return [d for d in daemons if d is not None]

    def _check_daemons(self) -> None:
        """Fail fast, with logs, when a daemon we need has exited."""
        dead = [d for d in self._all_daemons() if d not in self._retired and not d.alive()]
        if dead:
            codes = ", ".join(f"{d.name} (exit {d.exit_code()})" for d in dead)
            outs = [d.log_file for d in dead]
            raise HarnessError(f"Slurm daemon exited: {codes}\n" + log_tails(outs + self._logs()))

    def _cancel_all_jobs(self, timeout: float) -> None:
        """Cancel every job, then wait (bounded) for an empty queue: jobs outlive slurmd."""
        jobs = self.active_job_ids()
        if not jobs:
            return
        self.run("scancel", *map(str, jobs), check=False)
        wait_until(lambda: not self.active_job_ids(), timeout, interval=0.3)

    def _kill_job_processes(self, node: str | None = None) -> None:
        """SIGKILL processes launched through this cluster (slurmstepd and job steps).

        They are recognised by `SLURM_CONF=<our conf>` in their environment, which
        no process outside this harness has; `node` narrows it to one node's.
        """
        conf = f"SLURM_CONF={self.conf_path}".encode()
        marks = (
            {f"{_NODE_MARK}={node}".encode(), f"SLURMD_NODENAME={node}".encode()} if node else None
        )
        spared = {os.getpid()}
        for d in self._all_daemons():
            spared |= {d.pid or 0, d.supervisor.pid if d.supervisor else 0}
        for _ in range(3):  # a dying slurmstepd may still fork; sweep a few times
            victims: list[int] = []
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) in spared:
                    continue
                try:
                    environ = set((entry / "environ").read_bytes().split(b"\0"))
                except OSError:
                    continue
                if conf in environ and (marks is None or marks & environ):
                    victims.append(int(entry.name))
            if not victims:
                return
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)


class LocalSlurms:
    """Several independent Slurm clusters on this one host, e.g. two providers.

    Each has its own slurm.conf, ClusterName, ports, state, spool and log directories
    and node names (`a1..aN`, `b1..bN`); they share one munged (the first cluster's,
    or one already answering on `munge_socket`). Clusters start in order and stop in
    reverse, so the munged they share outlives every controller that uses it. Any
    controller can be killed and restarted (`LocalSlurm.kill_slurmctld`).
    """

    def __init__(
        self,
        names: tuple[str, ...] = ("alpha", "beta"),
        *,
        n_nodes: int = 2,
        gpus_per_node: int = 8,
        munge_socket: Path = MUNGE_SOCKET,
        start_timeout: float = 30.0,
    ) -> None:
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"cluster names must be distinct and at least one: {names}")
        prefixes = [n[0] for n in names]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError(f"cluster names must start with distinct letters: {names}")
        self.clusters: dict[str, LocalSlurm] = {
            name: LocalSlurm(
                n_nodes,
                gpus_per_node,
                cluster_name=name,
                node_prefix=name[0],
                munge_socket=munge_socket,
                start_timeout=start_timeout,
            )
            for name in names
        }

    def __getitem__(self, name: str) -> LocalSlurm:
        return self.clusters[name]

    def __iter__(self) -> Iterator[LocalSlurm]:
        return iter(self.clusters.values())

    def __enter__(self) -> LocalSlurms:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalSlurms:
        try:
            for cluster in self.clusters.values():
                cluster.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every cluster, the one that owns the shared munged last."""
        errors: list[BaseException] = []
        for cluster in reversed(list(self.clusters.values())):
            try:
                cluster.stop()
            except Exception as e:  # stop the others all the same
                errors.append(e)
        if errors:
            raise errors[0]

    def reset(self) -> None:
        for cluster in self.clusters.values():
            cluster.reset()

    def pids(self) -> list[int]:
        return [pid for cluster in self.clusters.values() for pid in cluster.pids()]
