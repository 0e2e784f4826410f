"""Debian's Chromium driven by Playwright, for the console's browser tests.

Playwright's own browser download cannot work here (and is not wanted): it drives the
system Chromium (``.ci/install-services.sh`` installs it). Every page the tests open is
watched: JavaScript errors, requests to any host but the server, and the text of every
response, so a test can check what reached the browser, not only what it shows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("COTENANT_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def browser_unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (.ci/install-services.sh installs it)"
    return None


@dataclass
class Watch:
    """What one page did: errors, foreign requests, and the bodies of its responses."""

    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    bodies: list[tuple[str, str]] = field(default_factory=list)
    statuses: list[tuple[str, int]] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("response", self._response)
        page.route("**/*", self._route)

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text}")

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.origin) or url.startswith("data:"):
            route.continue_()
        else:  # the network beyond the server is unreachable
            self.foreign.append(url)
            route.abort()

    def _response(self, resp: Any) -> None:
        self.statuses.append((resp.url, resp.status))
        ctype = resp.headers.get("content-type", "")
        if resp.url.startswith(self.origin) and ("html" in ctype or "json" in ctype):
            # (a redirect, or a page navigated away from, has no body to read)
            with contextlib.suppress(Exception):
                self.bodies.append((resp.url, resp.text()))

    def clear(self) -> None:
        self.errors.clear()
        self.foreign.clear()
        self.bodies.clear()
        self.statuses.clear()


@contextmanager
def chromium() -> Iterator[Any]:
    """One headless Chromium; Playwright gives each launch a fresh temporary profile
    (its own ``--user-data-dir``), removed when the browser closes."""
    reason = browser_unavailable()
    if reason is not None:
        if os.environ.get("COTENANT_REQUIRE_SERVICES", "") == "1":
            pytest.fail(f"COTENANT_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()
