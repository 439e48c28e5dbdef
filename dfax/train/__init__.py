"""Training CLI and loop (depends on dfax.core; the core never depends on it)."""
