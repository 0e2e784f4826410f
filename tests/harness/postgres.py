"""A throwaway PostgreSQL server on 127.0.0.1, for the store's integration tests.

Why: the store must be tested on the real PostgreSQL it runs on in production,
not only on SQLite. The server lives in its own temporary directory owned by
the `postgres` user (initdb and postgres refuse to run as root), listens on a
free port on 127.0.0.1 plus a Unix socket in that directory, and trusts local
connections, so tests need no password.

The postmaster runs in the foreground as our child rather than daemonised by
`pg_ctl start`: PID 1 on this machine kind reaps orphans only tens of seconds
later, so a daemonised postmaster would linger as `[postgres] <defunct>` after
each stop, and we could not tell when it had really gone.
`pg_ctl stop` then shuts it down by its PID file (postmaster.pid), and we reap it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from harness import HarnessError, find_binary, free_ports, log_tails, pid_state, wait_until

__all__ = ["LocalPostgres", "pg_bin_dir", "postgres_available"]

_SERVICE_USER = "postgres"
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def pg_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin that has initdb (Debian's layout), else PATH's."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def version(path: str) -> tuple[int, ...]:
        ver = Path(path).parent.parent.name
        return tuple(int(p) for p in ver.split(".") if p.isdigit())

    if found:
        return Path(max(found, key=version)).parent
    initdb = find_binary("initdb")
    return Path(initdb).resolve().parent if initdb else None


def postgres_available() -> str | None:
    """None if a LocalPostgres can run here, else why not (for pytest.skip)."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        return "PostgreSQL server not installed (no initdb); run .ci/install-services.sh"
    missing = [b for b in ("initdb", "postgres", "pg_ctl") if not (bin_dir / b).exists()]
    if missing:
        return f"PostgreSQL binaries missing in {bin_dir}: {', '.join(missing)}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_SERVICE_USER)
        except KeyError:
            return f"running as root but there is no {_SERVICE_USER!r} user to run initdb"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    return None


