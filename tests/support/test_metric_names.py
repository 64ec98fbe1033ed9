"""The metric-name extraction that the deploy and end-to-end tests rely on."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from tests.support.metric_names import (
    dashboard_queries,
    names_declared_in_exposition,
    names_in_exposition,
    names_in_promql,
)


def small_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("ocr_inbox_files", "files", ["outcome"], registry=registry).labels("done").inc()
    Histogram("ocr_inbox_file_seconds", "seconds", registry=registry).observe(1)
    Gauge("ocr_inbox_queue_depth", "depth", registry=registry).set(2)
    return registry


def test_names_in_promql_finds_every_reference_and_only_ours() -> None:
    """Names inside functions, selectors and binary operators are found; up and labels are not."""
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(ocr_inbox_file_seconds_bucket{job="ocr-inbox"}[5m])))'
        " / ocr_inbox_queue_depth and up == 1"
    )

    assert names_in_promql(expr) == {"ocr_inbox_file_seconds_bucket", "ocr_inbox_queue_depth"}


def test_names_in_exposition_reads_the_text_format() -> None:
    """Sample names of the text format, with counter and histogram suffixes, are collected."""
    names = names_in_exposition(generate_latest(small_registry()).decode())

    assert {
        "ocr_inbox_files_total",
        "ocr_inbox_file_seconds_bucket",
        "ocr_inbox_file_seconds_sum",
        "ocr_inbox_file_seconds_count",
        "ocr_inbox_queue_depth",
    } <= names
    assert not any(name.startswith("#") or name in {"HELP", "TYPE"} for name in names)


def test_names_in_exposition_reads_openmetrics() -> None:
    """The OpenMetrics exposition yields the same sample names as the text format."""
    registry = small_registry()

    assert names_in_exposition(generate_openmetrics(registry).decode()) >= {
        "ocr_inbox_files_total",
        "ocr_inbox_file_seconds_bucket",
        "ocr_inbox_queue_depth",
    }


def test_a_counter_queried_without_total_is_not_exported() -> None:
    """A query for a counter's family name (no _total) is caught: Prometheus stores only _total."""
    exported = names_in_exposition(generate_latest(small_registry()).decode())

    assert names_in_promql("rate(ocr_inbox_files[5m])") - exported == {"ocr_inbox_files"}


def test_dashboard_queries_include_rows_and_variables() -> None:
    """Targets of panels nested in collapsed rows and variable queries are both read."""
    dashboard = {
        "panels": [
            {"type": "row", "panels": [{"targets": [{"expr": "ocr_inbox_a"}]}]},
            {"targets": [{"expr": "ocr_inbox_b"}, {"refId": "no expr"}]},
        ],
        "templating": {
            "list": [
                {"type": "datasource", "query": "prometheus"},
                {"type": "query", "query": {"query": "label_values(ocr_inbox_c, instance)"}},
            ]
        },
    }

    assert set(dashboard_queries(dashboard)) == {
        "ocr_inbox_a",
        "ocr_inbox_b",
        "label_values(ocr_inbox_c, instance)",
    }


def test_declared_names_include_metrics_that_have_not_happened() -> None:
    """An untouched labelled counter or histogram is declared by TYPE though it has no sample."""
    registry = CollectorRegistry()
    Counter("ocr_inbox_fallbacks", "moves", ["to_model"], registry=registry)
    Histogram("ocr_inbox_model_load_seconds", "loads", ["model"], registry=registry)
    Gauge("ocr_inbox_gpu_memory_used_bytes", "used", ["device"], registry=registry)
    expected = {
        "ocr_inbox_fallbacks_total",
        "ocr_inbox_model_load_seconds_bucket",
        "ocr_inbox_model_load_seconds_sum",
        "ocr_inbox_model_load_seconds_count",
        "ocr_inbox_gpu_memory_used_bytes",
    }

    for text in (generate_latest(registry), generate_openmetrics(registry)):
        assert expected <= names_declared_in_exposition(text.decode())
        assert not expected & names_in_exposition(text.decode())
