"""What a study varies: scenario values by their dotted path as written in the scenario
file, and the few run settings that are not in the file.

A key is applied to the parsed TOML table, then the scenario is parsed as usual, so a bad
value fails with the parser's own one-line error naming the field. Arrays of tables are
addressed by an element's ``name`` (``tenants.lessee-lab.contract.notice.period``) or by
its index (``tenants.1...`` or ``tenants[1]...``, as the parser's errors write it).

Run settings (``run.*``):
- ``run.failure_scale``: multiply the scenario's failure rates (0: none), as
  ``simulate --failure-scale``;
- ``run.notice.<tenant>``: the date that tenant gives notice (``none``: it does not),
  i.e. its ``contract.notice.given_at``;
- ``run.spare_gpus``: the spare pool, the GPUs no commitment covers: the
  ``commitment.reserve_gpus`` of the tenant that takes all available capacity.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from cotenant.model.errors import SpecError
from cotenant.twin.scenario import BUILTIN, Scenario, parse_scenario, parse_toml

RUN_KEYS = ("run.failure_scale", "run.notice.<tenant>", "run.spare_gpus")
NONE_WORDS = {"none", "never", "no"}
_INDEX = re.compile(r"\[(\d+)\]")


class VaryError(SpecError):
    """A ``--vary`` key or value the scenario does not accept; names the key."""


@dataclass(frozen=True)
class Assignment:
    """One key set to one value; ``text`` is the value as the user wrote it."""

    key: str
    value: Any
    text: str


@dataclass(frozen=True)
class Variant:
    """One point of the grid: the assignments, in the order of the ``--vary`` options."""

    assignments: tuple[Assignment, ...] = ()

    @property
    def label(self) -> str:
        if not self.assignments:
            return "as written"
        if len(self.assignments) == 1:
            return self.assignments[0].text
        return ", ".join(f"{_short(a.key)}={a.text}" for a in self.assignments)

    def canonical(self) -> list[list[str]]:
        """What identifies the variant in the cache key."""
        return [[a.key, a.text] for a in self.assignments]


@dataclass(frozen=True)
class BaseScenario:
    """The scenario file's text, read once, and what a run needs to rebuild it anywhere."""

    name: str
    source: str
    text: str
    base_dir: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def read_base(name_or_path: str) -> BaseScenario:
    """A built-in scenario by name or a TOML file by path, as text plus its table."""
    if name_or_path in BUILTIN:
        builtin = resources.files("cotenant.twin.scenarios").joinpath(f"{name_or_path}.toml")
        text = builtin.read_text()
        source, base_dir = f"scenario {name_or_path}", None
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise SpecError(
                "scenario",
                f"no built-in scenario or file named {name_or_path!r}; "
                f"built-in: {', '.join(BUILTIN)}",
            )
        text = path.read_text()
        source, base_dir = str(path), str(path.resolve().parent)
    raw = parse_toml(text, source)
    return BaseScenario(str(raw.get("name", "scenario")), source, text, base_dir, raw)


def parse_vary(option: str) -> list[Assignment]:
    """``KEY=V1,V2,...`` to one assignment per value (values read as TOML: numbers,
    booleans, dates, quoted strings, arrays; anything else is a bare string)."""
    key, sep, values = option.partition("=")
    key = key.strip()
    if not sep or not key:
        raise VaryError("--vary", f"expected KEY=V1,V2,..., got {option!r}")
    texts = [v.strip() for v in split_values(values)]
    if not texts or any(not t for t in texts):
        raise VaryError(f"--vary {key}", f"give one or more values separated by commas: {option!r}")
    if len(set(texts)) != len(texts):
        raise VaryError(f"--vary {key}", f"a value appears twice in {values!r}")
    if key == "seed":
        raise VaryError("--vary seed", "the seeds are the study's other axis: use --seeds N")
    return [Assignment(key, parse_value(t), t) for t in texts]


