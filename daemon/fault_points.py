"""Named points in the supervisor where a test stops the daemon dead (kill -9).

A crash between two steps that must both happen (an input copied to the
archive but not yet removed from the inbox) cannot be produced on command by
the real parts, so the daemon offers the moment: with $OCR_INBOX_FAULT_POINT
naming a point, the daemon logs `fault_point.reached` there and waits, and
the test kills it. Unset (always, outside tests) each point costs one lookup.
"""

from __future__ import annotations

import os
import time

import structlog

log = structlog.get_logger(__name__)

FAULT_POINT_ENV = "OCR_INBOX_FAULT_POINT"

ARCHIVE_COPIED = "archive.copied"  # the input is whole in the archive, still in the inbox


def reached(point: str) -> None:
    """Wait here forever when $OCR_INBOX_FAULT_POINT names this point (a test kills us)."""
    if os.environ.get(FAULT_POINT_ENV) != point:
        return
    log.warning("fault_point.reached", point=point, pid=os.getpid())
    while True:
        time.sleep(3600)
