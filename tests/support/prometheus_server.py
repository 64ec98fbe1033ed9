"""A real Prometheus server on loopback with a temporary TSDB, for tests that scrape a daemon.

The scrape job is the shipped one (deploy/prometheus/prometheus.yml) with its
target pointed at the test's port and the intervals cut to a second, so the
test exercises the job name and settings operators install.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
STARTUP_TIMEOUT = 90.0
QUERY_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape_config(target_port: int) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(SHIPPED_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ALERTS)]
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{target_port}"]}]
    job["scrape_timeout"] = "1s"
    return config


class Prometheus:
    def __init__(self, base: str, log_path: Path) -> None:
        self.base = base
        self.log_path = log_path

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=10) as reply:
            result: dict[str, Any] = json.load(reply)
            return result

    def query_until(self, expr: str, timeout: float = QUERY_TIMEOUT) -> list[dict[str, Any]]:
        """Poll an instant query until it returns series; fail with Prometheus' log otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.get("/api/v1/query", {"query": expr})
            assert reply["status"] == "success", reply
            result: list[dict[str, Any]] = reply["data"]["result"]
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no series for {expr} after {timeout}s:\n{self.log_path.read_text()[-4000:]}"
                )
            time.sleep(0.5)


@contextlib.contextmanager
def prometheus_scraping(root: Path, target_port: int) -> Iterator[Prometheus]:
    """Run Debian's prometheus scraping 127.0.0.1:`target_port`; always terminated."""
    binary = require_tool("prometheus")
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(scrape_config(target_port)))
    port = free_port()
    log_path = root / "prometheus.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=info",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=root,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_ready(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _wait_ready(server: Prometheus, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"prometheus exited with {process.returncode}:\n{server.log_path.read_text()}"
            )
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(server.base + "/-/ready", timeout=5) as reply,
        ):
            if reply.status == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"prometheus not ready after {STARTUP_TIMEOUT}s")
