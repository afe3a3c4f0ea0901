"""The per-user service: one process owns a data directory; relays and the CLI connect to it."""
