"""Time is integer seconds everywhere in the core."""

from __future__ import annotations

MINUTE = 60
HOUR = 3600
DAY = 86_400


def parse_duration(text: str | int | float, field: str) -> int:
    """Parse ``90d``, ``12h``, ``30m``, ``45s`` or a plain number of seconds."""
    from cotenant.model.errors import SpecError

    if isinstance(text, bool):
        raise SpecError(field, "expected a duration such as '90d', '12h' or seconds")
    if isinstance(text, int | float):
        value = float(text)
    else:
        s = text.strip().lower()
        units = {"d": DAY, "h": HOUR, "m": MINUTE, "s": 1, "w": 7 * DAY}
        try:
            value = float(s[:-1]) * units[s[-1]] if s and s[-1] in units else float(s)
        except ValueError:
            raise SpecError(
                field, f"cannot read {text!r} as a duration (e.g. '90d', '2h')"
            ) from None
    if value < 0:
        raise SpecError(field, f"must not be negative, got {text!r}")
    return round(value)
