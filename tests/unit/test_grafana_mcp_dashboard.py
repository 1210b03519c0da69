"""`deploy/grafana/bastion-mcp.json` charts the OpenTelemetry convention metrics Bastion exports: every
metric and label its PromQL names is one `libs.common.runtime.metrics` defines, so a renamed metric or label
breaks here, not on someone's empty panel."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from libs.common.runtime import metrics

pytestmark = pytest.mark.unit

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "bastion-mcp.json"
CONVENTION_METRICS = (
    metrics.MCP_SERVER_DURATION,
    metrics.MCP_CLIENT_DURATION,
    metrics.GEN_AI_DURATION,
    metrics.GEN_AI_TOKENS,
)
_SERIES = re.compile(r"\b([a-z_]+?)_(bucket|count|sum)\b")
_BY = re.compile(r"\bby \(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")


def _labels(metric: Any) -> set[str]:
    names: tuple[str, ...] = metric._labelnames  # prometheus-client keeps them only here
    return set(names)


def _queries(dashboard: dict[str, Any]) -> list[str]:
    panels = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return panels + [variable["definition"] for variable in dashboard["templating"]["list"]]


def test_every_query_names_a_convention_metric_and_only_its_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    families = {metric.describe()[0].name: _labels(metric) for metric in CONVENTION_METRICS}
    charted: set[str] = set()
    for query in _queries(dashboard):
        used = {match.group(1) for match in _SERIES.finditer(query)}
        assert used and used <= families.keys(), query
        charted |= used
        allowed = set.union(*(families[name] for name in used)) | {"le"}
        grouped = {label.strip() for group in _BY.findall(query) for label in group.split(",")}
        matched = {
            re.split(r"=~|!=|=", matcher)[0].strip()
            for selector in _MATCHERS.findall(query)
            for matcher in selector.split(",")
            if matcher.strip()
        }
        assert grouped | matched <= allowed, query
    # the dashboard shows all four: server and client MCP durations, LLM durations and tokens
    assert charted == families.keys()
    # a panel uses the data source the import asks for, never a fixed one
    assert all(panel["datasource"]["uid"] == "${DS_PROMETHEUS}" for panel in dashboard["panels"])
