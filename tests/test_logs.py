"""Logging: one JSON object per line, from our code and from third-party libraries alike."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from harness.driver import daemon_env


def _run(code: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=daemon_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stderr == ""
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_library_warnings_become_json_lines() -> None:
    """A standard-library warning (e.g. watchdog's inotify overflow) is a JSON line with its logger name."""
    records = _run(
        """
        import logging
        from daemon import logs
        logs.configure("info", "json", role="worker-7")
        logging.getLogger("watchdog.observers.inotify_buffer").warning("event queue overflowed")
        logging.getLogger("transformers").info("chatter that stays quiet")
        """
    )
    assert len(records) == 1
    record = records[0]
    assert record["event"] == "event queue overflowed"
    assert record["logger"] == "watchdog.observers.inotify_buffer"
    assert (record["level"], record["role"]) == ("warning", "worker-7")


def test_level_filters_our_records_and_exceptions_are_kept() -> None:
    """Below the configured level nothing is written; an exception's traceback travels in the record."""
    records = _run(
        """
        import logging, structlog
        from daemon import logs
        logs.configure("warning", "json")
        log = structlog.get_logger("t")
        log.info("hidden")
        try:
            1 / 0
        except ZeroDivisionError:
            logging.getLogger("lib").exception("failed")
        log.warning("shown", file="a.png")
        """
    )
    assert [record["event"] for record in records] == ["failed", "shown"]
    assert "ZeroDivisionError" in str(records[0]["exception"])
    assert records[1]["file"] == "a.png"
