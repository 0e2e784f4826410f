"""Tables that fit the console: numbers and ids are never wrapped or cut, text folds, and
a table too wide for the console is stacked as several narrower ones (each repeating the
key column), so an 80-column terminal shows every figure whole."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Col:
    name: str
    number: bool = True  # right-aligned, never wrapped or cut
    whole: bool | None = None  # never wrapped or cut (default: numbers)

    @property
    def keeps_whole(self) -> bool:
        return self.number if self.whole is None else self.whole


FOLD_MIN = 20  # a folding column is at least this wide (or as wide as its longest word)


def _fold_min(c: Col, cells: Sequence[str]) -> int:
    longest = max((len(w) for x in [c.name, *cells] for w in x.split()), default=1)
    return min(longest, FOLD_MIN)


def _whole_width(c: Col, cells: Sequence[str]) -> int:
    """A whole column is as wide as its widest cell (its header wraps at spaces)."""
    head = max((len(w) for w in c.name.split()), default=0)
    return max([head, *(len(x) for x in cells)])


def _header(c: Col, cells: Sequence[str]) -> str:
    return "\n".join(textwrap.wrap(c.name, _whole_width(c, cells))) or c.name


def _table(title: str | None, cols: Sequence[Col], rows: Sequence[Sequence[str]]) -> Table:
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for i, c in enumerate(cols):
        if c.keeps_whole:
            head = _header(c, [r[i] for r in rows])
            t.add_column(head, justify="right" if c.number else "left", no_wrap=True)
        else:
            t.add_column(c.name, overflow="fold", min_width=_fold_min(c, [r[i] for r in rows]))
    for r in rows:
        t.add_row(*r)
    return t


def _min_width(cols: Sequence[Col], rows: Sequence[Sequence[str]]) -> int:
    """The narrowest the table can be drawn with its whole cells whole: their widths (a
    header may wrap at spaces), each folding column's minimum, and per column a padding
    of 2 and a divider (SIMPLE_HEAD without edge padding: 3n - 1 in all)."""
    total = 0
    for i, c in enumerate(cols):
        cells = [r[i] for r in rows]
        if c.keeps_whole:
            total += _whole_width(c, cells)
        else:
            total += _fold_min(c, cells)
    return total + 3 * len(cols) - 1


def fitted_tables(
    console: Console,
    title: str | None,
    cols: Sequence[Col],
    rows: Sequence[Sequence[str]],
    *,
    split: bool = True,
) -> list[Table]:
    """One table if it fits ``console`` (or ``split`` is false); else the columns after
    the first (the key) split into consecutive groups that each fit, each table
    repeating the key column."""
    width = console.width
    if not split or _min_width(cols, rows) <= width or len(cols) <= 2:
        return [_table(title, cols, rows)]
    groups: list[list[int]] = []
    cur: list[int] = []
    for i in range(1, len(cols)):
        trial = [0, *cur, i]
        if cur and _min_width([cols[j] for j in trial], _pick(rows, trial)) > width:
            groups.append(cur)
            cur = []
        cur.append(i)
    groups.append(cur)
    out = []
    for n, g in enumerate(groups):
        idx = [0, *g]
        sub = f"{title} ({n + 1}/{len(groups)})" if title else None
        out.append(_table(sub, [cols[j] for j in idx], _pick(rows, idx)))
    return out


def _pick(rows: Sequence[Sequence[str]], idx: Sequence[int]) -> list[list[str]]:
    return [[r[j] for j in idx] for r in rows]


def print_fitted(
    console: Console, title: str | None, cols: Sequence[Col], rows: Sequence[Sequence[str]]
) -> None:
    for t in fitted_tables(console, title, cols, rows):
        console.print(t)


__all__ = ["Col", "fitted_tables", "print_fitted"]
