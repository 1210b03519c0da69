"""What ingress keeps of each user's listing of a per-user server, asked over a real NATS server.

The answers come from a responder on `EXEC_USER_CATALOG` speaking the executor's contract, so a test
can say exactly what the executor answers and count how often it is asked; no announcement
(`EXEC_USER_CATALOG_CHANGED`) is ever sent, as when it is still on its way."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.msg import Msg

from libs.common.contracts import subjects
from libs.common.contracts.messages import Caller, CatalogTool, ServerCatalog
from libs.common.contracts.user_catalogs import AUTHORIZATION_META, UserCatalog, UserCatalogQuery
from services.ingress.catalog.aggregated import Catalog
from services.ingress.catalog.user_views import UserCatalogs

pytestmark = pytest.mark.integration


def _catalog(*tools: str) -> ServerCatalog:
    listed = [CatalogTool(tool=t, definition={"name": t, "inputSchema": {"type": "object"}}) for t in tools]
    return ServerCatalog(server="notes", status="ready", tools=listed, per_user=True)


class Executor:
    """Answers each query as `status` says, counting them."""

    def __init__(self) -> None:
        self.status = "needs_auth"
        self.asked = 0

    async def answer(self, msg: Msg) -> None:
        query = UserCatalogQuery.model_validate_json(msg.data)
        self.asked += 1
        own = _catalog(f"{query.user}_notes") if self.status == "ready" else None
        answer = UserCatalog(server=query.server, user=query.user, status=self.status, catalog=own)  # type: ignore[arg-type]
        await msg.respond(answer.model_dump_json().encode())


@pytest.fixture
async def listings(nats_url: str) -> AsyncIterator[tuple[UserCatalogs, Executor]]:
    nc = await nats.connect(nats_url)
    executor = Executor()
    await nc.subscribe(subjects.EXEC_USER_CATALOG, cb=executor.answer)
    shared = Catalog()
    shared.put("notes", _catalog("whoami").model_dump_json().encode())
    try:
        yield UserCatalogs(nc, shared, timeout=5), executor
    finally:
        await nc.close()


def _names(view) -> dict[str, bool]:
    """Each listed tool's name, and whether it is marked for authorization."""
    return {e.name: AUTHORIZATION_META in e.definition.get("_meta", {}) for e in view.tools.entries}


async def test_a_user_who_just_authorized_is_listed_their_own_tools_before_any_announcement(listings) -> None:
    """A user's "needs_auth" answer is not kept: their first listing after the oauth callback answered
    them is their own, though the announcement that their listing changed has not arrived."""
    users, executor = listings
    bob = Caller(key_id="k-bob", key_name="bob", user_id="bob")
    before = await users.view(bob, only="notes")
    assert before is not None and _names(before) == {"notes__whoami": True}
    executor.status = "ready"  # bob followed his link; nothing is announced yet
    after = await users.view(bob)
    assert after is not None and _names(after) == {"notes__bob_notes": False}
    assert executor.asked == 2


async def test_a_ready_listing_is_kept_and_asked_once(listings) -> None:
    users, executor = listings
    executor.status = "ready"
    alice = Caller(key_id="k-alice", key_name="alice", user_id="alice")
    views = [await users.view(alice) for _ in range(3)]
    assert all(view is views[0] for view in views) and executor.asked == 1
    assert _names(views[0]) == {"notes__alice_notes": False}