def _backends_of(postmaster: int) -> list[int]:
    """PIDs of the processes ``postmaster`` started (its backends)."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        pid = int(Path(stat).parent.name)
        st = pid_state(pid)
        if st is not None and st[1] == postmaster:
            out.append(pid)
    return out


def _stop_with_parent() -> None:
    """Runs in the postmaster before exec: a fast shutdown if the test process dies.

    Without it a SIGKILLed pytest would leave the server running; PR_SET_PDEATHSIG
    survives exec and is set after Popen drops to the postgres user.
    """
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT, 0, 0, 0)


class LocalPostgres:
    """A PostgreSQL server with trust auth; `create_database(name)` gives a SQLAlchemy URL.

    Use as a context manager; `stop()` is safe to call twice and also runs at
    interpreter exit if a test forgot it.
    """

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        *,
        start_timeout: float = 30.0,
        keep_workdir: bool = False,
        crash_safe: bool = False,
    ) -> None:
        """``crash_safe``: a commit survives the server being killed (synchronous commit;
        fsync stays off: the page cache outlives a killed process, only not the host)."""
        self.host = "127.0.0.1"
        self.user = "postgres"  # the superuser initdb creates (-U)
        self.port = port or 0
        self.start_timeout = start_timeout
        self._own_workdir = workdir is None
        self._keep_workdir = keep_workdir or workdir is not None
        self.workdir = Path(workdir) if workdir is not None else Path()
        self.bin_dir = pg_bin_dir() or Path("/nonexistent")
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False
        self.crash_safe = crash_safe

    # ----------------------------------------------------------------- paths
    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "sock"

    @property
    def log_file(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def pid_file(self) -> Path:
        """Postgres's own PID file; its first line is the postmaster's PID."""
        return self.data_dir / "postmaster.pid"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL of `database` on this server (use driver="postgresql" for libpq)."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    # ----------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalPostgres:
        """initdb into a fresh directory and start the server; wait until it accepts."""
        if self._started:
            return self
        reason = postgres_available()
        if reason is not None:
            raise HarnessError(reason)
        if self._own_workdir:
            self.workdir = Path(tempfile.mkdtemp(prefix="cotenant-pg-"))
        self._started = True
        atexit.register(self.stop)
        try:
            self._prepare_dirs()
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Shut the server down (fast mode) and remove its directory."""
        if not self._started:
            return
        self._started = False
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        try:
            if proc is not None and proc.poll() is None:
                self._shutdown(proc)
        finally:
            if self._own_workdir and not self._keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------ outages
    def halt(self, how: str = "fast") -> None:
        """Stop the server but keep its data: ``fast`` (pg_ctl stop -m fast) or ``kill``
        (SIGKILL to the postmaster, a crash). ``resume`` starts it again on the same port."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if how == "kill":
            children = _backends_of(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

            # Its backends notice the postmaster is gone and exit; wait for them to let go
            # of the shared memory, or the restart refuses to start.
            def gone() -> bool:
                return all((st := pid_state(c)) is None or st[0] == "Z" for c in children)

            wait_until(gone, 15, 0.05)
        elif how == "fast":
            self._shutdown(proc)
        else:
            raise ValueError(f"how must be fast or kill, got {how!r}")

    def resume(self) -> None:
        """Start the halted server again (same data directory and port)."""
        assert self._started and self._proc is None, "halt() it first"
        self._start_server()

    # ------------------------------------------------------------- public
    def create_database(self, name: str) -> str:
        """Create database `name` and return its SQLAlchemy URL (psycopg 3 driver)."""
        if not _NAME_RE.match(name):
            raise ValueError(f"database name {name!r} must match {_NAME_RE.pattern}")
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(driver="postgresql"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, closing its connections first (PostgreSQL 13+)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(driver="postgresql"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # ------------------------------------------------------------ internals
    def _as_service_user(self) -> dict[str, Any]:
        """Popen arguments that drop root to `postgres`; empty when not root."""
        if os.geteuid() != 0:
            return {}
        pw = pwd.getpwnam(_SERVICE_USER)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _owner(self) -> tuple[int, int]:
        if os.geteuid() != 0:
            return os.getuid(), os.getgid()
        pw = pwd.getpwnam(_SERVICE_USER)
        return pw.pw_uid, pw.pw_gid

    def _prepare_dirs(self) -> None:
        uid, gid = self._owner()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        for path in (self.workdir, self.socket_dir):
            os.chown(path, uid, gid)
            path.chmod(0o700)
        # The service user must reach the directory through its parents.
        parent = self.workdir.parent
        if not os.access(parent, os.X_OK) or parent.stat().st_mode & 0o001 == 0:
            raise HarnessError(f"{parent} is not traversable by {_SERVICE_USER}; pass a workdir")
        if self.port == 0:
            self.port = free_ports(1)[0]

    def _run_as_service(self, argv: list[str], timeout: float) -> None:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.workdir,
            env=self._env(),
            **self._as_service_user(),
        )
        if result.returncode != 0:
            raise HarnessError(
                f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", HOME=str(self.workdir))
        return env

    def _initdb(self) -> None:
        self._run_as_service(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            timeout=120,
        )

    def _start_server(self) -> None:
        argv = [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            f"listen_addresses={self.host}",
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            # A test server: durability off for speed, no ties to other clusters.
            "-c",
            "fsync=off",
            "-c",
            f"synchronous_commit={'on' if self.crash_safe else 'off'}",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=100",
        ]
        with self.log_file.open("ab") as log:
            os.chown(self.log_file, *self._owner())
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
                start_new_session=True,  # a Ctrl-C in pytest must not hit the server
                preexec_fn=_stop_with_parent,
                **self._as_service_user(),
            )
        isready = str(self.bin_dir / "pg_isready")
        proc = self._proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise HarnessError(
                    f"postgres exited {proc.returncode} while starting\n"
                    + log_tails([self.log_file])
                )
            check = [isready, "-q", "-h", self.host, "-p", str(self.port), "-U", self.user]
            return subprocess.run(check, check=False, timeout=10).returncode == 0

        if not wait_until(ready, self.start_timeout, 0.1):
            raise HarnessError(
                f"postgres not accepting connections after {self.start_timeout:.0f}s\n"
                + log_tails([self.log_file])
            )

    def _shutdown(self, proc: subprocess.Popen[bytes]) -> None:
        """pg_ctl stop -m fast (it signals the PID in postmaster.pid); then reap."""
        with contextlib.suppress(subprocess.TimeoutExpired, HarnessError):
            self._run_as_service(
                [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast"],
                timeout=30,
            )
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            # pg_ctl failed: the postmaster is our child, so signal it directly.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
