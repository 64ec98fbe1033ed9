"""Metric names the deploy files query, and the names a scrape exposes.

Both sides are compared as *sample* names, the way they appear on the wire and
in Prometheus (`ocr_inbox_files_total`, `ocr_inbox_file_seconds_bucket`,
`ocr_inbox_queue_depth`), not as family names. That is stricter than stripping
`_total`/`_bucket`/`_sum`/`_count`: a dashboard query for `ocr_inbox_files`
(no `_total`) returns nothing in Prometheus, and this comparison catches it.

A labelled metric appears in a scrape only after some label set was touched,
so compare against a daemon that has done some work (or a registry whose
labelled metrics were all touched).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "ocr-inbox.json"
ALERT_RULES = REPO / "deploy" / "prometheus" / "alerts.yml"

# Every metric of ours carries the prefix, so a token scan of the PromQL finds
# them without a PromQL parser; `up` and other Prometheus-made series are not ours.
_OUR_NAME = re.compile(r"(?<![A-Za-z0-9_:])ocr_inbox_[A-Za-z0-9_:]*")
# A sample line starts with its metric name; comments (# HELP/# TYPE/# EOF) do not count.
_SAMPLE_NAME = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)")


def names_in_promql(expr: str) -> set[str]:
    """Our metric names referenced by one PromQL expression."""
    return set(_OUR_NAME.findall(expr))


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL string of a dashboard: panel targets (rows included) and variable queries."""
    for panel in _all_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield str(target["expr"])
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query" and query:
            yield str(query["query"] if isinstance(query, dict) else query)
        if variable.get("definition"):
            yield str(variable["definition"])


def rule_expressions(rules: dict[str, Any]) -> Iterator[str]:
    """Every expression of a Prometheus rule file (alerting and recording rules)."""
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            yield str(rule["expr"])


def names_used_by_deploy() -> set[str]:
    """Sample names the Grafana dashboard and the Prometheus alert rules query."""
    dashboard = json.loads(DASHBOARD.read_text())
    rules = yaml.safe_load(ALERT_RULES.read_text())
    names: set[str] = set()
    for expr in [*dashboard_queries(dashboard), *rule_expressions(rules)]:
        names |= names_in_promql(expr)
    return names


def names_in_exposition(text: str) -> set[str]:
    """Sample names present in a Prometheus text or OpenMetrics exposition."""
    names: set[str] = set()
    for line in text.splitlines():
        match = _SAMPLE_NAME.match(line)
        if match:
            names.add(match.group(1))
    return names


def names_declared_in_exposition(text: str) -> set[str]:
    """Sample names a scrape declares through its # TYPE lines, samples or not.

    A labelled metric that has not happened yet (no fallback, no GPU on this
    machine) has a TYPE line but no sample; this still counts it as exported.
    Handles both the text format (counters typed as `x_total`) and OpenMetrics
    (counters typed as `x`).
    """
    names: set[str] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[:2] != ["#", "TYPE"]:
            continue
        name, kind = parts[2], parts[3]
        if kind == "counter":
            names.add(name if name.endswith("_total") else name + "_total")
        elif kind in ("histogram", "gaugehistogram"):
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        elif kind == "summary":
            names |= {name, name + "_sum", name + "_count"}
        else:
            names.add(name)
    return names


def _all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        # A collapsed row keeps its panels inside it.
        yield from _all_panels(panel.get("panels", []))
