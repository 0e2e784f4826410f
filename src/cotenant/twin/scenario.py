"""Scenario files: a cluster, tenants with contracts, and workload generators.

Every value is checked when the file is read; a bad one fails with a SpecError
naming its dotted field (``tenants[1].contract.commitment.gpus``), never later
with a traceback.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from cotenant.cluster.presets import PRESETS, preset
from cotenant.cluster.topology import ClusterSpec, NodeGroup
from cotenant.contracts.schema import ContractTable, validate_contracts
from cotenant.federation.providers import ProviderSet
from cotenant.federation.spec import Names, OverflowTable, TenantProviderInput, read_providers
from cotenant.model.contracts import Contract, Tenant
from cotenant.model.errors import SpecError
from cotenant.model.spec import (
    Count,
    Duration,
    Integer,
    PositiveDuration,
    SpecTable,
    Text,
    Time,
    one_of,
    problem,
)
from cotenant.model.time import DAY
from cotenant.scheduler.policies import policy_names
from cotenant.workload.synthetic import FrontierLabWorkload, parse_workload


@dataclass(frozen=True)
class Scenario:
    name: str
    start_s: int
    duration_s: int
    seed: int
    policy: str
    cluster: ClusterSpec
    tenants: tuple[Tenant, ...]
    workloads: tuple[FrontierLabWorkload, ...] = ()
    restart_cost_s: int = 600
    checkpoint_write_s: int = 60
    sections: Mapping[str, Any] = field(default_factory=dict)  # failures, energy, services...
    base_dir: Path | None = None  # the scenario file's directory: relative paths start here
    # [[providers]] and the tenants' provider terms (None: one cluster, as before)
    providers: ProviderSet | None = None
    # The duration the workloads' counts are written for (the file's ``duration``; None:
    # ``duration_s``). A run made shorter (``--days``) is the first days of that run, not
    # the same jobs squeezed into fewer days; one made longer draws at the same rate.
    workload_span_s: int | None = None

    @property
    def end_s(self) -> int:
        return self.start_s + self.duration_s

    @property
    def sample_step_s(self) -> int:
        """The step of the report's time series: hourly for runs of 10 days or more, and
        about 240 samples (whole minutes, at least one) for a shorter run, so that the
        plots of a run of a few hours show its shape and not two samples."""
        return min(3600, max(60, self.duration_s // 240 // 60 * 60))

    def contracts(self) -> list[Contract]:
        return [t.contract for t in self.tenants if t.contract is not None]


BUILTIN = (
    "colossus-lease",
    "colossus-2-lease",
    "small-lease",
    "alibaba-serving",
    "lease-plus-cloud",
)


def builtin_names() -> list[str]:
    return list(BUILTIN)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name, or a TOML file by path."""
    text: str
    source: str
    base_dir: Path | None = None
    if str(name_or_path) in BUILTIN:
        source = f"scenario {name_or_path}"
        text = (
            resources.files("cotenant.twin.scenarios").joinpath(f"{name_or_path}.toml").read_text()
        )
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise SpecError(
                "scenario",
                f"no built-in scenario or file named {str(name_or_path)!r}; "
                f"built-in: {', '.join(BUILTIN)}",
            )
        source = str(path)
        text = path.read_text()
        base_dir = path.resolve().parent
    raw = parse_toml(text, source)
    try:
        return parse_scenario(raw, base_dir)
    except SpecError as e:
        raise SpecError(e.field, e.problem, source) from None


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """TOML text to a table; a syntax error names the source and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError("toml", str(e), source) from None


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file (UTF-8) to a table; errors name the file."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise SpecError("toml", "not a UTF-8 text file", str(path)) from None
    return parse_toml(text, str(path))


_WORKLOAD_SCHEMA = {
    "anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
    "description": "a workload generator table, or an array of them (workload/synthetic.py)",
}


def _policy(v: Any) -> str:
    """A registered policy's name (looked up when read: a policy may register later)."""
    return one_of(policy_names(), "policy")(v)


