"""/metrics, /healthz and /readyz of the running daemon, over real HTTP, against what it did.

A daemon with a two-model chain of the fault-injection engine processes a
known set of files: three one-page PNGs and a two-page PDF (done by the first
model), one file the first model reports as corrupt (failed, bad input) and one
on which it produces empty output (handed to the second model, which does
it). The scrape must count exactly that. A real Prometheus then scrapes the
same daemon with the shipped scrape job.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.driver import Daemon, running_daemon, wait_until
from harness.drops import drop_pdf, drop_png, faulty_settings
from tests.support.metric_names import (
    names_declared_in_exposition,
    names_in_exposition,
    names_used_by_deploy,
)
from tests.support.prometheus_server import prometheus_scraping

pytestmark = pytest.mark.slow

PAGE_SECONDS = 0.05
# Metrics of events that cannot happen on this run: no GPU, no token-generating
# model, no output that fails to be written. They must still be declared.
CANNOT_HAPPEN_HERE = {
    "ocr_inbox_gpu_memory_allocated_bytes",
    "ocr_inbox_gpu_memory_peak_bytes",
    "ocr_inbox_gpu_memory_reserved_bytes",
    "ocr_inbox_gpu_memory_total_bytes",
    "ocr_inbox_gpu_memory_used_bytes",
    "ocr_inbox_generated_tokens_total",
    "ocr_inbox_output_errors_total",
    # No inference server here: tests/e2e/test_remote.py checks these live.
    "ocr_inbox_server_requests_in_flight",
    "ocr_inbox_server_request_seconds_bucket",
    "ocr_inbox_server_tokens_total",
    "ocr_inbox_server_errors_total",
    "ocr_inbox_server_up",
}


class Scrape:
    """One exposition, parsed: samples by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; KeyError (with what exists) when absent."""
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            present = [dict(ls) for n, ls in self.samples if n == name]
            raise KeyError(f"{name}{labels} not in scrape; {name} has {present}")
        return self.samples[key]

    def labelsets(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample_name, labels in self.samples if sample_name == name]


def http_get(url: str) -> tuple[int, str]:
    """Status and body, for 2xx and error statuses alike."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(daemon: Daemon) -> Scrape:
    status, body = http_get(daemon.url("/metrics"))
    assert status == 200
    return Scrape(body)


@dataclass
class Processed:
    daemon: Daemon
    good: list[Path]
    pdf: Path
    bad: Path
    empty: Path
    scrape: Scrape


def two_model_chain(root: Path) -> dict[str, object]:
    return faulty_settings(
        root / "inbox",
        root / "state",
        chain={
            "first": {
                "page_seconds": PAGE_SECONDS,
                "rules": [
                    {"match": "bad-*", "fault": "bad_input"},
                    {"match": "empty-*", "fault": "empty"},
                ],
            },
            "second": {"page_seconds": PAGE_SECONDS},
        },
    )


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processed]:
    """A daemon that has finished the known set of files, still running, and its scrape then."""
    root = tmp_path_factory.mktemp("metrics-live")
    with running_daemon(root, two_model_chain(root)) as daemon:
        daemon.wait_ready()
        inbox = daemon.inbox
        good = [drop_png(inbox / f"good-{index}.png", seed=index) for index in range(3)]
        pdf = drop_pdf(inbox / "two-pages.pdf", 2, seed=10)
        bad = drop_png(inbox / "bad-1.png", seed=20)
        empty = drop_png(inbox / "empty-1.png", seed=30)
        daemon.wait_for("file.done", count=5)
        daemon.wait_for("file.failed", file=str(bad))

        def settled() -> bool:
            current = scrape(daemon)
            return (
                current.value("ocr_inbox_files_total", inbox="inbox", outcome="done") == 5
                and current.value("ocr_inbox_queue_depth") == 0
            )

        wait_until(settled, timeout=60)
        yield Processed(daemon, good, pdf, bad, empty, scrape(daemon))


