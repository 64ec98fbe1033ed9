"""structlog set-up, called once in every process (supervisor and each worker).

JSON lines when stdout is not a terminal (systemd, pipes), readable console
lines on a TTY. Each line carries the process role so the interleaved output
of supervisor and workers can be told apart. When systemd connected stdout to
the journal, records go to it natively instead (daemon.observing.systemd_journal).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

from daemon.observing import systemd_journal

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Libraries that log chattily at INFO through the standard library.
QUIET_LIBRARIES = ("RapidOCR", "rapidocr", "watchdog", "transformers", "PIL", "urllib3", "httpx")


def wants_json(fmt: str) -> bool:
    if fmt == "json":
        return True
    if fmt == "console":
        return False
    return not sys.stdout.isatty()


def configure(level: str = "info", fmt: str = "auto", *, role: str = "supervisor") -> None:
    """Route structlog, and the standard library's warnings, to stdout (or the journal)."""
    numeric = LEVELS.get(level, logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_role(role),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if wants_json(fmt)
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    factory: Any = structlog.WriteLoggerFactory(file=sys.stdout)
    if wants_json(fmt) and systemd_journal.stream_is_journal(os.environ, sys.stdout):
        # systemd connected stdout to the journal: send each record natively
        # so its fields (FILE, MODEL, OUTCOME, SECONDS, ...) are journal fields.
        renderer = systemd_journal.renderer(renderer)
        factory = systemd_journal.logger_factory(os.environ, sys.stdout)
    structlog.configure(
        processors=[*shared, structlog.processors.UnicodeDecoder(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through the standard library: their warnings
    # (watchdog's inotify overflow, transformers' deprecations) become records
    # of ours, so every line on stdout (or in the journal) is one JSON object.
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    root.setLevel(max(numeric, logging.WARNING))
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


class _ToStructlog(logging.Handler):
    """Forward a standard-library record to structlog, keeping its logger name."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            structlog.get_logger(record.name).log(record.levelno, record.getMessage(), **fields)
        except Exception:
            self.handleError(record)


def _add_role(role: str) -> Any:
    def processor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("role", role)
        return event

    return processor
