"""The console's catalog.

Every tool of every server, searched and paged here, on the server, so the browser holds one page however
many tools there are. Pure: no I/O.

A query is words; a tool matches when each word is in its gateway name, server, upstream name,
title or description (case-insensitive). Matches on the name rank before matches in the text only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from libs.common.contracts.messages import CatalogTool, ServerCatalog

__all__ = ["MAX_PAGE", "CatalogPage", "ToolRow", "gateway_name", "search"]

MAX_PAGE = 200
NAME_SEPARATOR = "__"


class ToolRow(BaseModel):
    server: str
    tool: str
    """The upstream's own name."""
    name: str
    """What agents call it through the gateway (`<server>__<tool>` unless the server keeps its names)."""
    description: str
    definition: dict[str, Any]


class CatalogPage(BaseModel):
    total: int
    """How many tools match (every page's rows together)."""
    offset: int
    rows: list[ToolRow]
    servers: int
    """How many servers' catalogs were searched (ready ones)."""


def gateway_name(server: str, tool: str, namespace: bool) -> str:
    return f"{server}{NAME_SEPARATOR}{tool}" if namespace else tool


def search(catalogs: Iterable[ServerCatalog], query: str, server: str | None, offset: int, limit: int) -> CatalogPage:
    """One page of the tools matching `query` (every word), name matches first, alphabetical within.

    Only the page's rows become models: a search of thousands of tools stays a few milliseconds."""
    ready = [c for c in catalogs if c.status == "ready"]
    words = query.lower().split()
    ranked: list[tuple[int, str, str, str, ServerCatalog, CatalogTool]] = []
    for catalog in ready:
        if server is not None and catalog.server != server:
            continue
        for tool in catalog.tools:
            name = gateway_name(catalog.server, tool.tool, catalog.namespace)
            label = f"{name} {catalog.server} {tool.tool}".lower()
            text = f"{label} {tool.definition.get('title') or ''} {tool.definition.get('description') or ''}".lower()
            if all(w in text for w in words):
                rank = 0 if all(w in label for w in words) else 1
                ranked.append((rank, catalog.server, tool.tool, name, catalog, tool))
    ranked.sort(key=lambda r: r[:3])
    rows = [
        ToolRow(
            server=c.server,
            tool=t.tool,
            name=name,
            description=str(t.definition.get("description") or ""),
            definition=t.definition,
        )
        for _, _, _, name, c, t in ranked[offset : offset + limit]
    ]
    return CatalogPage(total=len(ranked), offset=offset, rows=rows, servers=len(ready))
