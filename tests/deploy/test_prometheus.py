"""deploy/prometheus: promtool's checks, the rule unit tests, and a real Prometheus scraping the daemon's endpoint."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon import __version__
from daemon.observing.metrics import Metrics
from daemon.observing.metrics_server import MetricsServer
from tests.support.prometheus_server import QUERY_TIMEOUT, Prometheus, prometheus_scraping
from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts_test.yml"

PROMTOOL_TIMEOUT = 120  # seconds; promtool is quick, the shared machine may not be
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


@pytest.fixture
def metrics_server() -> Iterator[tuple[Metrics, MetricsServer]]:
    """A metrics endpoint on a free loopback port, serving a registry of our own."""
    metrics = Metrics()
    server = MetricsServer(metrics.registry, lambda: (True, ""), port=0)
    server.start()
    yield metrics, server
    server.stop()


@pytest.fixture
def prometheus(
    tmp_path: Path, metrics_server: tuple[Metrics, MetricsServer]
) -> Iterator[Prometheus]:
    """Debian's Prometheus on loopback, running the shipped scrape job against the metrics server."""
    _, server = metrics_server
    with prometheus_scraping(tmp_path, server.port) as running:
        yield running


def test_real_prometheus_scrapes_the_metrics_server(
    metrics_server: tuple[Metrics, MetricsServer], prometheus: Prometheus
) -> None:
    """Debian's Prometheus scrapes /metrics on loopback and its API returns the daemon's series."""
    metrics, _ = metrics_server
    metrics.queue_depth.set(7)
    metrics.files.labels(inbox="scans", outcome="done").inc(3)

    build_info = prometheus.query_until("ocr_inbox_build_info")
    queue = prometheus.query_until("ocr_inbox_queue_depth == 7")
    done = prometheus.query_until('ocr_inbox_files_total{outcome="done"} == 3')

    assert [series["metric"]["version"] for series in build_info] == [__version__]
    assert build_info[0]["metric"]["job"] == "ocr-inbox"
    assert float(queue[0]["value"][1]) == 7
    assert float(done[0]["value"][1]) == 3


def test_real_prometheus_loads_the_alert_rules(prometheus: Prometheus) -> None:
    """The server accepts alerts.yml: every alert of the file is listed by its rules API, healthy."""
    log_path = prometheus.log_path
    reply = prometheus.get("/api/v1/rules", {"type": "alert"})
    loaded = {rule["name"]: rule for group in reply["data"]["groups"] for rule in group["rules"]}

    assert set(loaded) == {rule["alert"] for rule in alert_rules()}, log_path.read_text()
    # Health becomes "ok" after a first evaluation (every second here); poll for it.
    deadline = time.monotonic() + QUERY_TIMEOUT
    while time.monotonic() < deadline:
        reply = prometheus.get("/api/v1/rules", {"type": "alert"})
        rules = [rule for group in reply["data"]["groups"] for rule in group["rules"]]
        if all(rule["health"] == "ok" for rule in rules):
            return
        time.sleep(0.5)
    pytest.fail(f"rules not all healthy: {json.dumps(rules, indent=1)}\n{log_path.read_text()}")
