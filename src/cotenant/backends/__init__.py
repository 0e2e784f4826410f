"""Backends, chosen by name: ``sim`` (the digital twin), ``local`` (processes on this
host), ``slurm`` (a Slurm cluster runs the work; cotenant stays the scheduler).

``get_backend(name, **settings)`` builds one; an unknown name, a setting the backend
does not take, or a missing one fails with a message naming the valid ones. The
classes are imported on demand, so the local backend's wrapper (a module of this
package) starts without loading the rest.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from cotenant.backends.base import Backend
from cotenant.model.errors import SpecError
from cotenant.model.registry import Registry

BackendClass = Callable[..., Backend]


def _sim() -> BackendClass:
    from cotenant.backends.sim import SimBackend

    return SimBackend


def _local() -> BackendClass:
    from cotenant.backends.local import LocalBackend

    return LocalBackend


def _slurm() -> BackendClass:
    from cotenant.backends.slurm import SlurmBackend

    return SlurmBackend


# Name -> loader of the backend's class. Settings are the class's keyword arguments.
BACKENDS: Registry[Callable[[], BackendClass]] = Registry("backend", "backend")
BACKENDS.add("sim", _sim)
BACKENDS.add("local", _local)
BACKENDS.add("slurm", _slurm)


def backend_names() -> list[str]:
    return BACKENDS.names()


def get_backend(name: str, field: str = "backend", **settings: Any) -> Backend:
    """The backend ``name`` built with ``settings``: ``topo`` and ``state_dir`` for
    local, ``topo`` and ``log_dir`` for slurm (see each class for the optional ones)."""
    cls = BACKENDS.get(name, field)()
    params = inspect.signature(cls).parameters
    valid = ", ".join(params) or "none"
    for key in sorted(settings):
        if key not in params:
            raise SpecError(
                f"{field}.{key}", f"backend {name!r} takes no setting {key!r}; valid: {valid}"
            )
    for p in params.values():
        if p.default is inspect.Parameter.empty and p.name not in settings:
            raise SpecError(f"{field}.{p.name}", f"backend {name!r} needs this setting")
    return cls(**settings)
