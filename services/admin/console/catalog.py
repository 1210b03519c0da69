"""The console's catalog: every tool of every server, searched and paged here, on the server, so
the browser holds one page however many tools there are. Pure: no I/O.

A query is words; a tool matches when each word is in its gateway name, server, upstream name,
title or description (case-insensitive). Matches on the name rank before matches in the text only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from libs.common.messages import ServerCatalog

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


def _rows(catalogs: Iterable[ServerCatalog], server: str | None) -> list[ToolRow]:
    rows = [
        ToolRow(
            server=c.server,
            tool=t.tool,
            name=gateway_name(c.server, t.tool, c.namespace),
            description=str(t.definition.get("description") or ""),
            definition=t.definition,
        )
        for c in catalogs
        if c.status == "ready" and (server is None or c.server == server)
        for t in c.tools
    ]
    rows.sort(key=lambda r: (r.server, r.tool))
    return rows


def search(catalogs: Iterable[ServerCatalog], query: str, server: str | None, offset: int, limit: int) -> CatalogPage:
    """One page of the tools matching `query` (every word), name matches first."""
    ready = [c for c in catalogs if c.status == "ready"]
    words = query.lower().split()
    ranked: list[tuple[int, ToolRow]] = []
    for row in _rows(ready, server):
        name = f"{row.name} {row.server} {row.tool}".lower()
        text = f"{name} {row.definition.get('title') or ''} {row.description}".lower()
        if all(w in text for w in words):
            ranked.append((0 if all(w in name for w in words) else 1, row))
    ranked.sort(key=lambda pair: pair[0])  # stable: alphabetical within each rank
    page = [row for _, row in ranked[offset : offset + limit]]
    return CatalogPage(total=len(ranked), offset=offset, rows=page, servers=len(ready))
