"""One compare-and-regenerate step for the golden logs."""

from __future__ import annotations

import os
from pathlib import Path


def matches_golden(got: list[str], golden: Path) -> None:
    """Assert ``got`` equals the checked-in file line by line, naming the first line that
    differs; ``COTENANT_UPDATE_GOLDEN=1`` rewrites the file first (review its diff)."""
    if os.environ.get("COTENANT_UPDATE_GOLDEN") == "1":
        golden.write_text("\n".join(got) + "\n")
    want = golden.read_text().splitlines()
    assert len(got) > 100, "the scenario should make many decisions"
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        assert g == w, f"decision {i} differs:\n got  {g}\n want {w}"
    assert len(got) == len(want)
