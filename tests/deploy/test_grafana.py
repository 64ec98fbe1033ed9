"""deploy/grafana: the dashboard's structure and queries, and the provisioning files."""

from __future__ import annotations

import json
import re
import subprocess
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.metric_names import dashboard_queries
from tests.support.tools import require_tool

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "ocr-inbox.json"
DASHBOARD_PROVIDER = GRAFANA / "provisioning" / "dashboards" / "ocr-inbox.yml"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"

DATASOURCE_REF = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
GRID_COLUMNS = 24
# Grafana 11 wrote schema 39; current releases write 41 and later.
MIN_SCHEMA_VERSION = 39

# What Grafana substitutes before the query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".+",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def visual_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def exprs(panel: dict[str, Any]) -> list[str]:
    return [" ".join(target["expr"].split()) for target in panel["targets"]]


def panel_titled(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    matches = [panel for panel in dashboard["panels"] if panel["title"] == title]
    assert len(matches) == 1, f"expected one panel titled {title!r}"
    return matches[0]


def all_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [expr for panel in visual_panels(dashboard) for expr in exprs(panel)]


def overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def test_dashboard_identity_and_schema(dashboard: dict[str, Any]) -> None:
    """The dashboard has a stable uid, a title, no database id and a current schemaVersion."""
    assert dashboard["uid"] == "ocr-inbox"
    assert dashboard["title"] == "ocr-inbox"
    assert dashboard["id"] is None
    assert dashboard["schemaVersion"] >= MIN_SCHEMA_VERSION


def test_datasource_is_a_dashboard_variable(dashboard: dict[str, Any]) -> None:
    """DS_PROMETHEUS is a Prometheus data-source variable, so import and provisioning both resolve it."""
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}

    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["instance"]["datasource"] == DATASOURCE_REF


