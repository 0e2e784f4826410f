"""What lets ``cotenant --help`` start fast (issue 15): the root command builds a
command's click form only when that command runs or shows its own help, and typer's
rich help loads without the two modules it imports for other uses.

Typer turns every command's signature into click parameters when the command line is
built (``typer.main.get_command``): about 40 ms for our commands, of which the top-level
help needs only each command's name and first line of help. ``DeferredGroup`` lists a
described stand-in per command and builds the real command, with typer, in
``resolve_command`` (the one way click runs a subcommand, shows its help or completes it).

``typer.rich_utils`` imports ``rich.markdown`` (markdown-it, Pygments) for the
``markdown`` markup mode and ``rich.traceback`` (Pygments, attrs) for pretty
exceptions, about 90 ms; we use neither (the ``rich`` mode, pretty exceptions off).
``import_rich_help`` imports it with stand-ins for those two names that load the real
module the first time they are used, so the help looks and reads the same
(tests/unit/test_cli_start.py compares it with the help printed with the real modules).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

# typer >= 0.24 carries its own copy of click
try:
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer on click
    import click  # type: ignore[no-redef]

# (module, name) that typer.rich_utils imports by name and uses only outside the help.
RICH_EXTRAS = (("rich.markdown", "Markdown"), ("rich.traceback", "Traceback"))


class _LoadOnUse(type):
    """The metaclass of a stand-in class: calling it, or reading one of its attributes
    (``Traceback.from_exception``), imports the real module and forwards to its class."""

    _module: str

    def real(cls) -> Any:
        return getattr(importlib.import_module(cls._module), cls.__name__)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls.real()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        return getattr(cls.real(), name)


def import_rich_help() -> None:
    """Import ``typer.rich_utils`` with load-on-use stand-ins for ``RICH_EXTRAS``. The
    stand-in modules sit in ``sys.modules`` only during that import: any later
    ``import rich.markdown`` loads the real module. A no-op once it is imported, and
    for a module already loaded (then typer's import binds the real class); should
    typer import another name from them, it is imported as it is."""
    if "typer.rich_utils" in sys.modules:
        return
    placed: dict[str, types.ModuleType] = {}
    for module, name in RICH_EXTRAS:
        if module in sys.modules:
            continue
        stand_in = types.ModuleType(module, "stand-in: loads the real module on first use")
        setattr(stand_in, name, _LoadOnUse(name, (), {"_module": module, "__module__": module}))
        placed[module] = sys.modules[module] = stand_in
    try:
        importlib.import_module("typer.rich_utils")
    except ImportError:  # a typer that imports more of them: as it is, without stand-ins
        sys.modules.pop("typer.rich_utils", None)
    finally:
        for module, stand_in in placed.items():
            if sys.modules.get(module) is stand_in:
                del sys.modules[module]
    importlib.import_module("typer.rich_utils")


class Described(TyperCommand):
    """What the parent group's help shows of a command not built yet: its name, help
    and panel. ``DeferredGroup.resolve_command`` replaces it with the real command."""

    def __init__(self, info: typer.models.CommandInfo | typer.models.TyperInfo) -> None:
        self.info = info
        if isinstance(info, typer.models.CommandInfo):
            assert info.callback is not None, "a command needs a function"
            name = info.name or typer.main.get_command_name(info.callback.__name__)
            help_ = (
                inspect.getdoc(info.callback) if info.help is None else inspect.cleandoc(info.help)
            )
            attrs: Any = info
        else:
            attrs = typer.main.solve_typer_info_defaults(info)
            name, help_ = attrs.name, attrs.help
        super().__init__(
            name=name,
            help=help_,
            short_help=attrs.short_help,
            hidden=attrs.hidden,
            deprecated=attrs.deprecated,
            rich_help_panel=attrs.rich_help_panel,
            add_help_option=False,
        )


class DeferredGroup(TyperGroup):
    """A root group whose commands are the ones registered on ``deferred`` (a
    ``typer.Typer`` that is never built whole), each built the first time it is
    resolved. A subclass names ``deferred``; the app passes it as ``cls``."""

    deferred: ClassVar[typer.Typer]

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in self.deferred.registered_commands:
            self.add_command(Described(command))
        for group in self.deferred.registered_groups:
            self.add_command(Described(group))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        if name is not None and isinstance(cmd, Described):
            cmd = self.commands[name] = self.build(cmd.info)
        return name, cmd, rest

    def build(self, info: typer.models.CommandInfo | typer.models.TyperInfo) -> click.Command:
        """The command typer builds for one registration, alone in an app with the
        root's settings."""
        one = typer.Typer(
            add_completion=False,
            rich_markup_mode=self.rich_markup_mode,
            pretty_exceptions_enable=False,
        )
        if isinstance(info, typer.models.CommandInfo):
            one.registered_commands.append(info)
            return typer.main.get_command(one)
        one.registered_groups.append(info)
        group = typer.main.get_command(one)
        assert isinstance(group, TyperGroup) and info.name is not None
        return group.commands[info.name]
