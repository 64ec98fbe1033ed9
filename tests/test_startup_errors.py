"""Start-up errors: a busy metrics port says how to move it or turn it off, on a terminal and under systemd."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.driver import run_cli
from tests.support.terminal import run_cli_on_terminal

WAYS_TO_MOVE_IT = (
    "metrics.port = 9500 in the [metrics] table of the settings file",
    "OCR_INBOX_METRICS__PORT=9500",
    "--metrics-port 9500",
    'make run ARGS="--metrics-port 9500"',
    "metrics.enabled = false",
    "OCR_INBOX_METRICS__ENABLED=false",
)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another program (this test) is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_busy_port_is_one_json_record_naming_every_way_out(tmp_path: Path, busy_port: int) -> None:
    """Without a terminal: exit 1, one JSON line naming the setting, variable, option and metrics off."""
    result = run_cli(
        "run",
        "--inbox",
        str(tmp_path / "inbox"),
        "--state-dir",
        str(tmp_path / "state"),
        "--metrics-port",
        str(busy_port),
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    [failure] = [record for record in records if record["event"] == "metrics.bind_failed"]
    assert (failure["level"], failure["port"]) == ("error", busy_port)
    message = failure["message"]
    assert f"port {busy_port} on 127.0.0.1 is already in use by another program" in message
    assert f"metrics.port = {busy_port} came from the option --metrics-port" in message
    for way in WAYS_TO_MOVE_IT:
        assert way in message


def test_busy_port_on_a_terminal_is_readable_text(tmp_path: Path, busy_port: int) -> None:
    """On a terminal the same advice is plain lines on stderr, the port's origin the variable set."""
    result = run_cli_on_terminal(
        "run",
        "--inbox",
        str(tmp_path / "inbox"),
        "--state-dir",
        str(tmp_path / "state"),
        cwd=tmp_path,
        env={"OCR_INBOX_METRICS__PORT": str(busy_port)},
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"ocr-inbox: metrics: port {busy_port} on 127.0.0.1 is already in use by another"
        f" program; metrics.port = {busy_port} came from the environment variable"
        " OCR_INBOX_METRICS__PORT."
    )
    for way in WAYS_TO_MOVE_IT:
        assert way in result.stderr
    assert "{" not in result.stderr
