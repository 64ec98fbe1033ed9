"""deploy/prometheus: promtool's checks, the rule unit tests, and a real Prometheus scraping the daemon's endpoint."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon import __version__
from daemon.metrics import Metrics
from daemon.metrics_server import MetricsServer
from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts_test.yml"

PROMTOOL_TIMEOUT = 120  # seconds; promtool is quick, the shared machine may not be
STARTUP_TIMEOUT = 90
QUERY_TIMEOUT = 90
SEVERITIES = {"critical", "warning"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_scrape_config() -> None:
    """promtool check config passes for prometheus.yml (and the rule file it loads)."""
    result = promtool("check", "config", str(CONFIG))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_alert_rules() -> None:
    """promtool check rules passes for alerts.yml."""
    result = promtool("check", "rules", str(ALERTS))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(alert_rules())} rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    """promtool test rules runs alerts_test.yml, from any working directory, and passes."""
    result = promtool("test", "rules", str(ALERT_TESTS))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_for_severity_and_annotations() -> None:
    """Each alert waits (for:), routes (severity) and explains itself (summary, description)."""
    rules = alert_rules()

    assert rules
    for rule in rules:
        name = rule["alert"]
        assert "for" in rule, name
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    """alerts_test.yml has, for each alert, a case where it fires and one where it must not."""
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fires: set[str] = set()
    stays_quiet: set[str] = set()
    for group in tests:
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else stays_quiet).add(case["alertname"])

    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts never tested firing"
    assert names - stays_quiet == set(), "alerts never tested staying quiet"


def test_issue_alerts_exist_with_their_metrics() -> None:
    """The alerts the issue asks for exist and watch the intended series."""
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in alert_rules()}

    assert "ocr_inbox_worker_up{" in exprs["OcrInboxWorkerDown"]
    assert exprs["OcrInboxWorkerDown"].endswith("== 0")
    assert 'up{job="ocr-inbox"} == 0' in exprs["OcrInboxTargetDown"]
    assert "increase(ocr_inbox_worker_restarts_total[15m])" in exprs["OcrInboxWorkerRestarted"]
    assert 'ocr_inbox_cuda_errors_total{kind="cuda_fatal"}[15m]' in exprs["OcrInboxCudaFatalError"]
    assert "ocr_inbox_chain_position > 0" in exprs["OcrInboxOnFallbackModel"]
    assert "ocr_inbox_queue_depth > 0" in exprs["OcrInboxQueueStuck"]
    assert (
        "ocr_inbox_gpu_memory_used_bytes / ocr_inbox_gpu_memory_total_bytes > 0.9"
        in exprs["OcrInboxGpuMemoryHigh"]
    )
    assert 'outcome="failed"' in exprs["OcrInboxHighErrorRate"]


def test_scrape_job_name_matches_the_alerts() -> None:
    """The target alerts select job="ocr-inbox", the job prometheus.yml defines."""
    config = yaml.safe_load(CONFIG.read_text())
    jobs = [job["job_name"] for job in config["scrape_configs"]]

    assert jobs == ["ocr-inbox"]
    target_rules = [rule for rule in alert_rules() if re.search(r"(?<![\w:])up\{", rule["expr"])]
    assert len(target_rules) == 2
    assert all('up{job="ocr-inbox"}' in rule["expr"] for rule in target_rules)


# --- a real Prometheus server -------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def api_get(base: str, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as reply:
        result: dict[str, Any] = json.load(reply)
        return result


@pytest.fixture
def metrics_server() -> Iterator[tuple[Metrics, MetricsServer]]:
    metrics = Metrics()
    server = MetricsServer(metrics.registry, lambda: (True, ""), port=0)
    server.start()
    yield metrics, server
    server.stop()


@pytest.fixture
def prometheus(
    tmp_path: Path, metrics_server: tuple[Metrics, MetricsServer]
) -> Iterator[tuple[str, Path]]:
    """A Prometheus on loopback scraping the metrics server every second; yields its URL and log."""
    binary = require_tool("prometheus")
    _, server = metrics_server
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                "job_name": "ocr-inbox",
                "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
            }
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=info",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process, log_path)
        yield base, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def wait_until_ready(base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(base + "/-/ready", timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"prometheus not ready after {STARTUP_TIMEOUT}s:\n{log_path.read_text()}")


def query_until(base: str, expr: str, log_path: Path) -> list[dict[str, Any]]:
    """Poll an instant query until it returns series; fail with Prometheus' log otherwise."""
    deadline = time.monotonic() + QUERY_TIMEOUT
    while time.monotonic() < deadline:
        reply = api_get(base, "/api/v1/query", {"query": expr})
        assert reply["status"] == "success", reply
        if reply["data"]["result"]:
            result: list[dict[str, Any]] = reply["data"]["result"]
            return result
        time.sleep(0.5)
    pytest.fail(f"no series for {expr} after {QUERY_TIMEOUT}s:\n{log_path.read_text()}")


def test_real_prometheus_scrapes_the_metrics_server(
    metrics_server: tuple[Metrics, MetricsServer], prometheus: tuple[str, Path]
) -> None:
    """Debian's Prometheus scrapes /metrics on loopback and its API returns the daemon's series."""
    metrics, _ = metrics_server
    base, log_path = prometheus
    metrics.queue_depth.set(7)
    metrics.files.labels(outcome="done").inc(3)

    build_info = query_until(base, "ocr_inbox_build_info", log_path)
    queue = query_until(base, "ocr_inbox_queue_depth == 7", log_path)
    done = query_until(base, 'ocr_inbox_files_total{outcome="done"} == 3', log_path)

    assert [series["metric"]["version"] for series in build_info] == [__version__]
    assert build_info[0]["metric"]["job"] == "ocr-inbox"
    assert float(queue[0]["value"][1]) == 7
    assert float(done[0]["value"][1]) == 3


def test_real_prometheus_loads_the_alert_rules(prometheus: tuple[str, Path]) -> None:
    """The server accepts alerts.yml: every alert of the file is listed by its rules API, healthy."""
    base, log_path = prometheus

    reply = api_get(base, "/api/v1/rules", {"type": "alert"})
    loaded = {rule["name"]: rule for group in reply["data"]["groups"] for rule in group["rules"]}

    assert set(loaded) == {rule["alert"] for rule in alert_rules()}, log_path.read_text()
    # Health becomes "ok" after a first evaluation (every second here); poll for it.
    deadline = time.monotonic() + QUERY_TIMEOUT
    while time.monotonic() < deadline:
        reply = api_get(base, "/api/v1/rules", {"type": "alert"})
        rules = [rule for group in reply["data"]["groups"] for rule in group["rules"]]
        if all(rule["health"] == "ok" for rule in rules):
            return
        time.sleep(0.5)
    pytest.fail(f"rules not all healthy: {json.dumps(rules, indent=1)}\n{log_path.read_text()}")
