"""The oauth service's upstream side against a real OAuth-protected MCP server (authlib authorization
server, official SDK resources over streamable HTTP and SSE) with its records in real JetStream KV:
discovery from the 401, dynamic registration, PKCE, refresh before expiry and after a 401, a clear
needs-auth state when refresh fails, per-user tokens, token exchange, sealing and key rotation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from nats.js.kv import KeyValue

from libs.common.bus.nats import connect, kv_bucket, kv_entries, kv_keys
from libs.common.contracts.oauth_upstream import UpstreamTokenQuery
from libs.common.contracts.subjects import KV_OAUTH_UPSTREAM
from libs.common.runtime.sealing import SEALED_PREFIX, Sealer, new_key
from services.oauth.upstream.authorizer import CALLBACK_PATH, Authorizer
from services.oauth.upstream.errors import UpstreamOAuthError
from services.oauth.upstream.records import Records
from services.oauth.upstream.secret_stores import SealedKVStore
from services.oauth.upstream.tickets import TicketError, Tickets
from tests.support.stores import declared
from tests.support.upstream_login import callback_params, log_in, running_oauth_upstream

pytestmark = pytest.mark.integration

PUBLIC = "http://bastion.test:8420"


@dataclass
class Setup:
    base: str
    authorizer: Authorizer
    store: SealedKVStore
    kv: KeyValue
    http: httpx2.AsyncClient
    key: str


async def _live(kv: KeyValue) -> dict[str, str]:
    """Each key holding a value, with it (a deleted key keeps its subject until compaction)."""
    return {name: (entry.value or b"").decode() for name, entry in (await kv_entries(kv, await kv_keys(kv))).items()}


@contextlib.asynccontextmanager
async def authorizing(nats_url: str, base: str) -> AsyncIterator[Setup]:
    """An authorizer with its records in a fresh KV bucket, in front of the upstream at `base`."""
    nc = await connect(nats_url, "test-oauth")
    await declared(nc.jetstream(), KV_OAUTH_UPSTREAM)  # as the oauth service would
    kv = await kv_bucket(nc.jetstream(), KV_OAUTH_UPSTREAM)
    key = new_key()
    store = SealedKVStore(kv, Sealer(key))
    async with httpx2.AsyncClient(timeout=10) as http:
        authorizer = Authorizer(Records(store), Tickets(key, ttl=600), http, PUBLIC)
        yield Setup(base, authorizer, store, kv, http, key)
    await nc.close()


@pytest.fixture(scope="module")
def shared_upstream() -> Iterator[str]:
    """The upstream of the tests that read none of its grant counters and expire none of its tokens:
    each test's authorizer, its KV fresh, registers a client of its own there and logs its own users in."""
    with running_oauth_upstream() as base:
        yield base


@pytest.fixture
async def setup(nats_url: str, shared_upstream: str) -> AsyncIterator[Setup]:
    async with authorizing(nats_url, shared_upstream) as found:
        yield found


@pytest.fixture
async def own_setup(nats_url: str) -> AsyncIterator[Setup]:
    """An upstream of the test's own: its grant counters read exactly, its tokens expired at will."""
    with running_oauth_upstream() as base:
        async with authorizing(nats_url, base) as found:
            yield found


def _query(s: Setup, server: str = "locked", path: str = "/mcp", **kw: object) -> UpstreamTokenQuery:
    transport = "sse" if path == "/sse" else "http"
    return UpstreamTokenQuery(server=server, url=s.base + path, transport=transport, **kw)  # type: ignore[arg-type]


async def _authorize(s: Setup, link: str, username: str) -> str:
    """Open a Bastion link as a browser would; returns the server name the callback finished."""
    assert link.startswith(PUBLIC + "/oauth/upstream/authorize?ticket=")
    upstream_url = await s.authorizer.start(link.split("ticket=", 1)[1].replace("%3D", "="))
    assert "code_challenge_method=S256" in upstream_url and "resource=" in upstream_url
    location = await log_in(s.http, upstream_url, username)
    assert location.startswith(PUBLIC + CALLBACK_PATH)
    params = callback_params(location)
    return await s.authorizer.callback(params["state"], params.get("code"), params.get("error"))


