"""Observing: what the daemon tells the outside: metrics, /healthz and /readyz, systemd, the journal of logs."""
