"""The console's catalog search (`services.admin.console.catalog`): every word must match, name
matches rank first, pages walk every match once, servers that are not ready are left out."""

from __future__ import annotations

import pytest

from libs.common.contracts.messages import ServerCatalog
from libs.common.contracts.messages_records import CatalogTool
from services.admin.console.catalog import MAX_PAGE, search

pytestmark = pytest.mark.unit


def _catalog(server: str, tools: dict[str, str], status: str = "ready", namespace: bool = True) -> ServerCatalog:
    return ServerCatalog(
        server=server,
        status=status,  # type: ignore[arg-type]
        namespace=namespace,
        tools=[CatalogTool(tool=n, definition={"name": n, "description": d}) for n, d in tools.items()],
    )


BIG = [
    _catalog(f"s{i:02d}", {f"tool_{j:03d}": f"does thing {j} for server {i}" for j in range(100)}) for i in range(15)
]


def test_paging_walks_every_one_of_1500_tools_once() -> None:
    seen: list[str] = []
    offset = 0
    while True:
        page = search(BIG, "", None, offset, MAX_PAGE)
        assert page.total == 1500 and page.servers == 15 and len(page.rows) <= MAX_PAGE
        if not page.rows:
            break
        seen += [r.name for r in page.rows]
        offset += len(page.rows)
    assert len(seen) == len(set(seen)) == 1500
    assert seen[0] == "s00__tool_000" and seen[-1] == "s14__tool_099"


def test_every_word_must_match_and_name_matches_come_first() -> None:
    catalogs = [
        _catalog("billing", {"find_invoice": "Look up an invoice", "refund": "Refund a payment on an invoice"}),
        _catalog("docs", {"invoice_help": "How invoices work"}),
    ]
    page = search(catalogs, "INVOICE", None, 0, 50)
    assert [r.name for r in page.rows] == ["billing__find_invoice", "docs__invoice_help", "billing__refund"]
    assert [r.name for r in search(catalogs, "refund invoice", None, 0, 50).rows] == ["billing__refund"]
    assert search(catalogs, "invoice nothing-like-this", None, 0, 50).total == 0
    assert [r.name for r in search(catalogs, "invoice", "docs", 0, 50).rows] == ["docs__invoice_help"]


def test_servers_not_ready_are_left_out_and_own_names_are_kept() -> None:
    catalogs = [
        _catalog("down", {"x": "gone"}, status="unavailable"),
        _catalog("plain", {"lookup": "find"}, namespace=False),
    ]
    page = search(catalogs, "", None, 0, 50)
    assert page.servers == 1 and [(r.server, r.tool, r.name) for r in page.rows] == [("plain", "lookup", "lookup")]
    assert page.rows[0].definition == {"name": "lookup", "description": "find"}