async def _whoami(url: str, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=10) as http:
        transport = (
            sse_client(url, headers=headers) if url.endswith("/sse") else streamable_http_client(url, http_client=http)
        )
        async with Client(transport) as client:
            result = await client.call_tool("whoami", {})
    return result.content[0].text  # type: ignore[union-attr]


async def _stats(s: Setup) -> dict[str, int]:
    return (await s.http.get(s.base + "/test/stats")).json()["grants"]


async def test_shared_token_authorized_by_an_admin_then_refreshed_then_needs_auth_again(own_setup: Setup) -> None:
    s = own_setup
    before = await s.authorizer.token(_query(s))
    assert before.needs_auth and before.access_token is None
    assert before.authorize_url is None, "a caller never gets a link to bind the shared token"
    assert "bastion servers list" in (before.error or "")

    assert await _authorize(s, s.authorizer.link("locked", s.base + "/mcp", "http", None), "admin-ann") == "locked"
    first = await s.authorizer.token(_query(s))
    assert first.access_token and not first.needs_auth
    assert await _whoami(s.base + "/mcp", first.access_token) == "admin-ann"
    assert (await s.authorizer.token(_query(s))).access_token == first.access_token, "cached while fresh"

    # the upstream stops accepting it (401): the executor says which token was refused
    await s.http.post(s.base + "/test/expire-access")
    renewed = await s.authorizer.token(_query(s, rejected=first.access_token))
    assert renewed.access_token and renewed.access_token != first.access_token
    assert await _whoami(s.base + "/mcp", renewed.access_token) == "admin-ann"
    assert (await _stats(s)).get("refresh_token") == 1

    # refresh fails too: a clear needs-auth answer, and the dead tokens are gone
    await s.http.post(s.base + "/test/expire-refresh")
    after = await s.authorizer.token(_query(s, rejected=renewed.access_token))
    assert after.needs_auth and after.access_token is None
    assert await s.authorizer.token(_query(s)) == after


async def test_a_link_opened_while_the_token_is_asked_for_registers_one_client(setup: Setup) -> None:
    """Links opened and tokens asked for at once, before any client exists, register one client;
    two would leave the code issued to the first refused at the callback (invalid_grant)."""
    s = setup
    link = s.authorizer.link("locked", s.base + "/mcp", "http", None)
    ticket = link.split("ticket=", 1)[1].replace("%3D", "=")
    before = (await s.http.get(s.base + "/test/stats")).json()["clients"]
    urls, *_ = await asyncio.gather(
        asyncio.gather(*(s.authorizer.start(ticket) for _ in range(3))),
        *(s.authorizer.token(_query(s)) for _ in range(2)),
    )
    assert (await s.http.get(s.base + "/test/stats")).json()["clients"] == before + 1
    assert len({parse_qs(urlsplit(url).query)["client_id"][0] for url in urls}) == 1
    location = await log_in(s.http, urls[0], "admin-ann")
    params = callback_params(location)
    assert await s.authorizer.callback(params["state"], params.get("code"), params.get("error")) == "locked"


async def test_tokens_and_client_secret_are_sealed_at_rest(setup: Setup) -> None:
    s = setup
    await _authorize(s, s.authorizer.link("locked", s.base + "/mcp", "http", None), "admin-ann")
    token = (await s.authorizer.token(_query(s))).access_token
    assert token
    stored = await _live(s.kv)
    assert {"client.locked"} <= set(stored) and any(n.startswith("token.locked.") for n in stored)
    for name, raw in stored.items():
        assert raw.startswith(SEALED_PREFIX), name
        assert token not in raw and "client_secret" not in raw


