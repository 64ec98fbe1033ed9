"""The dashboard and the alert rules query only names the daemon exports, and the dashboard shows them all."""

from __future__ import annotations

import json

from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase

from daemon.observing.metrics import Metrics
from tests.support.metric_names import (
    DASHBOARD,
    dashboard_queries,
    names_declared_in_exposition,
    names_in_exposition,
    names_in_promql,
    names_used_by_deploy,
)


def touched_metrics() -> Metrics:
    """A Metrics whose every labelled metric has a series, as after a busy day of the daemon."""
    metrics = Metrics()
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            metric.labels(*("x" for _ in metric._labelnames))
    return metrics


def exported_families(metrics: Metrics) -> dict[str, set[str]]:
    """Family name -> the sample names it puts on the wire (without the _created extras)."""
    return {
        family.name: {
            sample.name for sample in family.samples if not sample.name.endswith("_created")
        }
        for family in metrics.registry.collect()
    }


def test_every_labelled_metric_is_touched() -> None:
    """The helper leaves no family without samples, so the check below sees every name."""
    families = exported_families(touched_metrics())

    assert families
    assert [name for name, samples in families.items() if not samples] == []


def test_deploy_files_use_only_exported_names() -> None:
    """Every metric name in the dashboard and alert rules appears in a scrape of the registry."""
    used = names_used_by_deploy()
    exported = names_in_exposition(generate_latest(touched_metrics().registry).decode())

    assert used - exported == set()


def test_deploy_files_use_only_names_a_fresh_daemon_declares() -> None:
    """Even before any event, a fresh registry's TYPE lines declare every name the deploy files use."""
    declared = names_declared_in_exposition(generate_latest(Metrics().registry).decode())

    assert names_used_by_deploy() - declared == set()


def test_deploy_name_extraction_sees_both_files() -> None:
    """The extraction finds names that only the dashboard and only the alerts use."""
    used = names_used_by_deploy()

    assert "ocr_inbox_page_inference_seconds_bucket" in used  # dashboard quantiles
    assert "ocr_inbox_active_model_info" in used
    assert "ocr_inbox_gpu_memory_total_bytes" in used  # alert and dashboard
    assert "ocr_inbox_cuda_errors_total" in used


def test_dashboard_shows_every_metric_the_daemon_exports() -> None:
    """Each exported family is queried by at least one dashboard panel or variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    shown: set[str] = set()
    for expr in dashboard_queries(dashboard):
        shown |= names_in_promql(expr)

    missing = [
        family
        for family, samples in exported_families(touched_metrics()).items()
        if not samples & shown
    ]
    assert missing == []