def test_every_panel_queries_prometheus_through_the_variable(dashboard: dict[str, Any]) -> None:
    """Each panel and each target names the DS_PROMETHEUS data source and has a PromQL expr."""
    panels = visual_panels(dashboard)

    assert len(panels) >= 15
    for panel in panels:
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_every_query_filters_on_the_instance_variable(dashboard: dict[str, Any]) -> None:
    """Every metric selector honours the Instance drop-down."""
    for expr in all_exprs(dashboard):
        selectors = re.findall(r"ocr_inbox_\w+(\{[^}]*\})?", expr)
        assert selectors and all('instance=~"$instance"' in sel for sel in selectors), expr


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    """No two panels (rows included) share an id."""
    ids = [panel["id"] for panel in dashboard["panels"]]

    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    """Every gridPos lies within the 24 columns and no two panels cover the same cell."""
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0, panel["title"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= GRID_COLUMNS, panel["title"]
        assert pos["y"] >= 0, panel["title"]

    for a, b in combinations(dashboard["panels"], 2):
        assert not overlaps(a["gridPos"], b["gridPos"]), (a["title"], b["title"])


def test_every_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses every dashboard query (variables substituted) as a recording rule."""
    queries = list(dashboard_queries(dashboard))
    rules = []
    for number, query in enumerate(queries):
        for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
            query = query.replace(variable, value)
        if query.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        rules.append({"record": f"dashboard:query_{number}", "expr": query})
    rule_file = tmp_path / "dashboard_rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    result = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


def test_latency_panels_take_quantiles_over_five_minute_bucket_rates(
    dashboard: dict[str, Any],
) -> None:
    """File, page and queue latency show p50/p95/p99 from rate(..._bucket[5m]) summed by le."""
    for title, histogram in [
        ("File latency, end to end (done files)", "ocr_inbox_file_seconds"),
        ("Inference per page by model", "ocr_inbox_page_inference_seconds"),
        ("Queue wait", "ocr_inbox_queue_wait_seconds"),
    ]:
        queries = exprs(panel_titled(dashboard, title))
        assert [q.split(",")[0] for q in queries] == [
            "histogram_quantile(0.5",
            "histogram_quantile(0.95",
            "histogram_quantile(0.99",
        ]
        for query in queries:
            assert re.search(r"sum by \(le[,)]", query), query
            assert f"rate({histogram}_bucket{{" in query and "[5m]" in query, query


def test_throughput_panels_rate_files_and_pages(dashboard: dict[str, Any]) -> None:
    """Throughput shows files/s by outcome and pages/s by model."""
    files = exprs(panel_titled(dashboard, "Files per second by outcome"))
    pages = exprs(panel_titled(dashboard, "Pages per second by model"))

    assert files[0].startswith("sum by (outcome) (rate(ocr_inbox_files_total{")
    assert pages[0].startswith("sum by (model) (rate(ocr_inbox_pages_total{")


def test_time_split_covers_queue_load_and_inference(dashboard: dict[str, Any]) -> None:
    """The time split stacks the _sum rates of queue wait, model load and inference."""
    queries = " ".join(exprs(panel_titled(dashboard, "Time split (seconds spent per second)")))

    for histogram in ("queue_wait", "model_load", "page_inference"):
        assert f"rate(ocr_inbox_{histogram}_seconds_sum{{" in queries


def test_gpu_memory_shows_torch_and_nvml_against_total(dashboard: dict[str, Any]) -> None:
    """GPU memory plots allocated, reserved, peak, used and total, and a used/total gauge."""
    queries = " ".join(exprs(panel_titled(dashboard, "GPU memory by device")))
    gauge = exprs(panel_titled(dashboard, "GPU memory used"))[0]

    for kind in ("allocated", "reserved", "peak", "used", "total"):
        assert f"ocr_inbox_gpu_memory_{kind}_bytes" in queries
    assert "ocr_inbox_gpu_memory_used_bytes" in gauge
    assert "/ ocr_inbox_gpu_memory_total_bytes" in gauge


def test_active_model_table_shows_dtype_and_attention(dashboard: dict[str, Any]) -> None:
    """The active-model table queries the info series and keeps model, dtype and attention columns."""
    panel = panel_titled(dashboard, "Active model")
    hidden = panel["transformations"][0]["options"]["excludeByName"]

    assert panel["type"] == "table"
    assert exprs(panel)[0].startswith("ocr_inbox_active_model_info{")
    assert panel["targets"][0]["format"] == "table"
    assert not {"model", "engine", "device", "dtype", "attention"} & {
        name for name, hide in hidden.items() if hide
    }


def test_health_panels_cover_restarts_fallbacks_queue_and_chain(dashboard: dict[str, Any]) -> None:
    """Restarts, fallbacks, CUDA errors, queue depth, settling files and chain position are shown."""
    queries = " ".join(all_exprs(dashboard))

    for name in (
        "ocr_inbox_worker_restarts_total",
        "ocr_inbox_fallbacks_total",
        "ocr_inbox_cuda_errors_total",
        "ocr_inbox_queue_depth",
        "ocr_inbox_files_settling",
        "ocr_inbox_chain_position",
        "ocr_inbox_worker_up",
    ):
        assert name in queries, name


def test_dashboard_provider_points_grafana_at_a_dashboard_folder() -> None:
    """The dashboard provider is a file provider with an absolute path."""
    provisioning = yaml.safe_load(DASHBOARD_PROVIDER.read_text())

    assert provisioning["apiVersion"] == 1
    [provider] = provisioning["providers"]
    assert provider["type"] == "file"
    assert provider["name"] == "ocr-inbox"
    assert Path(provider["options"]["path"]).is_absolute()


def test_datasource_provisioning_is_a_loopback_prometheus() -> None:
    """The provisioned data source is Prometheus on loopback, its interval the scrape interval."""
    provisioning = yaml.safe_load(DATASOURCE.read_text())
    scrape_interval = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["global"]["scrape_interval"]

    assert provisioning["apiVersion"] == 1
    [source] = provisioning["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].startswith("http://127.0.0.1:")
    assert source["uid"]
    assert source["jsonData"]["timeInterval"] == scrape_interval