def test_file_and_page_counts_match_what_was_processed(processed: Processed) -> None:
    """Files by outcome, pages and per-page inference observations per model are exact."""
    s = processed.scrape
    daemon = processed.daemon
    done = {record["file"] for record in daemon.find("file.done")}
    assert done == {str(p) for p in [*processed.good, processed.pdf, processed.empty]}
    assert [r["model"] for r in daemon.find("file.done", file=str(processed.empty))] == ["second"]

    assert s.value("ocr_inbox_files_total", inbox="inbox", outcome="done") == 5
    assert s.value("ocr_inbox_files_total", inbox="inbox", outcome="failed") == 1
    assert s.value("ocr_inbox_files_total", inbox="inbox", outcome="skipped") == 0
    assert s.value("ocr_inbox_files_total", inbox="inbox", outcome="vanished") == 0
    # First: three one-page files and the two-page PDF; second: the file handed down.
    assert s.value("ocr_inbox_pages_total", model="first") == 5
    assert s.value("ocr_inbox_pages_total", model="second") == 1
    assert s.value("ocr_inbox_page_inference_seconds_count", model="first") == 5
    assert s.value("ocr_inbox_page_inference_seconds_count", model="second") == 1
    assert s.value("ocr_inbox_file_seconds_count", outcome="done") == 5
    assert s.value("ocr_inbox_file_seconds_count", outcome="failed") == 1
    # Every dispatch waits once: six files, and the empty one a second time.
    assert s.value("ocr_inbox_queue_wait_seconds_count") == 7
    assert s.value("ocr_inbox_model_load_seconds_count", model="first") == 1
    assert s.value("ocr_inbox_model_load_seconds_count", model="second") == 1


def test_histogram_sums_cover_the_time_spent(processed: Processed) -> None:
    """Inference sums are at least page_seconds x pages; file sums at least their inference."""
    s = processed.scrape
    first = s.value("ocr_inbox_page_inference_seconds_sum", model="first")
    second = s.value("ocr_inbox_page_inference_seconds_sum", model="second")
    assert first >= PAGE_SECONDS * 5
    assert second >= PAGE_SECONDS * 1
    # A file's end-to-end time includes its inference (and, for the PDF, two pages).
    assert s.value("ocr_inbox_file_seconds_sum", outcome="done") >= first + second
    # The +Inf bucket of a histogram is its count.
    assert s.value("ocr_inbox_page_inference_seconds_bucket", model="first", le="+Inf") == s.value(
        "ocr_inbox_page_inference_seconds_count", model="first"
    )
    # No observation of a 50 ms page falls below 50 ms.
    assert s.value("ocr_inbox_page_inference_seconds_bucket", model="first", le="0.025") == 0


def test_fallback_worker_and_model_gauges(processed: Processed) -> None:
    """One per-file fallback first->second; queue empty; worker 0 up; the active model's info."""
    s = processed.scrape
    fallbacks = s.labelsets("ocr_inbox_fallbacks_total")
    assert fallbacks == [
        {"from_model": "first", "to_model": "second", "reason": "empty_output", "scope": "file"}
    ]
    assert s.value("ocr_inbox_fallbacks_total", **fallbacks[0]) == 1
    assert s.value("ocr_inbox_queue_depth") == 0
    assert s.value("ocr_inbox_worker_up", worker="0") == 1
    assert s.value("ocr_inbox_chain_position", inbox="inbox") == 0
    assert s.labelsets("ocr_inbox_active_model_info") == [
        {
            "inbox": "inbox",
            "model": "first",
            "engine": "faulty",
            "device": "cpu",
            "dtype": "none",
            "attention": "none",
        }
    ]
    assert s.value("ocr_inbox_worker_restarts_total", reason="crash") == 0
    assert s.value("ocr_inbox_last_success_timestamp_seconds") > time.time() - 3600


def test_every_metric_the_dashboard_and_alerts_use_is_in_the_live_scrape(
    processed: Processed,
) -> None:
    """Each name in the Grafana dashboard and the alert rules is exported by the running daemon."""
    used = names_used_by_deploy()
    declared = names_declared_in_exposition(processed.scrape.text)
    sampled = names_in_exposition(processed.scrape.text)

    assert used - declared == set()
    # And all but the events impossible here (GPU, tokens, write errors) have samples.
    assert used - CANNOT_HAPPEN_HERE - sampled == set()


