"""Means, Student-t confidence intervals and Welch differences, without SciPy.

The t quantile comes from the t density integrated numerically (Simpson's rule on the
substitution x = tan(u), which maps the infinite tail to a finite interval) and inverted
by bisection; it matches tables to 1e-6 for any degrees of freedom >= 1, whole or not
(Welch's are not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

LEVEL = 0.95


def t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if x == 0:
        return 0.5
    # integral of the density from 0 to |x|, with t = tan(u): dt = sec^2(u) du
    top = math.atan(abs(x))
    u = np.linspace(0.0, top, 2001)
    t = np.tan(u)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    f = np.exp(log_c - (df + 1) / 2 * np.log1p(t * t / df)) / np.cos(u) ** 2
    h = top / 2000
    area = h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    half = float(min(0.5, area))
    return 0.5 + half if x > 0 else 0.5 - half


@lru_cache(maxsize=512)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``df`` degrees of freedom."""
    if not 0.5 < p < 1:
        raise ValueError(f"p must be in (0.5, 1), got {p}")
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    """A mean (or a difference) with its two-sided confidence interval."""

    n: int
    mean: float
    low: float | None  # None: one sample, no interval
    high: float | None

    @property
    def half(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    def covers(self, x: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= x <= self.high

    def to_json(self) -> dict[str, float | int | None]:
        return {"n": self.n, "mean": self.mean, "low": self.low, "high": self.high}


def mean_ci(xs: Sequence[float], level: float = LEVEL) -> Interval:
    """The sample mean with its Student-t interval (the runs are independent draws)."""
    a = np.asarray(xs, dtype=float)
    n = len(a)
    if n == 0:
        raise ValueError("no samples")
    m = float(a.mean())
    if n == 1:
        return Interval(1, m, None, None)
    sd = float(a.std(ddof=1))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return Interval(n, m, m - half, m + half)


@dataclass(frozen=True)
class Difference:
    """Variant minus baseline, Welch's interval, and whether it is within the noise
    (the interval contains zero)."""

    diff: Interval
    df: float | None

    @property
    def within_noise(self) -> bool:
        d = self.diff
        if d.low is None or d.high is None:
            return True  # one run each: no way to tell it from the noise
        return d.low <= 0 <= d.high

    def to_json(self) -> dict[str, object]:
        return {**self.diff.to_json(), "df": self.df, "within_noise": self.within_noise}


def welch(xs: Sequence[float], base: Sequence[float], level: float = LEVEL) -> Difference:
    """mean(xs) - mean(base) with Welch's interval (unequal variances)."""
    a, b = np.asarray(xs, dtype=float), np.asarray(base, dtype=float)
    d = float(a.mean() - b.mean())
    n = min(len(a), len(b))
    if len(a) < 2 or len(b) < 2:
        return Difference(Interval(n, d, None, None), None)
    va, vb = float(a.var(ddof=1)) / len(a), float(b.var(ddof=1)) / len(b)
    se2 = va + vb
    if se2 == 0:  # no spread at all: the difference is exact
        return Difference(Interval(n, d, d, d), None)
    df = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(0.5 + level / 2, df) * math.sqrt(se2)
    return Difference(Interval(n, d, d - half, d + half), df)


__all__ = ["LEVEL", "Difference", "Interval", "mean_ci", "t_cdf", "t_quantile", "welch"]
