"""The audit log's hash chain (``chain``): pure, so the store and the CLI both use it."""
