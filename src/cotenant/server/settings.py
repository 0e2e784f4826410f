"""Service settings: defaults, then a TOML config file, then command-line options.

# cotenant.toml
db = "sqlite:///cotenant.db"      # (cotenant-demo.db with demo = true) or postgresql+psycopg://user@host/db
host = "127.0.0.1"
port = 8080
speed = 1.0                       # simulated seconds per wall second
scenario = "small-lease"          # seeds an empty store: cluster, tenants, contracts
cluster = "small-16"              # the cluster preset when there is no scenario
min_step_s = 0.05                 # at most one engine step per this many wall seconds
read_concurrency = 2              # API reads handled at once (the rest queue)
backend = "sim"                   # sim (the twin), local (processes here) or slurm
state_dir = "cotenant-runs"       # local/slurm: job output, checkpoints, run records
dependency_never_met = "cancel"   # a job whose dependency cannot be met: cancel or keep

# backend = "slurm" over several clusters, each a provider (backends/slurm_clusters.py):
[[slurm_clusters]]
name = "alpha"                    # the provider's name in cotenant
slurm_conf = "/etc/slurm-alpha/slurm.conf"
cluster = "alpha"                 # optional: its ClusterName, checked at start

# Elastic pools (server/overflow.py), each a provider beside the lease (the engine above,
# called "lease"), run by the local backend (the sim backend when backend = "sim"):
[[pools]]
name = "cloud"
accelerator = "H100-SXM-80GB"
max_gpus = 16                     # whole nodes of gpus_per_node (8)
on_demand_per_gpu_hour = "3.00"
provisioning = "30s"
data_move_per_tb = "20"
data_move_time_per_tb = "10m"

# A tenant's providers (in order of preference) and overflow terms:
[overflow.lessee-lab]
providers = ["lease", "cloud"]
budget_per_month = "20000"
max_wait = { experiment = "2h", training = "12h" }
data_gb_per_gpu = 20
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cotenant.model.errors import SpecError

DEFAULT_DB = "sqlite:///cotenant.db"
DEMO_DB = "sqlite:///cotenant-demo.db"


class SlurmClusterSettings(BaseModel):
    """One Slurm cluster of several (``slurm_clusters``): a provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    slurm_conf: str
    cluster: str | None = None


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    db: str = DEFAULT_DB  # DEMO_DB with demo = true, unless given
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    speed: float = Field(1.0, gt=0, le=1_000_000)
    scenario: str | None = None  # seeds an empty store
    cluster: str = "small-16"  # preset used when no scenario seeds the store
    policy: str = "contract"
    demo: bool = False  # seed from colossus-lease (or `scenario`) and issue one key per tenant
    start: str | int | None = None  # service-clock start for a new store (default: see serve)
    min_step_s: float = Field(0.05, ge=0, le=10)
    # API reads (GET /v1/...) handled at once; the rest wait their turn without using the
    # CPU, so readers cannot crowd the engine out of the interpreter (bench/bench_live.py).
    read_concurrency: int = Field(2, ge=1, le=256)
    log_level: str = "warning"
    backend: str = "sim"  # sim, local or slurm (cotenant.backends); real ones need speed 1
    state_dir: str = "cotenant-runs"  # local/slurm: output and checkpoints (shared for slurm)
    # Feed the scenario's workload, faults and services into the live engine (the live
    # demo). None: on for `--demo` without `--scenario`, off otherwise.
    workload: bool | None = None
    # A job whose dependency can no longer be met is cancelled, or kept pending with reason
    # dependency-never-met until its tenant cancels it (model/dependencies.py).
    dependency_never_met: Literal["cancel", "keep"] = "cancel"
    # backend slurm over several clusters, each a provider; empty: the one SLURM_CONF names
    slurm_clusters: tuple[SlurmClusterSettings, ...] = ()
    # a Slurm controller silent this long is lost: its nodes go down, its jobs requeue
    controller_timeout_s: int = Field(10, ge=1, le=3600)
    # elastic pools, each a provider beside the lease (server/overflow.py), and each
    # tenant's providers ("lease" names the engine above) and overflow terms
    pools: tuple[dict[str, Any], ...] = ()
    overflow: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def live_workload(self) -> bool:
        if self.workload is not None:
            return self.workload
        return self.demo and self.scenario is None and self.backend == "sim"

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        from cotenant.backends import BACKENDS

        if v not in BACKENDS:
            raise ValueError(f"unknown backend {v!r}; valid: {', '.join(sorted(BACKENDS))}")
        return v

    @model_validator(mode="after")
    def _real_backend(self) -> Settings:
        if self.backend != "sim":
            if self.speed != 1:
                raise ValueError(
                    f"the {self.backend} backend runs real work: speed must be 1, "
                    f"got {self.speed:g}"
                )
            d = Path(self.state_dir)
            if d.exists() and not d.is_dir():
                raise ValueError(f"state_dir {d} is a file; give a directory")
        if self.slurm_clusters:
            if self.backend != "slurm":
                raise ValueError(f"slurm_clusters needs backend slurm, not {self.backend}")
            names = [c.name for c in self.slurm_clusters]
            if len(set(names)) != len(names):
                raise ValueError(f"slurm_clusters: names must differ, got {names}")
            for c in self.slurm_clusters:
                if not Path(c.slurm_conf).is_file():
                    raise ValueError(f"slurm_clusters {c.name}: no such file {c.slurm_conf}")
        if self.pools or self.overflow:
            from cotenant.server.overflow import live_providers

            live_providers(self)  # (a SpecError naming the field: pools[0].max_gpus, ...)
        return self

    @property
    def seed_scenario(self) -> str | None:
        if self.scenario is not None:
            return self.scenario
        return "colossus-lease" if self.demo else None


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Defaults < config file < explicit overrides (None values are ignored)."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError("--config", f"no such file: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise SpecError("--config", f"{path}: {e}") from None
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if raw.get("demo") and "db" not in raw:
        raw["db"] = DEMO_DB  # the demo keeps its own store: a later `serve` starts afresh
    try:
        return Settings(**raw)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "config"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise SpecError(field, msg, str(path) if path else None) from None
