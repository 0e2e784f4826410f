"""Time is integer seconds everywhere in the core."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from typing import Any

MINUTE = 60
HOUR = 3600
DAY = 86_400
_UNITS = {"w": 7 * DAY, "d": DAY, "h": HOUR, "m": MINUTE, "s": 1}
_COMPOUND = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)[wdhms]")
_SLURM = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
EXAMPLES = "e.g. '90d', '1h30m', '45s', seconds, or Slurm's '1:30:00' and '2-00:00:00'"


def _slurm_seconds(s: str) -> float | None:
    """Slurm's time forms with a ``:`` or a ``-``: ``MM:SS``, ``HH:MM:SS``, ``D-HH``,
    ``D-HH:MM`` and ``D-HH:MM:SS`` (a plain number stays seconds here, not minutes)."""
    m = _SLURM.fullmatch(s)
    if m is None:
        return None
    days, a, b, c = m.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        h, mi, se = int(a), int(b or 0), int(c or 0)
        return int(days) * DAY + h * HOUR + mi * MINUTE + se
    if c is not None:  # HH:MM:SS
        return int(a) * HOUR + int(b) * MINUTE + int(c)
    return int(a) * MINUTE + int(b)  # MM:SS (b is set: the text has a ':')


def parse_duration(text: str | int | float, field: str) -> int:
    """Parse ``90d``, ``12h``, ``30m``, ``45s``, compounds such as ``1h30m`` or ``2d12h``,
    Slurm's ``1:30:00`` / ``2-00:00:00``, or a plain number of seconds."""
    from cotenant.model.errors import SpecError

    if isinstance(text, bool):
        raise SpecError(field, f"expected a duration ({EXAMPLES})")
    value: float | None
    if isinstance(text, int | float):
        value = float(text)
    else:
        s = text.strip().lower().replace(" ", "")
        sign = -1.0 if s.startswith("-") else 1.0
        s = s.removeprefix("-")
        value = None
        if s.startswith(("-", "+")):
            pass
        elif ":" in s or "-" in s[1:]:
            value = _slurm_seconds(s)
        elif s and s[-1] in _UNITS:
            parts = _COMPOUND.findall(s)
            if "".join(parts) == s:
                value = sum(float(p[:-1]) * _UNITS[p[-1]] for p in parts)
        else:
            try:
                value = float(s)
            except ValueError:
                value = None
        if value is None:
            raise SpecError(field, f"cannot read {text!r} as a duration ({EXAMPLES})")
        value *= sign
    if not math.isfinite(value):
        raise SpecError(field, f"must be a finite duration, got {text!r}")
    if value < 0:
        raise SpecError(field, f"must not be negative, got {text!r}")
    return round(value)


def parse_time(v: Any, f: str) -> int:
    """An ISO date or date-time (UTC unless it says otherwise), or Unix seconds."""
    from cotenant.model.errors import SpecError

    if isinstance(v, bool):
        raise SpecError(f, f"expected a date, got {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, datetime):
        dt = v if v.tzinfo else v.replace(tzinfo=UTC)
        return int(dt.timestamp())
    if isinstance(v, date):
        return int(datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp())
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise SpecError(
                f, f"cannot read {v!r} as a date (use 2026-10-01 or 2026-10-01T00:00Z)"
            ) from None
        dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        return int(dt.timestamp())
    raise SpecError(f, f"expected a date, got {v!r}")
