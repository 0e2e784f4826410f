"""Reading spec tables (scenario files, contracts, price terms) with pydantic models.

A :class:`SpecTable` is a pydantic model with ``extra="forbid"`` whose problems come out
as one :class:`~cotenant.model.errors.SpecError` naming the dotted field at fault
(``tenants[1].contract.commitment.gpus``), with the same one-line wording the hand
checks had. The field types below (``Whole``, ``Flag``, ``Duration``, ``Time``, ...)
check a raw TOML value strictly (a boolean is not a number, ``"4"`` is not a count)
and carry a JSON Schema for editors.

A check that needs more than one value or the cluster (a commitment larger than the
cluster, a term that ends before it starts) is made after the model is read, by the
code that builds the domain object; it raises ``SpecError`` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from cotenant.model.errors import SpecError
from cotenant.model.time import EXAMPLES, parse_duration, parse_time

T = TypeVar("T", bound="SpecTable")
MAX_DURATION_S = 100 * 365 * 86_400  # a century bounds every duration
MAX_TIME_S = 1 << 40  # Unix seconds (about the year 36,800)


def problem(text: str, at: str | int | None = None) -> PydanticCustomError:
    """An error to raise inside a validator: ``text`` is the whole problem; ``at`` (a key
    or an index) names a part of the value being checked, appended to its field."""
    ctx: dict[str, Any] = {"problem": text}
    if at is not None:
        ctx["at"] = at
    return PydanticCustomError("spec", "{problem}", ctx)


class SpecTable(BaseModel):
    """A TOML table. An unknown key fails naming it and listing the valid ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def keys(cls) -> list[str]:
        return list(cls.model_fields)

    @classmethod
    def unknown_key(cls, key: str) -> str:
        """The problem for an unknown key (a subclass may word it its own way)."""
        return f"unknown key; valid: {', '.join(sorted(cls.keys()))}"

    @classmethod
    def not_a_table(cls, raw: Any) -> str:
        """The problem for a value that is not a table."""
        return "must be a table"

    @classmethod
    def read(cls: type[T], raw: Any, field: str = "") -> T:
        """``raw`` checked and read; any problem raises ``SpecError`` naming the field."""
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise spec_error(e, field) from None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            raise problem(cls.not_a_table(raw))
        for key in raw:
            if key not in cls.model_fields:
                raise problem(cls.unknown_key(str(key)), at=str(key))
        return raw


def dotted(loc: Sequence[str | int], field: str = "") -> str:
    """``("tenants", 1, "name")`` under ``field`` as ``field.tenants[1].name``."""
    out = field
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


_GENERIC = {
    "missing": "is required",
    "model_type": "must be a table",
    "dict_type": "must be a table",
    "list_type": "must be an array",
    "extra_forbidden": "unknown key",
}


def spec_error(e: ValidationError, field: str = "") -> SpecError:
    """The first problem of a validation error as a ``SpecError`` naming its field."""
    err = e.errors(include_url=False)[0]
    loc = list(err["loc"])
    ctx = err.get("ctx") or {}
    if err["type"] == "spec":
        if "at" in ctx:
            loc.append(ctx["at"])
        return SpecError(dotted(loc, field) or "scenario", str(ctx["problem"]))
    text = _GENERIC.get(err["type"], err["msg"])
    return SpecError(dotted(loc, field) or "scenario", text)


# -- field types ---------------------------------------------------------------------------


def _integer(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise problem(f"must be an integer, got {v!r}")
    return v


def _whole_at_least(low: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise problem(f"must be a whole number >= {low}, got {v!r}")
        return v

    return check


def _flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise problem(f"must be true or false, got {v!r}")
    return v


def _text(v: Any) -> str:
    """Read as text whatever it is (names and descriptions were always taken so)."""
    return str(v)


def _duration(v: Any) -> int:
    if not isinstance(v, str | int | float):  # (a table, an array: not a duration)
        raise problem(f"expected a duration ({EXAMPLES}), got {v!r}")
    try:
        s = parse_duration(v, "")
    except SpecError as e:
        raise problem(e.problem) from None
    if s > MAX_DURATION_S:
        raise problem(f"must be at most a century, got {v!r}")
    return s


def _positive_duration(v: Any) -> int:
    s = _duration(v)
    if s <= 0:
        raise problem("must be > 0")
    return s


def _time(v: Any) -> int:
    try:
        t = parse_time(v, "")
    except SpecError as e:
        raise problem(e.problem) from None
    if not 0 <= t <= MAX_TIME_S:
        raise problem(f"must be a time between 1970 and the year 36,812, got {v!r}")
    return t


_DURATION_SCHEMA = {
    "anyOf": [{"type": "string"}, {"type": "number", "minimum": 0}],
    "description": f"a duration ({EXAMPLES})",
}
_TIME_SCHEMA = {
    "anyOf": [{"type": "string"}, {"type": "integer"}],
    "description": "an ISO date or date-time (UTC unless it says otherwise), or Unix seconds",
}

Integer = Annotated[int, BeforeValidator(_integer)]
Whole = Annotated[
    int, BeforeValidator(_whole_at_least(0)), WithJsonSchema({"type": "integer", "minimum": 0})
]
Count = Annotated[
    int, BeforeValidator(_whole_at_least(1)), WithJsonSchema({"type": "integer", "minimum": 1})
]
Flag = Annotated[bool, BeforeValidator(_flag)]
Text = Annotated[str, BeforeValidator(_text)]
Duration = Annotated[int, BeforeValidator(_duration), WithJsonSchema(_DURATION_SCHEMA)]
PositiveDuration = Annotated[
    int, BeforeValidator(_positive_duration), WithJsonSchema(_DURATION_SCHEMA)
]
Time = Annotated[int, BeforeValidator(_time), WithJsonSchema(_TIME_SCHEMA)]


def one_of(valid: Sequence[str], what: str) -> Callable[[Any], str]:
    """A validator for a name from ``valid``; the problem names ``what`` and lists them."""

    def check(v: Any) -> str:
        if not isinstance(v, str) or v not in valid:
            raise problem(f"unknown {what} {v!r}; valid: {', '.join(valid)}")
        return v

    return check