def _tenant_name(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise problem("a tenant needs a non-empty name")
    return v


def _tables(v: Any) -> list[Any]:
    """A table or an array of tables, as an array."""
    items = v if isinstance(v, list) else [v]
    for item in items:
        if not isinstance(item, Mapping):
            raise problem("must be a table")
    return items


def _tenant_tables(v: Any) -> Any:
    if not isinstance(v, list):
        raise problem("must be an array of tables ([[tenants]])")
    return v


class GroupTable(SpecTable):
    """One ``[[cluster.groups]]``: nodes of one accelerator kind."""

    model_config = ConfigDict(json_schema_extra={"required": ["accelerator", "nodes"]})

    accelerator: Text | None = None
    nodes: Count | None = None
    nodes_per_rack: Count = 8
    racks_per_block: Count = 8
    gpus_per_node: Count | None = None


class ClusterTable(SpecTable):
    """``[cluster]``: a preset by name, or node groups."""

    preset: Annotated[
        str | None,
        BeforeValidator(one_of(sorted(PRESETS), "preset")),
        WithJsonSchema({"enum": sorted(PRESETS)}),
    ] = None
    name: Text = "custom"
    groups: list[GroupTable] | None = None

    def spec(self, f: str) -> ClusterSpec:
        if self.preset is not None:
            return preset(self.preset, f"{f}.preset")
        if not self.groups:
            raise SpecError(f, "give a preset or at least one [[cluster.groups]]")
        out = []
        for i, g in enumerate(self.groups):
            if g.accelerator is None or g.nodes is None:
                raise SpecError(f"{f}.groups[{i}]", "needs accelerator and nodes")
            out.append(
                NodeGroup(
                    g.accelerator, g.nodes, g.nodes_per_rack, g.racks_per_block, g.gpus_per_node
                )
            )
        spec = ClusterSpec(self.name, tuple(out))
        spec.validate()
        return spec


class TenantTable(SpecTable):
    """One ``[[tenants]]``: a name, a contract, and the workloads it runs in the twin."""

    model_config = ConfigDict(json_schema_extra={"required": ["name"]})

    name: Annotated[str, BeforeValidator(_tenant_name)] = Field(None, validate_default=True)
    display_name: Text | None = None
    contract: ContractTable | None = None
    workload: Annotated[
        list[dict[str, Any]] | None, BeforeValidator(_tables), WithJsonSchema(_WORKLOAD_SCHEMA)
    ] = None
    providers: Names | None = Field(
        None, description="the providers it may use, in order of preference"
    )
    overflow: OverflowTable | None = None


class EngineTable(SpecTable):
    """``[engine]``: what a restart and a checkpoint cost."""

    restart_cost: Duration = Field("10m", validate_default=True)
    checkpoint_write: Duration = Field("60s", validate_default=True)


class ScenarioFile(SpecTable):
    """A scenario file as written. The ``failures``, ``energy`` and ``services`` sections
    are read by their own parsers (faults, metering, serving)."""

    name: Text = "scenario"
    description: Text | None = None
    start: Time = Field("2026-10-01T00:00:00Z", validate_default=True)
    duration: PositiveDuration = Field("30d", validate_default=True)
    seed: Integer = 0
    policy: Annotated[
        str,
        BeforeValidator(_policy),
        WithJsonSchema({"enum": policy_names()}),
    ] = "contract"
    cluster: ClusterTable = Field(default_factory=ClusterTable)
    tenants: Annotated[list[TenantTable], BeforeValidator(_tenant_tables)] = Field(
        default_factory=list
    )
    engine: EngineTable = Field(default_factory=EngineTable)
    failures: Annotated[Any, WithJsonSchema({"type": "object"})] = Field(
        None, description="failure model (faults/injector.py)"
    )
    energy: Annotated[Any, WithJsonSchema({"type": "object"})] = Field(
        None, description="site energy and power (metering/run.py)"
    )
    services: Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "object"}})] = (
        Field(None, description="inference services (serving/services.py)")
    )
    providers: Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "object"}})] = (
        Field(None, description="clusters and elastic pools (federation/spec.py)")
    )


