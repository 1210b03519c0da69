"""Code Mode's view of the catalog: a heartbeat of an entry (executor replicas refresh their "ready"
every few seconds) must not rebuild stubs and search; a changed listing must."""

from __future__ import annotations

import pytest

from libs.common.contracts.messages import CatalogTool, ServerCatalog
from services.codemode.toolset import Toolset
from services.codemode.views import CatalogView

pytestmark = pytest.mark.unit


def test_only_a_changed_listing_rebuilds_the_view():
    told: list[Toolset] = []
    view = CatalogView(on_change=told.append)
    get = CatalogTool(tool="get", definition={"name": "get", "inputSchema": {"type": "object"}})
    entry = ServerCatalog(server="web", status="ready", tools=[get], publisher="a-1", updated_at=100.0)
    view.put("web", entry.model_dump_json().encode())
    assert view.pairs == [("web", "get")] and len(told) == 1
    for publisher, at in (("a-1", 110.0), ("b-2", 111.0)):
        view.put("web", entry.model_copy(update={"publisher": publisher, "updated_at": at}).model_dump_json().encode())
    assert len(told) == 1 and view.revision == 1
    view.put("web", entry.model_copy(update={"status": "unavailable", "tools": []}).model_dump_json().encode())
    assert view.pairs == [] and len(told) == 2


def _tool(name: str) -> CatalogTool:
    return CatalogTool(tool=name, definition={"name": name, "inputSchema": {"type": "object"}})


def test_a_callers_own_listing_replaces_the_per_user_servers_shared_tools_only():
    view = CatalogView()
    for server, tools in (("notes", ["shared_notes"]), ("web", ["get"])):
        entry = ServerCatalog(server=server, status="ready", tools=[_tool(t) for t in tools])
        view.put(server, entry.model_dump_json().encode())
    alice = [("notes", {"name": "alice_notes"}), ("web", {"name": "not_mine_to_add"})]
    listed, definitions, digest = view.merged(["notes"], alice)
    assert listed.pairs == [("notes", "alice_notes"), ("web", "get")]
    assert [d["name"] for d in definitions] == ["alice_notes", "get"]
    bob = view.merged(["notes"], [("notes", {"name": "bob_notes"})])
    assert bob[0].pairs == [("notes", "bob_notes"), ("web", "get")] and bob[2] != digest
    assert view.merged(["notes"], [])[0].pairs == [("web", "get")]  # a user listed none of it
