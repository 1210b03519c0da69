"""Per-user catalogs in ingress: the listings kept per (server, user), bounded, and the view a caller is listed."""

from __future__ import annotations

import orjson
import pytest

from libs.common.contracts.messages import CatalogTool, ServerCatalog
from libs.common.contracts.user_catalogs import AUTHORIZATION_META, UserCatalog
from services.ingress.catalog.aggregated import Catalog
from services.ingress.catalog.user_views import KeptListings, build_view, entry_for

pytestmark = pytest.mark.unit


def _catalog(server: str, *tools: str, per_user: bool = False) -> ServerCatalog:
    listed = [CatalogTool(tool=t, definition={"name": t, "inputSchema": {"type": "object"}}) for t in tools]
    return ServerCatalog(server=server, status="ready", tools=listed, per_user=per_user)


def _answer(user: str, status: str = "ready", *tools: str) -> UserCatalog:
    own = _catalog("notes", *tools, per_user=True) if status == "ready" else None
    return UserCatalog(server="notes", user=user, status=status, catalog=own)  # type: ignore[arg-type]


def test_kept_listings_stay_within_their_bound_dropping_the_least_recently_used():
    kept = KeptListings(limit=3)
    for user in ("u1", "u2", "u3"):
        kept.put("notes", user, 1, _answer(user))
    assert kept.get("notes", "u1", 1) is not None  # u1 is used again: u2 is now the least recent
    for user in ("u4", "u5"):
        kept.put("notes", user, 1, _answer(user))
    assert len(kept) == 3
    assert {u for u in ("u1", "u2", "u3", "u4", "u5") if kept.get("notes", u, 1)} == {"u1", "u4", "u5"}


def test_a_kept_listing_holds_for_its_catalog_revision_until_dropped():
    kept = KeptListings(limit=10)
    first = kept.put("notes", "alice", 7, _answer("alice"))
    kept.put("notes", "bob", 7, _answer("bob"))
    kept.put("other", "alice", 7, _answer("alice"))
    assert kept.get("notes", "alice", 8) is None  # the shared catalog moved on
    again = kept.put("notes", "alice", 8, _answer("alice"))
    assert again != first  # a view made of the earlier one sees it was replaced
    kept.drop("notes", "alice")
    assert kept.get("notes", "alice", 8) is None and kept.get("notes", "bob", 7) is not None
    kept.drop("notes", None)  # the server's configuration changed: every user's listing of it
    assert kept.get("notes", "bob", 7) is None and kept.get("other", "alice", 7) is not None
    assert kept.drops == 2


def _shared() -> Catalog:
    shared = Catalog()
    shared.put("notes", _catalog("notes", "whoami", "admins_only", per_user=True).model_dump_json().encode())
    shared.put("files", _catalog("files", "read").model_dump_json().encode())
    return shared


def test_a_user_is_listed_their_own_tools_of_a_per_user_server_and_may_call_only_those():
    shared = _shared()
    assert shared.per_user == {"notes"}
    view = build_view(shared, {"notes": _answer("alice", "ready", "whoami", "alice_notes")})
    names = [e.name for e in view.tools.entries]
    assert sorted(names) == ["files__read", "notes__alice_notes", "notes__whoami"]
    assert view.tools.pairs.pairs == [(e.server, e.tool) for e in view.tools.entries]  # what policy filters
    assert entry_for(view, shared.by_name, view.by_name, "notes__alice_notes").tool == "alice_notes"
    # the shared listing's tool that her own does not list is not hers to call
    assert entry_for(view, shared.by_name, view.by_name, "notes__admins_only") is None
    assert entry_for(view, shared.by_name, view.by_name, "files__read").server == "files"


def test_a_user_not_yet_authorized_is_listed_the_shared_tools_marked_and_no_user_none():
    shared = _shared()
    waiting = build_view(shared, {"notes": _answer("bob", "needs_auth")})
    marked = {e.name: e.definition.get("_meta", {}) for e in waiting.tools.entries if e.server == "notes"}
    assert set(marked) == {"notes__whoami", "notes__admins_only"}
    assert all(meta[AUTHORIZATION_META] == {"required": True, "server": "notes"} for meta in marked.values())
    spliced = orjson.dumps([e.fragment for e in waiting.tools.entries])  # what the answer splices in
    assert spliced.count(b'"io.bastion/authorization"') == 2
    # calling one goes to the executor, which answers bob's own link
    assert entry_for(waiting, shared.by_name, waiting.by_name, "notes__whoami").server == "notes"
    nobody = build_view(shared, {"notes": None})
    assert [e.name for e in nobody.tools.entries] == ["files__read"]
