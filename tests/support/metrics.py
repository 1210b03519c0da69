"""Scrape a real `/metrics` endpoint over HTTP and compare two scrapes (what moved between them)."""

from __future__ import annotations

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from libs.common.web.guarded_http import shared_tls

__all__ = ["Series", "moved", "scrape", "value"]

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str, token: str | None = None) -> Series:
    """One real scrape of a `/metrics` endpoint, parsed by prometheus-client's own parser."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(timeout=10, verify=shared_tls()) as http:
        response = await http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


def moved(before: Series, after: Series, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)
