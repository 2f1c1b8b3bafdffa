"""Training: the one loop (``trainer``), stages as data (``stages``), losses, config schema, DDP."""