async def test_key_rotation_reseals_every_record_under_the_new_key(setup: Setup) -> None:
    s = setup
    await _authorize(s, s.authorizer.link("locked", s.base + "/mcp", "http", None), "admin-ann")
    token = (await s.authorizer.token(_query(s))).access_token
    newer = new_key()
    rotated = SealedKVStore(s.kv, Sealer(f"{newer},{s.key}"))
    assert await rotated.reseal() == len(await _live(s.kv))
    assert await rotated.reseal() == 0, "everything is current now"
    only_new = Authorizer(Records(SealedKVStore(s.kv, Sealer(newer))), Tickets(newer, 600), s.http, PUBLIC)
    assert (await only_new.token(_query(s))).access_token == token, "the old key is no longer needed"
    with pytest.raises(Exception, match="none of the keys"):
        await SealedKVStore(s.kv, Sealer(s.key)).get("client.locked")


async def test_per_user_tokens_are_never_shared_and_a_missing_one_names_the_users_link(setup: Setup) -> None:
    s = setup
    alice = await s.authorizer.token(_query(s, per_user=True, user="alice"))
    assert alice.needs_auth and alice.authorize_url and alice.authorize_url.startswith(PUBLIC)
    await _authorize(s, alice.authorize_url, "alice-upstream")
    alice_token = (await s.authorizer.token(_query(s, per_user=True, user="alice"))).access_token
    assert alice_token and await _whoami(s.base + "/mcp", alice_token) == "alice-upstream"

    bob = await s.authorizer.token(_query(s, per_user=True, user="bob"))
    assert bob.access_token is None and bob.needs_auth and bob.authorize_url
    assert bob.authorize_url != alice.authorize_url
    await _authorize(s, bob.authorize_url, "bob-upstream")
    bob_token = (await s.authorizer.token(_query(s, per_user=True, user="bob"))).access_token
    assert bob_token and bob_token != alice_token
    assert await _whoami(s.base + "/mcp", bob_token) == "bob-upstream"

    nobody = await s.authorizer.token(_query(s, per_user=True))
    assert nobody.access_token is None and "per user" in (nobody.error or "")
    shared = await s.authorizer.token(_query(s))
    assert shared.access_token is None, "a per-user token is not the shared one"


async def test_token_exchange_instead_of_a_second_login(own_setup: Setup) -> None:
    s = own_setup
    first = await s.authorizer.token(_query(s, per_user=True, user="alice"))
    assert first.authorize_url
    await _authorize(s, first.authorize_url, "alice-upstream")
    assert (await s.authorizer.token(_query(s, per_user=True, user="alice"))).access_token

    other = await s.authorizer.token(_query(s, server="locked-sse", path="/sse", per_user=True, user="alice"))
    assert other.access_token, other.error
    assert await _whoami(s.base + "/sse", other.access_token) == "alice-upstream"
    assert (await _stats(s)).get("urn:ietf:params:oauth:grant-type:token-exchange") == 1
    bob = await s.authorizer.token(_query(s, server="locked-sse", path="/sse", per_user=True, user="bob"))
    assert bob.access_token is None and bob.authorize_url, "bob has nothing to exchange"


async def test_forged_expired_and_replayed_steps_are_refused(setup: Setup) -> None:
    s = setup
    link = s.authorizer.link("locked", s.base + "/mcp", "http", "alice")
    ticket = link.split("ticket=", 1)[1].replace("%3D", "=")
    with pytest.raises(TicketError):
        await s.authorizer.start(ticket[:-4] + "AAAA")
    with pytest.raises(TicketError):
        await Authorizer(Records(s.store), Tickets(new_key(), 600), s.http, PUBLIC).start(ticket)
    upstream_url = await s.authorizer.start(ticket)
    params = callback_params(await log_in(s.http, upstream_url, "alice-upstream"))
    with pytest.raises(UpstreamOAuthError, match="unknown or expired"):
        await s.authorizer.callback("not-the-state", params["code"], None)
    assert await s.authorizer.callback(params["state"], params["code"], None) == "locked"
    with pytest.raises(UpstreamOAuthError, match="unknown or expired"):
        await s.authorizer.callback(params["state"], params["code"], None)