def test_healthz_and_readyz_while_serving(processed: Processed) -> None:
    """/healthz is 200; /readyz is 200 naming the model it serves with."""
    assert http_get(processed.daemon.url("/healthz"))[0] == 200
    status, body = http_get(processed.daemon.url("/readyz"))
    assert (status, body.strip()) == (200, "ready: serving with first")


def test_real_prometheus_scrapes_the_running_daemon(processed: Processed, tmp_path: Path) -> None:
    """Debian's Prometheus, with the shipped scrape job, stores the daemon's series and counts."""
    port = processed.daemon.metrics_port
    with prometheus_scraping(tmp_path / "prometheus", port) as prometheus:
        [up] = prometheus.query_until('up{job="ocr-inbox"} == 1')
        done = prometheus.query_until('ocr_inbox_files_total{outcome="done"}')
        pages = prometheus.query_until("ocr_inbox_pages_total")
        p95 = prometheus.query_until(
            "histogram_quantile(0.95, sum by (le) (ocr_inbox_page_inference_seconds_bucket))"
        )
        rules = prometheus.get("/api/v1/rules", {"type": "alert"})["data"]["groups"]

    assert up["metric"]["instance"] == f"127.0.0.1:{port}"
    assert [(d["metric"]["job"], float(d["value"][1])) for d in done] == [("ocr-inbox", 5.0)]
    assert {p["metric"]["model"]: float(p["value"][1]) for p in pages} == {
        "first": 5.0,
        "second": 1.0,
    }
    assert float(p95[0]["value"][1]) >= PAGE_SECONDS
    assert rules, "the alert rules were not loaded"


# --- readiness while the worker is down -----------------------------------------------


def poll_readyz(daemon: Daemon, until_status: int, timeout: float = 90) -> list[tuple[int, str]]:
    """Every distinct (status, body) /readyz gave, in order, until it answers `until_status`."""
    seen: list[tuple[int, str]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = http_get(daemon.url("/readyz"))
        except (urllib.error.URLError, ConnectionError):
            continue  # the server is not listening yet
        answer = (answer[0], answer[1].strip())
        if not seen or seen[-1] != answer:
            seen.append(answer)
        if answer[0] == until_status:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"/readyz never answered {until_status}; saw {seen}")


def test_readyz_is_503_with_the_reason_while_the_worker_is_down(tmp_path: Path) -> None:
    """/readyz says 503 "loading model ..." until the model loads, and again after the worker dies."""
    settings = faulty_settings(tmp_path / "inbox", tmp_path / "state", load_seconds=3.0)
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_for("metrics.serving")
        starting = poll_readyz(daemon, until_status=200)
        # The first 200 comes only once the model is loaded (its log line comes first).
        assert daemon.find("model.loaded")
        assert (503, "loading model fake") in starting
        assert starting[-1] == (200, "ready: serving with fake")
        assert all(status == 503 for status, _ in starting[:-1])
        assert http_get(daemon.url("/healthz"))[0] == 200

        [started] = daemon.find("worker.started")
        os.kill(started["pid"], signal.SIGKILL)
        down = poll_readyz(daemon, until_status=503)
        worker_up_while_down = scrape(daemon).value("ocr_inbox_worker_up", worker="0")
        back = poll_readyz(daemon, until_status=200)
        after = scrape(daemon)

    assert down[-1][0] == 503
    reasons = {body for status, body in down + back if status == 503}
    assert reasons <= {"loading model fake", "worker for fake is restarting"}
    assert "loading model fake" in reasons  # the 3 s reload is long enough to be seen
    assert worker_up_while_down == 0
    assert back[-1] == (200, "ready: serving with fake")
    assert after.value("ocr_inbox_worker_up", worker="0") == 1
    assert after.value("ocr_inbox_worker_restarts_total", reason="crash") == 1
    assert after.value("ocr_inbox_model_load_seconds_count", model="fake") == 2
    assert after.value("ocr_inbox_model_load_seconds_sum", model="fake") >= 2 * 3.0
    assert daemon.find("worker.exited", reason="crash")
