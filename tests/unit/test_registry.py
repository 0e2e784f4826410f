"""The one plug-in registry: name -> factory, aliases, and an unknown name that fails with
the valid names; the policy, backend and trace families all go through it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cotenant.backends import BACKENDS, get_backend
from cotenant.model.errors import SpecError
from cotenant.model.registry import Registry
from cotenant.scheduler.policies import POLICIES, get_policy, policy_names
from cotenant.traces import LOADERS, load_trace


def shapes() -> Registry[Callable[[], str]]:
    reg: Registry[Callable[[], str]] = Registry("shape", "shape")
    reg.add("square", lambda: "square")
    reg.add("circle", lambda: "circle", aliases=("round", "disc"))
    return reg


@pytest.mark.parametrize(
    ("name", "made"),
    [("square", "square"), ("circle", "circle"), ("round", "circle"), ("disc", "circle")],
)
def test_a_name_or_an_alias_gives_its_factory(name: str, made: str) -> None:
    assert shapes().get(name)() == made


def test_names_are_the_canonical_ones_sorted() -> None:
    reg = shapes()
    assert reg.names() == ["circle", "square"]
    assert list(reg) == ["circle", "square"]
    assert reg.aliases() == {"round": "circle", "disc": "circle"}
    assert "round" in reg and "triangle" not in reg


def test_an_unknown_name_fails_with_the_valid_names() -> None:
    with pytest.raises(SpecError) as err:
        shapes().get("triangle", field="cfg.shape")
    assert err.value.field == "cfg.shape"
    assert err.value.problem == "unknown shape 'triangle'; valid: circle, square"


def test_a_name_is_taken_once() -> None:
    reg = shapes()
    with pytest.raises(ValueError, match="twice"):
        reg.add("round", lambda: "round")


def test_a_family_that_registers_on_import_is_loaded_before_the_first_lookup() -> None:
    loaded: list[bool] = []
    reg: Registry[Callable[[], str]] = Registry("thing", "thing", lambda: loaded.append(True))
    assert not loaded
    assert reg.names() == []
    assert reg.names() == []
    assert loaded == [True]


@pytest.mark.parametrize(
    ("lookup", "field", "problem"),
    [
        pytest.param(
            lambda: get_policy("fifo-backfil"),
            "policy",
            "unknown policy 'fifo-backfil'; valid: contract, fifo, fifo-backfill, las, sjf",
            id="policy",
        ),
        pytest.param(
            lambda: get_backend("k8s"),
            "backend",
            "unknown backend 'k8s'; valid: local, sim, slurm",
            id="backend",
        ),
        pytest.param(
            lambda: load_trace("helios", "x.csv"),
            "trace.kind",
            "unknown trace kind 'helios'; valid: alibaba-2023, csv, philly",
            id="trace",
        ),
    ],
)
def test_each_family_fails_the_same_way(
    lookup: Callable[[], object], field: str, problem: str
) -> None:
    with pytest.raises(SpecError) as err:
        lookup()
    assert (err.value.field, err.value.problem) == (field, problem)


def test_the_families_are_registries() -> None:
    assert policy_names() == POLICIES.names() == ["contract", "fifo", "fifo-backfill", "las", "sjf"]
    assert BACKENDS.names() == ["local", "sim", "slurm"]
    assert LOADERS.names() == ["alibaba-2023", "csv", "philly"]
    assert LOADERS.get("alibaba") is LOADERS.get("alibaba-2023")
