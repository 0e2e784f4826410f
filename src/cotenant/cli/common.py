"""What every ``cotenant`` command shares: the consoles, and errors a user can fix
printed as one line, with no traceback, exit code 2.

Imports nothing from the other ``cli`` modules, so any of them may import it at the top
(``cli/main.py`` imports the command modules at its end: a module it imports must not
import ``cli.main`` back, or ``python -m cotenant.cli.main`` loads it twice).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from cotenant.model.errors import CotenantError

console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err_console.print("error: " + message, style="bold red", highlight=False, markup=False)
    raise typer.Exit(code)


MAX_DAYS = 36_500  # a century bounds every --days


def days_seconds(days: float, field: str = "--days") -> int:
    """A ``--days`` value as whole seconds: finite, > 0, at most a century."""
    import math

    if not math.isfinite(days) or days <= 0:
        fail(f"{field}: must be a number of days > 0, got {days:g}")
    if days > MAX_DAYS:
        fail(f"{field}: at most {MAX_DAYS:,} days (a century), got {days:g}")
    return int(days * 86_400)


def _unreachable_server(e: Exception) -> bool:
    """An httpx transport error (connection refused, timeout, ...). Only the commands
    that talk to a server import httpx; if it is not loaded, the error is not one."""
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(e, httpx.TransportError)


def friendly(fn: F) -> F:
    """Domain errors, missing files and unreachable servers become one clear line and
    exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CotenantError as e:
            fail(str(e))
        except FileNotFoundError as e:
            fail(f"file not found: {e.filename}")
        except IsADirectoryError as e:
            fail(f"{e.filename} is a directory; give a file")
        except NotADirectoryError as e:
            fail(f"{e.filename}: a part of this path is not a directory")
        except PermissionError as e:
            fail(f"{e.filename}: permission denied")
        except UnicodeDecodeError as e:
            fail(f"a file is not UTF-8 text (byte {e.start}: {e.reason}); is it the right file?")
        except ModuleNotFoundError as e:
            fail(
                f"the library {e.name!r} is missing: reinstall cotenant "
                "(python3 -m pip install -e .)"
            )
        except Exception as e:
            if _unreachable_server(e):
                fail(f"cannot reach the server ({e.__class__.__name__}); is COTENANT_URL right?")
            raise

    return wrapper  # type: ignore[return-value]


__all__ = ["console", "days_seconds", "err_console", "fail", "friendly"]
