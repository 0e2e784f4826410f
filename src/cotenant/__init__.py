"""cotenant: turn a GPU lease contract into enforced, metered, audited capacity."""

__version__ = "0.1.0"
