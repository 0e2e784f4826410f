"""Store faults: which errors mean "the store is unavailable now", exponential back-off,
and one log line per failure episode instead of one traceback per failed request.

An *episode* starts with the first failure after a success and ends with the next
success. It is logged when it starts (the first error, in one line), once a minute
while it lasts, and when it ends (how long, how many failures and refusals): a
two-minute outage costs a handful of lines, whatever the request rate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

REMIND_S = 60.0  # while an episode lasts, a line this often
QUIET_S = 5.0  # an episode ends when the thing has worked this long


# Every error the store's database layer raises (for the API to map them in one place).
STORE_ERRORS: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError,)


def is_store_fault(exc: BaseException) -> bool:
    """True for errors that say the database cannot be reached or written now (connection
    lost or refused, server shutting down, disk full, read-only or locked file, pool
    exhausted), as opposed to a bad statement or a constraint that fired."""
    if isinstance(exc, sa.exc.IntegrityError):
        return False
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated


def one_line(exc: BaseException) -> str:
    """The error's class and the first line of its message (the driver's, not SQLAlchemy's
    statement dump)."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[0] if text else ''}".strip().rstrip(":")


class Backoff:
    """Exponential back-off: after ``n`` failures in a row the next try waits
    ``min(cap_s, base_s * 2**(n-1))``."""

    def __init__(
        self,
        base_s: float = 0.05,
        cap_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.clock = clock
        self.failures = 0
        self.next_try = 0.0

    def failed(self) -> float:
        self.failures += 1
        delay: float = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        self.next_try = self.clock() + delay
        return delay

    def reset(self) -> None:
        self.failures = 0
        self.next_try = 0.0

    def wait_s(self) -> float:
        """Seconds until the next try is due (0: now)."""
        return max(0.0, self.next_try - self.clock()) if self.failures else 0.0


class Episode:
    """One kind of failure (e.g. "store writes"), logged per episode with counts.

    ``down`` is the state now: since the last failure, no success. The *episode* (what is
    logged) lasts from the first failure until the thing has worked for ``quiet_s``: a
    store that flaps (a full disk that takes a small write now and then) is one episode,
    not two log lines per flap. The owner calls ``tick`` now and then (``next_tick_s``
    says when) to log the end of an episode."""

    def __init__(
        self,
        what: str,
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
        remind_s: float = REMIND_S,
        quiet_s: float = QUIET_S,
    ) -> None:
        self.what = what
        self.log = logger
        self.clock = clock
        self.remind_s = remind_s
        self.quiet_s = quiet_s
        self.since: float | None = None  # down since (None: up)
        self.started: float | None = None  # the episode being logged
        self.up_since: float | None = None  # working again (the episode ends if it lasts)
        self.failures = 0  # in this episode
        self.refused = 0  # requests answered "unavailable" in this episode
        self.relapses = 0  # failures after it had worked again, in this episode
        self.total_failures = 0  # ever
        self.episodes = 0
        self.last_error = ""
        self._reminded = 0.0
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self.since is not None

    def down_for_s(self) -> float:
        since = self.since
        return 0.0 if since is None else self.clock() - since

    def failed(self, exc: BaseException, retry_in_s: float | None = None) -> None:
        now = self.clock()
        with self._lock:
            self.failures += 1
            self.total_failures += 1
            self.last_error = one_line(exc)
            if self.since is None:
                self.since = now
            if self.started is None:
                self.started = self._reminded = now
                self.episodes += 1
                retry = "" if retry_in_s is None else "; retrying with back-off"
                self.log.warning("%s failing: %s%s", self.what, self.last_error, retry)
                return
            if self.up_since is not None:
                self.relapses += 1
                self.up_since = None
            if now - self._reminded >= self.remind_s:
                self._reminded = now
                self.log.warning(
                    "%s still failing after %.0f s: %d failures, %d requests refused; last: %s",
                    self.what,
                    now - self.started,
                    self.failures,
                    self.refused,
                    self.last_error,
                )

    def refuse(self) -> None:
        with self._lock:
            self.refused += 1

    def ok(self) -> None:
        if self.since is None:
            return
        with self._lock:
            self.since = None
            if self.started is not None and self.up_since is None:
                self.up_since = self.clock()

    def next_tick_s(self) -> float | None:
        """Seconds until ``tick`` may end the episode (None: nothing to wait for)."""
        up = self.up_since
        if self.started is None or up is None:
            return None
        return max(0.0, up + self.quiet_s - self.clock())

    def tick(self, force: bool = False) -> None:
        """Log the end of the episode once it has worked for ``quiet_s`` (or now)."""
        with self._lock:
            up, started = self.up_since, self.started
            if started is None or up is None:
                return
            if not force and self.clock() - up < self.quiet_s:
                return
            flaps = f", {self.relapses} relapses" if self.relapses else ""
            self.log.warning(
                "%s recovered after %.1f s: %d failures, %d requests refused%s",
                self.what,
                up - started,
                self.failures,
                self.refused,
                flaps,
            )
            self.started = self.up_since = None
            self.failures = self.refused = self.relapses = 0
