"""Errors that stop the daemon before it serves, told so the user knows what to do.

On a terminal each is plain text on stderr, one problem a line. Otherwise
(systemd, a pipe, a file) it is one JSON log record on stdout, or a native
journal record, like every other line the daemon writes: daemon/logs.py chooses
the format the same way, from log.format, else from whether stdout is a
terminal. A multi-line message would otherwise become several journal entries.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

import structlog

from daemon import logs

log = structlog.get_logger("daemon.cli")

# How to pick another metrics port, in the words of each way to set it.
PORT_EXAMPLE = 9500


def report(event: str, message: str, *, fmt: str = "auto", **fields: Any) -> None:
    """Tell the user why the daemon stops: text on a terminal, one JSON record otherwise."""
    if logs.wants_json(fmt):
        logs.configure("info", fmt)
        log.error(event, message=message, **fields)
    else:
        print(f"ocr-inbox: {message}", file=sys.stderr, flush=True)


def metrics_bind_message(host: str, port: int, error: OSError, origin: str) -> str:
    """Why /metrics cannot listen, and every way to move it or turn it off."""
    if error.errno == errno.EADDRINUSE:
        what = f"port {port} on {host} is already in use by another program"
    elif error.errno == errno.EACCES:
        what = f"this user may not listen on port {port} (ports below 1024 need privileges)"
    elif error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        what = f"{host} is not an address of this machine ({error.strerror})"
    else:
        what = f"cannot listen on {host}:{port} ({error.strerror or error})"
    lines = [
        f"metrics: {what}; metrics.port = {port} came from {origin}.",
        "  Choose another port with any of:",
        f"    metrics.port = {PORT_EXAMPLE} in the [metrics] table of the settings file",
        f"    the environment variable OCR_INBOX_METRICS__PORT={PORT_EXAMPLE}",
        f"    the option --metrics-port {PORT_EXAMPLE}"
        f' (with make: make run ARGS="--metrics-port {PORT_EXAMPLE}")',
        "  (port 0 takes any free port; metrics.host, OCR_INBOX_METRICS__HOST, sets the address.)",
        "  Or turn metrics off (no /metrics, /healthz or /readyz then):"
        " metrics.enabled = false, or OCR_INBOX_METRICS__ENABLED=false.",
    ]
    return "\n".join(lines)
