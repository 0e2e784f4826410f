"""Jinja2 templates for the console, with the filters they use (UTC times, durations)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

WEB = Path(__file__).parent
STATIC = WEB / "static"


def utc(t: int | float | None) -> str:
    if t is None:
        return "—"
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%d %H:%M")


def duration(s: int | float | None) -> str:
    if s is None:
        return "—"
    s = int(s)
    if s < 0:
        return "—"
    d, r = divmod(s, 86_400)
    h, r = divmod(r, 3600)
    m, sec = divmod(r, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    if m:
        return f"{m}m {sec}s"
    return f"{sec}s"


def gpus(n: int | float | None) -> str:
    return "—" if n is None else f"{int(n):,}"


def make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(WEB / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = utc
    env.filters["duration"] = duration
    env.filters["gpus"] = gpus
    return env


ENV = make_env()


def render(name: str, **ctx: Any) -> str:
    return ENV.get_template(name).render(**ctx)