class _TomlSchema(GenerateJsonSchema):
    """TOML has no null: an optional key is one that may be left out."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        out = super().default_schema(schema)
        if out.get("default", 0) is None:
            del out["default"]
        return out


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (for editors; TOML dates are strings in it)."""
    schema = ScenarioFile.model_json_schema(schema_generator=_TomlSchema)
    schema["title"] = "cotenant scenario"
    return schema


def parse_scenario(raw: Mapping[str, Any], base_dir: Path | None = None) -> Scenario:
    """A scenario table read and checked; a problem raises ``SpecError`` naming the field."""
    sf = ScenarioFile.read(raw)
    cluster = sf.cluster.spec("cluster")
    tenants: list[Tenant] = []
    workloads: list[FrontierLabWorkload] = []
    for i, rt in enumerate(sf.tenants):
        f = f"tenants[{i}]"
        name = rt.name
        if any(t.name == name for t in tenants):
            raise SpecError(f"{f}.name", f"tenant {name!r} appears twice")
        contract = None
        if rt.contract is not None:
            contract = rt.contract.contract(name, f"{f}.contract", sf.start, cluster)
        display = name if rt.display_name is None else rt.display_name
        tenants.append(Tenant(name, display, contract))
        for j, w in enumerate(rt.workload or ()):
            workloads.append(parse_workload(name, w, f"{f}.workload[{j}]"))
    validate_contracts(tenants, cluster)
    _check_sections(sf, [t.name for t in tenants], base_dir)
    providers = _providers(sf, raw, tenants, workloads, cluster)
    return Scenario(
        name=sf.name,
        start_s=sf.start,
        duration_s=sf.duration,
        workload_span_s=sf.duration,
        seed=sf.seed,
        policy=sf.policy,
        cluster=cluster,
        tenants=tuple(tenants),
        workloads=tuple(workloads),
        restart_cost_s=sf.engine.restart_cost,
        checkpoint_write_s=sf.engine.checkpoint_write,
        sections={k: raw[k] for k in ("failures", "energy", "services") if k in raw},
        base_dir=base_dir,
        providers=providers,
    )


def _providers(
    sf: ScenarioFile,
    raw: Mapping[str, Any],
    tenants: list[Tenant],
    workloads: list[FrontierLabWorkload],
    cluster: ClusterSpec,
) -> ProviderSet | None:
    """The scenario's providers (None when it names none: one cluster, as before)."""
    named = any(rt.providers is not None or rt.overflow is not None for rt in sf.tenants)
    if raw.get("providers") is None and not named:
        return None
    inputs = []
    for i, rt in enumerate(sf.tenants):
        jobs = [
            (f"tenants[{i}].workload[{j}].providers", w.get("providers", ()))
            for j, w in enumerate(rt.workload or ())
            if isinstance(w.get("providers", ()), list)
        ]
        inputs.append(
            TenantProviderInput(f"tenants[{i}]", rt.name, rt.providers, rt.overflow, jobs)
        )
    contracts = [t.contract for t in tenants if t.contract is not None]
    return read_providers(raw.get("providers"), inputs, cluster, contracts, sf.start, parse_cluster)


def _check_sections(sf: ScenarioFile, tenants: list[str], base_dir: Path | None) -> None:
    """Fail early, naming the field, on a bad ``failures`` or ``services`` section."""
    if sf.failures is not None:
        from cotenant.faults.injector import parse_failure_settings

        parse_failure_settings(sf.failures)
    if sf.services is not None:
        from cotenant.serving.services import parse_services

        parse_services(sf.services, tenants, sf.seed, base_dir)


def parse_cluster(raw: Any, f: str) -> ClusterSpec:
    """A ``[cluster]`` table as a cluster spec; errors name ``f.<key>``."""
    return ClusterTable.read(raw, f).spec(f)


__all__ = ["DAY", "Scenario", "builtin_names", "load_scenario", "parse_scenario"]
