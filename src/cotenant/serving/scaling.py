"""The autoscaler's policy: how many replicas a service asks for at each tick. Pure.

At tick ``t`` (every ``tick_s`` from the run's start):

1. ``want(t)``: replicas the M/M/c model needs for ``headroom x`` the peak demand over
   the look-ahead window ``[t, t + lookahead]``, within ``[min_replicas, max_replicas]``.
2. Scale up at once when ``want(t)`` exceeds the replicas asked for, to
   ``ceil(want(t) x (1 + scale_step))`` (the overshoot saves a decision at every small rise).
3. Scale down only when ``hold(t)``, the highest ``want`` over ``[t - scale_down_hold, t]``,
   is below what is asked for (demand has stayed below for the whole hold period), to
   ``ceil(hold(t) x (1 + scale_step))``, and only if that releases at least
   ``scale_step`` of the replicas (at least one): a dead band against flapping.

The demand curve is given (docs/design/0007-serving.md, non-goals), so ``want`` and
``hold`` are computed for every tick up front with one vectorised replica search; a
decision at a tick depends only on them and on the replicas asked for, which only the
autoscaler changes. So :meth:`ReplicaPlan.next_decision` can say at which tick the next
decision falls, and the engine is woken only then: ticks at which nothing would change
cost nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cotenant.serving.demand import DemandCurve
from cotenant.serving.queueing import ServiceSpec, replicas_needed_many
from cotenant.serving.services import ScalingTerms


class ScaleReason(StrEnum):
    SCALE_UP = "scale-up-lookahead"  # look-ahead demand needs more replicas than asked for
    SCALE_DOWN = "scale-down-held"  # demand stayed below for the hold period


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """One decision: ask for ``to`` replicas instead of ``frm``, and why."""

    t: int
    frm: int
    to: int
    reason: ScaleReason
    peak_rps: float  # peak demand in the window that drove it (look-ahead or hold)
    needed: int  # replicas the model needs for headroom x peak_rps

    def detail(self, headroom: float, lookahead_s: int, hold_s: int) -> str:
        if self.reason is ScaleReason.SCALE_UP:
            return (
                f"peak demand {self.peak_rps:,.1f} req/s over the next {lookahead_s} s, "
                f"x{headroom:g} headroom, needs {self.needed} replicas"
            )
        return (
            f"demand over the last {hold_s} s needed at most {self.needed} replicas "
            f"(peak {self.peak_rps:,.1f} req/s x{headroom:g})"
        )


class ReplicaPlan:
    """``want`` and ``hold`` at every tick of ``[start_s, end_s]`` for one service."""

    def __init__(
        self,
        spec: ServiceSpec,
        terms: ScalingTerms,
        curve: DemandCurve,
        start_s: int,
        end_s: int,
        lookahead_s: int,
    ) -> None:
        self.spec = spec
        self.terms = terms
        self.curve = curve
        self.start_s = start_s
        self.lookahead_s = lookahead_s
        tick = terms.tick_s
        self.ticks = np.arange(start_s, end_s + 1, tick, dtype=np.int64)
        cap = spec.max_replicas
        need = replicas_needed_many(
            curve.rps * terms.headroom,
            spec.throughput_rps_per_replica,
            spec.latency_target_s,
            spec.latency_quantile,
            spec.min_replicas,
            cap,
            spec.servers_per_replica,
        )
        if cap is not None:
            need = np.minimum(need, cap)
        lo = np.searchsorted(curve.times_s, self.ticks, side="right") - 1
        hi = np.searchsorted(curve.times_s, self.ticks + lookahead_s, side="right")
        lo = np.maximum(lo, 0)
        self.want: NDArray[np.int64] = _window_max(need, lo, hi, spec.min_replicas).astype(np.int64)
        self.peak_rps: NDArray[np.float64] = _window_max(curve.rps, lo, hi, 0.0).astype(np.float64)
        width = max(0, terms.scale_down_hold_s // tick)
        self.hold: NDArray[np.int64] = _trailing_max(self.want, width).astype(np.int64)
        self.hold_rps: NDArray[np.float64] = _trailing_max(self.peak_rps, width).astype(np.float64)
        step = terms.scale_step
        down = np.ceil(self.hold * (1.0 + step) - 1e-9).astype(np.int64)
        down = np.maximum(down, spec.min_replicas)
        self.down_to = down if cap is None else np.minimum(down, cap)

    def index(self, t: int) -> int:
        """The tick at ``t`` (which must be on the grid)."""
        k, r = divmod(t - self.start_s, self.terms.tick_s)
        if r or not (0 <= k < self.ticks.size):
            raise ValueError(f"{t} is not a tick of this plan")
        return k

    def _up_to(self, want: int) -> int:
        to = math.ceil(want * (1.0 + self.terms.scale_step) - 1e-9)
        cap = self.spec.max_replicas
        return max(want, to if cap is None else min(to, cap))

    def _band(self, asked: int) -> int:
        return max(1, math.ceil(self.terms.scale_step * asked - 1e-9))

    def decide(self, k: int, asked: int) -> ScaleDecision | None:
        """The decision at tick ``k`` with ``asked`` replicas asked for (None: keep)."""
        t = int(self.ticks[k])
        want = int(self.want[k])
        if want > asked:
            return ScaleDecision(
                t, asked, self._up_to(want), ScaleReason.SCALE_UP, float(self.peak_rps[k]), want
            )
        to = int(self.down_to[k])
        if asked - to >= self._band(asked):
            return ScaleDecision(
                t, asked, to, ScaleReason.SCALE_DOWN, float(self.hold_rps[k]), int(self.hold[k])
            )
        return None

    def next_decision(self, k: int, asked: int) -> int | None:
        """The first tick after ``k`` at which :meth:`decide` would act (None: none left)."""
        later = slice(k + 1, None)
        hit = (self.want[later] > asked) | (self.down_to[later] <= asked - self._band(asked))
        found = np.flatnonzero(hit)
        return None if found.size == 0 else k + 1 + int(found[0])


def _window_max(
    values: NDArray[Any], lo: NDArray[np.int64], hi: NDArray[np.int64], empty: float
) -> NDArray[Any]:
    """``max(values[lo[i]:hi[i]])`` for each i, ``empty`` where the window is empty."""
    ext = np.append(values, values[:1])  # a valid index at len(values) for reduceat
    pairs = np.empty(lo.size * 2, dtype=np.int64)
    pairs[0::2] = lo
    pairs[1::2] = hi
    out = np.maximum.reduceat(ext, pairs)[0::2]
    return np.where(hi > lo, out, empty).astype(values.dtype)


def _trailing_max(values: NDArray[Any], width: int) -> NDArray[Any]:
    """``max(values[i - width : i + 1])``, the window clipped at the start."""
    if width <= 0 or values.size == 0:
        return values.copy()
    padded = np.concatenate([np.full(width, values[0], dtype=values.dtype), values])
    view = np.lib.stride_tricks.sliding_window_view(padded, width + 1)
    return np.asarray(view.max(axis=1), dtype=values.dtype)
