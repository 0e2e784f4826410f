"""One domain error hierarchy. Each error names the field at fault so a user can act on it.

Expected outcomes (a job that does not fit, a tenant over quota) are values, not
exceptions; these are for bad input and broken invariants.
"""

from __future__ import annotations


class CotenantError(Exception):
    """Base of every error cotenant raises on purpose."""

    http_status = 400


class SpecError(CotenantError):
    """A scenario, cluster spec, contract or request is malformed.

    `field` is a dotted path to the offending value (e.g. ``tenants[1].commitment.gpus``).
    """

    def __init__(self, field: str, problem: str, source: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {problem}")


class Unprocessable(SpecError):
    """Well-formed, but this server cannot act on it (e.g. a job without a command on a
    backend that runs real processes)."""

    http_status = 422


class NotFound(CotenantError):
    http_status = 404


class Conflict(CotenantError):
    http_status = 409


class InvariantBroken(CotenantError):
    """Cotenant's own bookkeeping is wrong: a bug, never the user's fault."""

    http_status = 500


class StoreUnavailable(CotenantError):
    """The store cannot take writes (or answer reads) now; try again after
    ``retry_after_s``. Nothing was decided or accepted."""

    http_status = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        self.retry_after_s = max(1, retry_after_s)
        super().__init__(message)
