"""M/M/c queueing for inference services: Erlang C, response-time quantiles, replica counts.

The model (see docs/design/0007-serving.md): requests arrive as a Poisson process of rate
``lambda`` (requests/s) at a pool of ``c`` identical servers fed by one FCFS queue; each
server serves one request at a time with exponential service of rate ``mu``
(requests/s). A replica of a service holds ``servers_per_replica`` such servers (its
concurrent batch slots), so ``c = replicas * servers_per_replica`` and
``mu = throughput_rps_per_replica / servers_per_replica``. Batching effects (a slot
slowing down when its neighbours are busy) are not modelled.

Pure functions of floats and ints; no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cotenant.model.errors import SpecError

_BISECTION_STEPS = 200
_REL_TOL = 1e-12


def _check_quantile(quantile: float) -> None:
    if not (0.0 < quantile < 1.0):
        raise SpecError("quantile", f"must be strictly between 0 and 1, got {quantile!r}")


def _check_servers(c: int) -> None:
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        raise SpecError("c", f"the number of servers must be an integer >= 1, got {c!r}")


def _check_rates(arrival_rate: float, service_rate_per_server: float) -> None:
    if not (arrival_rate >= 0.0 and math.isfinite(arrival_rate)):
        raise SpecError("arrival_rate", f"must be finite and >= 0, got {arrival_rate!r}")
    if not (service_rate_per_server > 0.0 and math.isfinite(service_rate_per_server)):
        raise SpecError(
            "service_rate_per_server", f"must be finite and > 0, got {service_rate_per_server!r}"
        )


def erlang_b(c: int, offered_load: float) -> float:
    """Blocking probability of M/M/c/c (Erlang B) with offered load ``a = lambda/mu``.

    The recursion ``B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1))`` keeps every term in
    [0, 1], so it neither overflows nor underflows for c in the thousands (O(c) time),
    unlike the textbook ratio of ``a**c / c!`` sums.
    """
    _check_servers(c)
    if not (offered_load >= 0.0 and math.isfinite(offered_load)):
        raise SpecError("offered_load", f"must be finite and >= 0, got {offered_load!r}")
    b = 1.0
    for k in range(1, c + 1):
        ab = offered_load * b
        b = ab / (k + ab)
    return b


def _c_from_b(c: int, a: float, b: float) -> float:
    return c * b / (c - a * (1.0 - b))


def erlang_c(c: int, offered_load: float) -> float:
    """Probability that an arriving request waits in M/M/c (Erlang C), ``a = lambda/mu``.

    Converted from Erlang B: ``C = c B / (c - a (1 - B))`` for ``a < c``. Returns 1.0 when
    ``a >= c``: the queue is unstable and (in the limit) every request waits.
    """
    _check_servers(c)
    if offered_load >= c:
        return 1.0
    return _c_from_b(c, offered_load, erlang_b(c, offered_load))


def _phi(x: float) -> float:
    """``(1 - exp(-x)) / x`` for x >= 0, with phi(0) = 1, without cancellation."""
    if x < 1e-8:
        return 1.0 - x / 2.0
    return -math.expm1(-x) / x


def _response_survival(t: float, wait_prob: float, theta: float, mu: float) -> float:
    """``P(T > t)`` for ``T = W + S`` (see :func:`p99_latency_s` for the formula)."""
    if t <= 0.0:
        return 1.0
    r1, r2 = (theta, mu) if theta <= mu else (mu, theta)
    hypo = math.exp(-r1 * t) * (1.0 + r1 * t * _phi((r2 - r1) * t))
    return (1.0 - wait_prob) * math.exp(-mu * t) + wait_prob * hypo


def _quantile_of(wait_prob: float, theta: float, mu: float, quantile: float) -> float:
    tail = 1.0 - quantile
    lo, hi = 0.0, 1.0 / min(theta, mu)
    while _response_survival(hi, wait_prob, theta, mu) > tail:
        lo, hi = hi, hi * 2.0
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if _response_survival(mid, wait_prob, theta, mu) > tail:
            lo = mid
        else:
            hi = mid
        if hi - lo <= _REL_TOL * hi:
            break
    return hi


def p99_latency_s(
    c: int,
    arrival_rate: float,
    service_rate_per_server: float,
    quantile: float = 0.99,
) -> float:
    """The ``quantile`` of the response time (waiting + service) of M/M/c, in seconds.

    With ``mu`` the service rate per server, ``a = lambda/mu``, ``C = erlang_c(c, a)`` and
    ``theta = c mu - lambda`` (> 0 when stable):

    - the wait ``W`` is 0 with probability ``1 - C`` and otherwise ``Exp(theta)``:
      ``P(W > t) = C exp(-theta t)``;
    - the service ``S`` is ``Exp(mu)``, independent of ``W``;
    - so ``T = W + S`` is a mixture: ``Exp(mu)`` with weight ``1 - C`` and the
      hypoexponential sum ``Exp(theta) + Exp(mu)`` with weight ``C``::

        P(T > t) = (1 - C) e^(-mu t) + C (theta e^(-mu t) - mu e^(-theta t)) / (theta - mu)

      evaluated as ``e^(-r1 t) (1 + r1 t phi((r2 - r1) t))`` with ``r1 = min(theta, mu)``,
      ``r2 = max(theta, mu)`` and ``phi(x) = (1 - e^-x) / x``, which is exact, also at
      ``theta = mu`` (where the sum is Erlang-2), and free of cancellation.

    The quantile solves ``P(T > t) = 1 - quantile`` by bisection (the survival function is
    strictly decreasing) to a relative tolerance of 1e-12. For M/M/1 this reduces to
    ``T ~ Exp(mu - lambda)``. Returns ``inf`` when ``lambda >= c mu`` (unstable).
    """
    _check_servers(c)
    _check_rates(arrival_rate, service_rate_per_server)
    _check_quantile(quantile)
    mu = service_rate_per_server
    theta = c * mu - arrival_rate
    if theta <= 0.0:
        return math.inf
    wait_prob = erlang_c(c, arrival_rate / mu)
    return _quantile_of(wait_prob, theta, mu, quantile)


class _ErlangBSweep:
    """Erlang B at increasing server counts for one offered load, extended incrementally.

    The replica search asks for B at several c >= c0; computing B(c0) once (O(c0)) and
    then stepping the recursion forward makes the whole search O(c_answer).
    """

    def __init__(self, offered_load: float, c0: int) -> None:
        self._a = offered_load
        self._c0 = c0
        self._b = [erlang_b(c0, offered_load)]

    def at(self, c: int) -> float:
        while self._c0 + len(self._b) - 1 < c:
            k = self._c0 + len(self._b)
            ab = self._a * self._b[-1]
            self._b.append(ab / (k + ab))
        return self._b[c - self._c0]


def _server_rate(service_rate_per_replica: float, servers_per_replica: int) -> float:
    """Each server's rate (``mu``): a replica's rate shared by its batch slots."""
    if isinstance(servers_per_replica, bool) or servers_per_replica < 1:
        raise SpecError("servers_per_replica", f"must be >= 1, got {servers_per_replica!r}")
    if not (service_rate_per_replica > 0.0 and math.isfinite(service_rate_per_replica)):
        raise SpecError(
            "service_rate_per_replica", f"must be finite and > 0, got {service_rate_per_replica!r}"
        )
    return service_rate_per_replica / servers_per_replica


def _unreachable(
    latency_target_s: float, quantile: float, service_quantile: float, mu: float
) -> SpecError:
    """A target below the quantile of the service time alone: no replica count meets it."""
    return SpecError(
        "latency_target_s",
        f"{latency_target_s:g} s cannot be met: the p{quantile * 100:g} of the service "
        f"time alone is {service_quantile:g} s at {mu:g} requests/s per server",
    )


def _smallest_meeting(first: int, max_replicas: int | None, meets: Callable[[int], bool]) -> int:
    """The smallest count from ``first`` that ``meets`` (decreasing tail: doubling steps,
    then bisection); ``max_replicas`` when even that many miss."""
    if meets(first):
        return first
    bad, step = first, 1
    while True:
        good = bad + step
        if max_replicas is not None and good >= max_replicas:
            if not meets(max_replicas):
                return max_replicas
            good = max_replicas
            break
        if meets(good):
            break
        bad, step = good, step * 2
    while good - bad > 1:
        mid = (bad + good) // 2
        if meets(mid):
            good = mid
        else:
            bad = mid
    return good


def _tails_within(
    c: int,
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    lam: NDArray[np.float64],
    mu: float,
    t: float,
    tail: float,
) -> NDArray[np.bool_]:
    """For each offered load ``a`` (Erlang B ``b`` at ``c`` servers, arrival rate ``lam``):
    is the M/M/c response-time tail at ``t`` within ``tail``? (as ``_response_survival``)"""
    wait = c * b / (c - a * (1.0 - b))
    theta = c * mu - lam
    r1 = np.minimum(theta, mu)
    r2 = np.maximum(theta, mu)
    x = (r2 - r1) * t
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(x < 1e-8, 1.0 - x / 2.0, -np.expm1(-x) / np.where(x > 0, x, 1.0))
    hypo = np.exp(-r1 * t) * (1.0 + r1 * t * phi)
    result: NDArray[np.bool_] = (1.0 - wait) * math.exp(-mu * t) + wait * hypo <= tail
    return result


def replicas_needed(
    arrival_rate: float,
    service_rate_per_replica: float,
    latency_target_s: float,
    quantile: float = 0.99,
    min_replicas: int = 1,
    max_replicas: int | None = None,
    servers_per_replica: int = 1,
) -> int:
    """The smallest replica count whose response-time ``quantile`` is within the target.

    A replica holds ``servers_per_replica`` concurrent servers (batch slots), each serving
    at ``service_rate_per_replica / servers_per_replica``; the pool is M/M/c with
    ``c = replicas * servers_per_replica`` behind one FCFS queue.

    The search starts at the stability bound (the fewest replicas with
    ``c > a = lambda / mu``, at least ``min_replicas``), doubles its step until the target
    is met, then bisects; the tail probability is decreasing in ``c``, so this finds the
    smallest count. Erlang B is stepped forward incrementally, so the cost is O(c) even
    for c in the tens of thousands.

    Returns ``max_replicas`` when even that many miss the target: the caller reports the
    SLO miss (compare with :func:`p99_latency_s`). Raises :class:`SpecError` on
    ``latency_target_s`` when no replica count can meet it: the target is below the
    ``quantile`` of the service time alone, ``-ln(1 - quantile) / mu``.
    """
    mu = _server_rate(service_rate_per_replica, servers_per_replica)
    _check_rates(arrival_rate, mu)
    _check_quantile(quantile)
    if min_replicas < 0:
        raise SpecError("min_replicas", f"must be >= 0, got {min_replicas}")
    if max_replicas is not None and max_replicas < min_replicas:
        raise SpecError(
            "max_replicas", f"must be >= min_replicas ({min_replicas}), got {max_replicas}"
        )
    if not (latency_target_s > 0.0):
        raise SpecError("latency_target_s", f"must be > 0, got {latency_target_s!r}")
    tail = 1.0 - quantile
    service_quantile = -math.log(tail) / mu
    if latency_target_s < service_quantile or (
        arrival_rate > 0.0 and latency_target_s <= service_quantile
    ):
        raise _unreachable(latency_target_s, quantile, service_quantile, mu)
    if arrival_rate == 0.0:
        return min_replicas

    a = arrival_rate / mu
    s = servers_per_replica
    first = max(min_replicas, math.floor(a / s) + 1)
    if max_replicas is not None and first > max_replicas:
        return max_replicas  # cannot even be stable within the cap
    sweep = _ErlangBSweep(a, first * s)

    def meets(replicas: int) -> bool:
        c = replicas * s
        wait_prob = _c_from_b(c, a, sweep.at(c))
        if wait_prob == 0.0 and math.exp(-mu * latency_target_s) > tail:
            raise SpecError(
                "latency_target_s",
                f"{latency_target_s!r} s is too close to the service-time quantile "
                f"{service_quantile!r} s to be met by any replica count",
            )
        theta = c * mu - arrival_rate
        return _response_survival(latency_target_s, wait_prob, theta, mu) <= tail

    return _smallest_meeting(first, max_replicas, meets)


def replicas_needed_many(
    arrival_rates: NDArray[np.float64],
    service_rate_per_replica: float,
    latency_target_s: float,
    quantile: float = 0.99,
    min_replicas: int = 1,
    limit: int | None = None,
    servers_per_replica: int = 1,
) -> NDArray[np.int64]:
    """:func:`replicas_needed` for many arrival rates at once (an autoscaler's whole demand
    curve, or every piece of a run when measuring SLO attainment).

    One Erlang-B recursion ``B(k) = a B(k-1) / (k + a B(k-1))`` runs over the array of
    offered loads, the same arithmetic as :func:`erlang_b`; at every replica boundary
    ``k = n * servers_per_replica`` the rates whose response-time tail at the target is
    within ``1 - quantile`` (and that are stable and at or above ``min_replicas``) take
    ``n`` and leave the array. The cost is O(c_max) NumPy steps instead of O(c) Python
    steps per rate. A zero rate needs ``min_replicas``. Rates that ``limit`` replicas
    cannot serve within the target get ``limit + 1`` ("more than the limit"); without a
    limit the search goes on until every rate is met (it ends: the target is checked
    against the service-time quantile first, as in :func:`replicas_needed`).
    """
    lam_all = np.asarray(arrival_rates, dtype=np.float64)
    if lam_all.ndim != 1:
        raise SpecError("arrival_rates", f"must be one-dimensional, got shape {lam_all.shape}")
    mu = _server_rate(service_rate_per_replica, servers_per_replica)
    _check_quantile(quantile)
    if min_replicas < 0:
        raise SpecError("min_replicas", f"must be >= 0, got {min_replicas}")
    if limit is not None and limit < max(min_replicas, 1):
        raise SpecError("limit", f"must be >= min_replicas and >= 1, got {limit}")
    if lam_all.size and not bool(np.all(np.isfinite(lam_all) & (lam_all >= 0.0))):
        raise SpecError("arrival_rate", "every rate must be finite and >= 0")
    s = servers_per_replica
    tail = 1.0 - quantile
    service_quantile = -math.log(tail) / mu
    out = np.full(lam_all.size, min_replicas, dtype=np.int64)
    busy = np.flatnonzero(lam_all > 0.0)
    if busy.size == 0:
        return out
    if latency_target_s <= service_quantile:
        raise _unreachable(latency_target_s, quantile, service_quantile, mu)
    if limit is None:
        limit = replicas_needed(
            float(lam_all[busy].max()), service_rate_per_replica, latency_target_s,
            quantile, max(min_replicas, 1), None, s,
        )  # fmt: skip
    out[busy] = limit + 1
    lam = lam_all[busy]
    a = lam / mu
    floor_n = np.maximum(np.floor(a / s).astype(np.int64) + 1, max(min_replicas, 1))
    idx = busy
    b = np.ones(lam.size)
    t = latency_target_s
    for n in range(1, limit + 1):
        k0 = (n - 1) * s
        for k in range(k0 + 1, k0 + s + 1):
            ab = a * b
            b = ab / (k + ab)
        c = n * s
        cand = floor_n <= n
        if not cand.any():
            continue
        meets = _tails_within(c, a[cand], b[cand], lam[cand], mu, t, tail)
        if meets.any():
            done = np.flatnonzero(cand)[meets]
            out[idx[done]] = n
            keep = np.ones(lam.size, dtype=bool)
            keep[done] = False
            a, b, lam, floor_n, idx = a[keep], b[keep], lam[keep], floor_n[keep], idx[keep]
            if lam.size == 0:
                break
    return out


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """An inference service a tenant runs on the cluster, sized by the M/M/c model.

    ``throughput_rps_per_replica`` is the sustained request rate one replica serves when
    all its ``servers_per_replica`` slots are busy; ``latency_target_s`` is the response-time
    target at ``latency_quantile`` (p99 by default); ``startup_s`` is how long a new replica
    takes to become ready (integer seconds), which the autoscaler must look ahead by.
    """

    name: str
    tenant: str
    throughput_rps_per_replica: float
    latency_target_s: float
    gpus_per_replica: int = 8
    servers_per_replica: int = 1
    min_replicas: int = 1
    max_replicas: int | None = None
    startup_s: int = 0
    priority: int = 0
    latency_quantile: float = 0.99

    @property
    def service_rate_per_server(self) -> float:
        return self.throughput_rps_per_replica / self.servers_per_replica

    def validate(self) -> ServiceSpec:
        """Raise :class:`SpecError` naming the first bad field; return self when sound."""
        where = f"services[{self.name}]" if self.name else "services[?]"
        if not self.name:
            raise SpecError(f"{where}.name", "must not be empty")
        if not self.tenant:
            raise SpecError(f"{where}.tenant", "must not be empty")
        checks: list[tuple[str, bool, str]] = [
            ("gpus_per_replica", _is_int(self.gpus_per_replica) and self.gpus_per_replica >= 1,
             "must be an integer >= 1"),
            ("throughput_rps_per_replica",
             math.isfinite(self.throughput_rps_per_replica) and self.throughput_rps_per_replica > 0,
             "must be > 0 requests/s"),
            ("servers_per_replica",
             _is_int(self.servers_per_replica) and self.servers_per_replica >= 1,
             "must be an integer >= 1"),
            ("latency_target_s",
             math.isfinite(self.latency_target_s) and self.latency_target_s > 0,
             "must be > 0 seconds"),
            ("latency_quantile", 0.0 < self.latency_quantile < 1.0,
             "must be strictly between 0 and 1"),
            ("min_replicas", _is_int(self.min_replicas) and self.min_replicas >= 0,
             "must be an integer >= 0"),
            ("max_replicas",
             self.max_replicas is None
             or (_is_int(self.max_replicas) and self.max_replicas >= max(self.min_replicas, 1)),
             f"must be an integer >= min_replicas ({self.min_replicas}) and >= 1"),
            ("startup_s", _is_int(self.startup_s) and self.startup_s >= 0,
             "must be an integer number of seconds >= 0"),
            ("priority", _is_int(self.priority), "must be an integer"),
        ]  # fmt: skip
        for field, ok, problem in checks:
            if not ok:
                raise SpecError(f"{where}.{field}", f"{problem}, got {getattr(self, field)!r}")
        service_quantile = -math.log(1.0 - self.latency_quantile) / self.service_rate_per_server
        if self.latency_target_s <= service_quantile:
            raise SpecError(
                f"{where}.latency_target_s",
                f"{self.latency_target_s:g} s is at or below the service time alone "
                f"({service_quantile:g} s at p{self.latency_quantile * 100:g}); no replica count "
                "can meet it",
            )
        return self

    def replicas_for(self, arrival_rate: float) -> int:
        """Replicas needed for ``arrival_rate`` requests/s within min/max replicas."""
        return replicas_needed(
            arrival_rate,
            self.throughput_rps_per_replica,
            self.latency_target_s,
            quantile=self.latency_quantile,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            servers_per_replica=self.servers_per_replica,
        )

    def latency_s(self, replicas: int, arrival_rate: float) -> float:
        """Response-time quantile with ``replicas`` replicas: inf when unstable or when there
        are requests and no replica, 0.0 when there is nothing to serve and no replica."""
        if replicas <= 0:
            return math.inf if arrival_rate > 0 else 0.0
        return p99_latency_s(
            replicas * self.servers_per_replica,
            arrival_rate,
            self.service_rate_per_server,
            self.latency_quantile,
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
