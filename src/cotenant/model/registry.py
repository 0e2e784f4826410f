"""One registry for every plug-in family (policies, backends, trace loaders).

A :class:`Registry` maps a name to a factory. An unknown name fails with a
``SpecError`` that lists the valid names, so a typo in a scenario file or on the
command line is one line a user can act on. A name may have aliases (other names for
the same factory); ``names()`` lists the canonical names only. A family whose members
register themselves on import passes ``load``, called once before the first lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from cotenant.model.errors import SpecError

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """Name -> factory for one family (``kind`` names it in errors: "policy")."""

    def __init__(self, kind: str, field: str, load: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self.field = field
        self._load = load
        self._factories: dict[str, F] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, factory: F, aliases: Iterable[str] = ()) -> F:
        """Register ``factory`` under ``name`` (and its aliases); a name is taken once."""
        for n in (name, *aliases):
            if n in self._factories or n in self._aliases:
                raise ValueError(f"{self.kind} {n!r} is registered twice")
        self._factories[name] = factory
        for alias in aliases:
            self._aliases[alias] = name
        return factory

    def register(self, name: str, aliases: Iterable[str] = ()) -> Callable[[F], F]:
        """A decorator form of :meth:`add`."""

        def wrap(factory: F) -> F:
            return self.add(name, factory, tuple(aliases))

        return wrap

    def names(self) -> list[str]:
        """The canonical names, sorted."""
        self._loaded()
        return sorted(self._factories)

    def aliases(self) -> dict[str, str]:
        """Alias -> canonical name."""
        self._loaded()
        return dict(self._aliases)

    def canonical(self, name: str, field: str | None = None) -> str:
        """The canonical name for ``name`` or an alias of it; else ``SpecError`` listing
        the valid names."""
        self._loaded()
        if name in self._factories:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise SpecError(
            self.field if field is None else field,
            f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}",
        )

    def get(self, name: str, field: str | None = None) -> F:
        """The factory registered as ``name`` (or an alias of it)."""
        return self._factories[self.canonical(name, field)]

    def __contains__(self, name: object) -> bool:
        self._loaded()
        return name in self._factories or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def _loaded(self) -> None:
        if self._load is not None:
            load, self._load = self._load, None
            load()