def split_values(text: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes."""
    out: list[str] = []
    depth, quote = 0, ""
    cur: list[str] = []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return out


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def grid(axes: Sequence[Sequence[Assignment]]) -> list[Variant]:
    """Every combination, the first value of every axis first (the baseline)."""
    if not axes:
        return [Variant()]
    keys = [a[0].key for a in axes]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise VaryError(f"--vary {dup}", "the key is given twice; list all values in one --vary")
    return [Variant(tuple(c)) for c in itertools.product(*axes)]


@dataclass(frozen=True)
class RunSpec:
    """A variant made concrete for one seed: the scenario and the settings not in it."""

    scenario: Scenario
    failure_scale: float | None = None


def build(
    base: BaseScenario, variant: Variant, seed: int | None = None, days: float | None = None
) -> RunSpec:
    """The scenario of one run: the variant applied to the file's table, then parsed and
    checked (the energy and failure tables too), so a bad key or value fails here, before
    any run starts, with one line naming it."""
    raw: dict[str, Any] = copy.deepcopy(dict(base.raw or parse_toml(base.text, base.source)))
    scale: float | None = None
    for a in variant.assignments:
        if a.key == "run.failure_scale":
            scale = _scale(a)
        elif a.key.startswith("run."):
            _apply_run_setting(raw, a)
        else:
            set_path(raw, a.key, a.value)
    if seed is not None:
        raw["seed"] = seed
    where = _where(variant)
    try:
        sc = parse_scenario(raw, Path(base.base_dir) if base.base_dir else None)
        _check_sections(sc, scale)
    except VaryError:
        raise
    except SpecError as e:
        raise VaryError(e.field, e.problem, where or base.source) from None
    if days is not None:
        sc = replace(sc, duration_s=int(days * 86_400))
    return RunSpec(sc, scale)


def _where(variant: Variant) -> str:
    return " ".join(f"--vary {a.key}={a.text}" for a in variant.assignments)


def _check_sections(sc: Scenario, scale: float | None) -> None:
    from cotenant.faults.injector import parse_failure_settings
    from cotenant.metering.run import parse_metering_settings

    parse_metering_settings(sc.sections.get("energy"))
    parse_failure_settings(sc.sections.get("failures"), scale)


def _scale(a: Assignment) -> float:
    v = a.value
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise VaryError(f"--vary {a.key}", f"must be a finite number >= 0, got {a.text!r}")
    return float(v)


def _apply_run_setting(raw: dict[str, Any], a: Assignment) -> None:
    parts = a.key.split(".")
    if parts[:2] == ["run", "notice"] and len(parts) == 3:
        tenant = _element(raw, ["tenants"], "tenants", parts[2], a.key)
        contract = tenant.get("contract")
        if not isinstance(contract, dict):
            raise VaryError(
                f"--vary {a.key}", f"tenant {parts[2]!r} has no contract to give notice on"
            )
        notice = contract.setdefault("notice", {})
        if not isinstance(notice, dict):
            raise VaryError(f"--vary {a.key}", "the tenant's contract.notice is not a table")
        if isinstance(a.value, str) and a.value.strip().lower() in NONE_WORDS:
            notice.pop("given_at", None)
        else:
            notice["given_at"] = a.value
        return
    if a.key == "run.spare_gpus":
        v = a.value
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise VaryError(
                f"--vary {a.key}", f"must be a whole number of GPUs >= 0, got {a.text!r}"
            )
        for t in raw.get("tenants", []):
            cm = (t.get("contract") or {}).get("commitment") if isinstance(t, dict) else None
            if isinstance(cm, dict) and cm.get("all_available"):
                cm["reserve_gpus"] = v
                return
        raise VaryError(
            f"--vary {a.key}",
            "the spare pool is the reserve of the tenant that takes all available capacity; "
            "no tenant here has all_available = true (vary its commitments instead)",
        )
    raise VaryError(f"--vary {a.key}", f"unknown run setting; valid: {', '.join(RUN_KEYS)}")


def set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (dotted, as in the file) to ``value``; intermediate tables that the file
    leaves out are created (the parser then rejects a name it does not know)."""
    parts = [p for p in _INDEX.sub(r".\1", key).split(".")]
    if any(not p for p in parts):
        raise VaryError(f"--vary {key}", "an empty part in the dotted key")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        here = ".".join(parts[:i]) or "the scenario"
        if isinstance(node, list):
            node = _element_of(node, parts[:i], part, key)
            if last:
                raise VaryError(f"--vary {key}", "names a whole table; give a key inside it")
            continue
        if not isinstance(node, dict):
            raise VaryError(f"--vary {key}", f"{here} is a value, not a table")
        if last:
            if isinstance(node.get(part), dict | list):
                raise VaryError(f"--vary {key}", "names a whole table; give a key inside it")
            node[part] = value
            return
        node = node.setdefault(part, {})


def _element(raw: dict[str, Any], path: list[str], what: str, name: str, key: str) -> Any:
    node: Any = raw
    for p in path:
        node = node.get(p, []) if isinstance(node, dict) else []
    if not isinstance(node, list):
        raise VaryError(f"--vary {key}", f"{what} is not an array of tables")
    return _element_of(node, path, name, key)


def _element_of(items: list[Any], path: list[str], part: str, key: str) -> Any:
    where = ".".join(path)
    if part.isdigit():
        i = int(part)
        if i >= len(items):
            raise VaryError(f"--vary {key}", f"{where} has {len(items)} entries; no index {i}")
        return items[i]
    names = [str(x.get("name")) for x in items if isinstance(x, dict)]
    for x in items:
        if isinstance(x, dict) and x.get("name") == part:
            return x
    raise VaryError(
        f"--vary {key}", f"no entry named {part!r} in {where}; have: {', '.join(names) or 'none'}"
    )


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


__all__ = [
    "RUN_KEYS",
    "Assignment",
    "BaseScenario",
    "RunSpec",
    "Variant",
    "VaryError",
    "build",
    "grid",
    "parse_value",
    "parse_vary",
    "read_base",
    "set_path",
    "split_values",
]
