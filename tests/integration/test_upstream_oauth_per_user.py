"""Per-user upstream credentials, end to end: a real OAuth-protected upstream (its authorization
server built with authlib) configured `per_user: true`, two users calling through the whole gateway.

Each user's call carries that user's own token over that user's own session: the upstream's
`whoami` answers the upstream account the calling user authorized, never another user's. A user
who has not authorized gets an error with their own link (as a URL-mode elicitation to an agent
that declared it); a call that names no user is refused.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, urlsplit

import httpx2
import nats
import pytest
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from mcp_types import ElicitRequestURLParams, ElicitResult, ErrorData
from mcp_types.jsonrpc import URL_ELICITATION_REQUIRED

from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.pins import PinRecord, pin_key
from libs.common.contracts.user_catalogs import AUTHORIZATION_META
from libs.common.settings import CodeModeSettings
from tests.support.audit_rows import audit_rows
from tests.support.gateway import ADMIN_KEY, Gateway, default_config
from tests.support.polling import poll_until
from tests.support.upstream_login import follow_authorization_link, gateway_for_oauth_upstreams, running_oauth_upstream

pytestmark = pytest.mark.integration


ALICE_KEY = "bk_test_alice_key_000000000000000"
BOB_KEY = "bk_test_bob_key_00000000000000000"
SERVER = "down-peruser"  # "down*": running_gateway does not wait for it to be ready
LINK = re.compile(r"http://\S+/oauth/upstream/authorize\?ticket=[\w.=-]+")


def config(base: str) -> dict:
    # no stdio example servers: no test here calls them, and each would cost a Python process's start-up
    raw = {**default_config(), "mcpServers": {SERVER: {"url": f"{base}/mcp", "per_user": True}}}
    raw["users"] = [{"id": "alice", "name": "Alice"}, {"id": "bob", "name": "Bob"}]
    raw["keys"] += [
        {"name": "alice-key", "key": ALICE_KEY, "user": "alice", "tools": [f"{SERVER}/*"]},
        {"name": "bob-key", "key": BOB_KEY, "user": "bob", "tools": [f"{SERVER}/*"]},
    ]
    return raw


def _status(gateway: Gateway) -> tuple[str, str] | None:
    status = gateway.ingress.catalog.server_status(SERVER)
    return (status.status, status.health or "") if status is not None else None


async def _authorize(link: str, public: str, upstream_account: str) -> None:
    assert SERVER in await follow_authorization_link(link, public, upstream_account)


async def _owner_authorizes(gateway: Gateway, public: str, upstream_account: str = "admin-ann") -> None:
    """An owner follows the server's link (as `upstream_account` upstream), so Bastion can list it."""
    await poll_until(lambda: _status(gateway) == ("unavailable", "needs_auth"), "needs_auth", 30)
    async with httpx2.AsyncClient(headers=gateway.admin_headers, timeout=20) as admin:
        shown = (await admin.get(f"{gateway.admin_api}/servers/{SERVER}")).json()
    await _authorize(shown["authorize_url"], public, upstream_account)
    await poll_until(lambda: (_status(gateway) or ("",))[0] == "ready", "the catalog listed", 30)


async def _users_authorize(gateway: Gateway, public: str, *users: tuple[str, str]) -> None:
    """Each (key, upstream account) follows the link its first call is refused with."""
    for key, account in users:
        link = LINK.search(await _refusal(gateway, key))
        assert link is not None
        await _authorize(link.group(0), public, account)


async def _whoami(gateway: Gateway, key: str) -> str:
    async with gateway.client(key) as client:
        result = await client.call_tool(f"{SERVER}__whoami", {})
    assert not result.is_error, result
    return result.content[0].text  # type: ignore[union-attr]


async def _refusal(gateway: Gateway, key: str) -> str:
    return (await _refused(gateway, key)).message


async def _refused(gateway: Gateway, key: str) -> ErrorData:
    async with gateway.client(key) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool(f"{SERVER}__whoami", {})
    return refused.value.error


async def _declined_input_required(gateway: Gateway, key: str) -> str:
    """What a 2026-07-28 agent declaring URL elicitation sees: asked once, by an `input_required` result
    whose URL-mode `elicitation/create` holds the link; its user declines, and the retry gets the
    refusal with the link. Returns the link it was asked to open."""
    asked: list[ElicitRequestURLParams] = []

    async def decline(context, params):
        asked.append(params)
        return ElicitResult(action="decline")

    async with gateway.client(key, elicitation_callback=decline) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool(f"{SERVER}__whoami", {})
    assert len(asked) == 1 and asked[0].mode == "url" and LINK.fullmatch(asked[0].url), asked
    assert SERVER in asked[0].message and "ticket=" not in asked[0].message
    assert refused.value.error.code != URL_ELICITATION_REQUIRED and LINK.search(refused.value.error.message)
    return asked[0].url


async def test_a_users_authorization_link_reaches_them_and_no_audit_row_or_log(
    nats_url, redis_url, tmp_path, caplog
) -> None:
    """The link carries a ticket that binds an upstream account to the user: a credential. The user's
    answer has it (in the message, and as `data.authorize_url`); the audit row and the logs do not."""
    caplog.set_level(logging.DEBUG)
    with running_oauth_upstream() as base:
        async with gateway_for_oauth_upstreams(
            nats_url, redis_url, tmp_path, config(base), codemode=CodeModeSettings(sandbox_workers=1)
        ) as (gateway, public):
            await _owner_authorizes(gateway, public)
            caplog.clear()  # the admin's own link went through this test's HTTP client, which logs its URLs

            refused = await _refused(gateway, ALICE_KEY)
            link = LINK.search(refused.message)
            assert link is not None, refused
            assert isinstance(refused.data, dict) and refused.data["authorize_url"] == link.group(0)
            ticket = parse_qs(urlsplit(link.group(0)).query)["ticket"][0]

            # a Code Mode script's call is refused alike: the run's answer adds the link, the script never sees it
            async with gateway.client(ALICE_KEY, headers={"X-Bastion-Code-Mode": "on"}) as client:
                run = await client.call_tool("execute_code", {"code": "print(down_peruser.whoami())"})
            text = "\n".join(getattr(block, "text", "") for block in run.content)
            printed, _, added = text.rpartition("\n")
            assert "authorize this server for your user first" in printed and "ticket=" not in printed, text
            assert LINK.search(added) and added.startswith(f"authorize {SERVER} for your user first: open "), text

            rows = await audit_rows(nats_url, "alice-key", 3)
            assert {(r.kind, r.status) for r in rows} == {("tool_call", "error"), ("code_run", "tool_error")}, rows
            refusal = next(r for r in rows if r.kind == "tool_call")
            assert refusal.error and "authorize this server for your user first" in refusal.error
            assert all(ticket not in r.model_dump_json() and "ticket=" not in r.model_dump_json() for r in rows)
            logged = "\n".join(record.getMessage() for record in caplog.records)
            assert "needs OAuth" in logged or "401" in logged, "the refusal was logged, without its link"
            assert ticket not in logged and "ticket=" not in logged

            # the link works: alice authorizes, and her next call goes through
            await _authorize(link.group(0), public, "alice-upstream")
            assert await _whoami(gateway, ALICE_KEY) == "alice-upstream"


async def test_each_user_calls_with_their_own_token_never_another_users(nats_url, redis_url, tmp_path) -> None:
    with running_oauth_upstream() as base:
        async with gateway_for_oauth_upstreams(nats_url, redis_url, tmp_path, config(base)) as (
            gateway,
            public,
        ):
            # an admin authorizes once so Bastion can list the server's tools
            await _owner_authorizes(gateway, public)

            # alice has not authorized: her call is refused with her own link, not run on the admin's token
            refused = await _refusal(gateway, ALICE_KEY)
            assert "authorize this server for your user first" in refused and "admin-ann" not in refused
            alice_link = LINK.search(refused)
            assert alice_link is not None, refused
            await _authorize(alice_link.group(0), public, "alice-upstream")
            assert await _whoami(gateway, ALICE_KEY) == "alice-upstream"

            # bob is next: alice's session and token are not his
            refused = await _refusal(gateway, BOB_KEY)
            bob_link = LINK.search(refused)
            assert bob_link is not None and bob_link.group(0) != alice_link.group(0), refused
            await _authorize(bob_link.group(0), public, "bob-upstream")
            assert await _whoami(gateway, BOB_KEY) == "bob-upstream"
            assert await _whoami(gateway, ALICE_KEY) == "alice-upstream"

            # a key bound to no user may not use a per-user server at all (not even the admin's token)
            assert "call it as a user" in await _refusal(gateway, ADMIN_KEY)


async def test_an_agent_that_takes_url_elicitations_is_asked_to_connect_its_account(
    nats_url, redis_url, tmp_path
) -> None:
    """A 2025-11-25 agent declaring `elicitation.url` gets the link as a URL-mode elicitation
    (`-32042`), a 2026-07-28 one as an `input_required` result; following it connects the account."""
    with running_oauth_upstream() as base:
        async with gateway_for_oauth_upstreams(nats_url, redis_url, tmp_path, config(base)) as (gateway, public):
            await _owner_authorizes(gateway, public)

            async def never_asked(context, params):  # declares elicitation (form and url) to the gateway
                raise AssertionError("the gateway answers, it does not ask mid-call")

            await _declined_input_required(gateway, BOB_KEY)  # the 2026-07-28 form, declined
            async with gateway.client(BOB_KEY, mode="legacy", elicitation_callback=never_asked) as client:
                with pytest.raises(MCPError) as asked:
                    await client.call_tool(f"{SERVER}__whoami", {})
            required = UrlElicitationRequiredError.from_error(asked.value.error)
            assert asked.value.error.code == URL_ELICITATION_REQUIRED and len(required.elicitations) == 1
            elicitation = required.elicitations[0]
            assert elicitation.mode == "url" and LINK.fullmatch(elicitation.url), elicitation
            assert SERVER in elicitation.message and "ticket=" not in elicitation.message

            await _authorize(elicitation.url, public, "bob-upstream")
            assert await _whoami(gateway, BOB_KEY) == "bob-upstream"


async def _listed(gateway: Gateway, key: str) -> dict[str, dict]:
    """The tools of the per-user server `key`'s agent is listed, by name, with their `_meta`."""
    async with gateway.client(key) as client:
        listed = await client.list_tools()
    return {t.name: t.meta or {} for t in listed.tools if t.name.startswith(f"{SERVER}__")}


async def _called(gateway: Gateway, key: str, tool: str, arguments: dict | None = None) -> str:
    """The text of `tool`'s answer (its error's, when refused)."""
    async with gateway.client(key) as client:
        try:
            result = await client.call_tool(f"{SERVER}__{tool}", arguments or {})
        except MCPError as refused:
            return f"refused: {refused.error.message}"
    text = result.content[0].text  # type: ignore[union-attr]
    return f"refused: {text}" if result.is_error else text


async def test_each_user_is_listed_what_their_own_credential_unlocks(nats_url, redis_url, tmp_path) -> None:
    """Two users of one per-user server are each listed their own catalog (made over their own session),
    never the other's; a user not yet authorized is listed the shared tools marked as needing it; a
    change the upstream announces on a user's session reaches that user's next list."""
    shared = {f"{SERVER}__{name}" for name in ("whoami", "echo", "grow_mine")}
    with running_oauth_upstream() as base:
        raw = config(base)
        # pins flag what only one user is listed instead of holding it for an owner's approval
        raw["mcpServers"][SERVER]["pinning"] = "warn"
        async with gateway_for_oauth_upstreams(nats_url, redis_url, tmp_path, raw) as (gateway, public):
            await _owner_authorizes(gateway, public)

            # not authorized yet: the shared tools, each marked as needing the user's authorization
            before = await _listed(gateway, ALICE_KEY)
            assert set(before) == shared, before
            assert all(meta[AUTHORIZATION_META] == {"required": True, "server": SERVER} for meta in before.values())
            # a key bound to no user can call none of them, so it is listed none
            assert await _listed(gateway, ADMIN_KEY) == {}

            await _users_authorize(gateway, public, (ALICE_KEY, "alice"), (BOB_KEY, "bob"))

            alice, bob = await _listed(gateway, ALICE_KEY), await _listed(gateway, BOB_KEY)
            assert set(alice) == shared | {f"{SERVER}__alice_notes"}, alice
            assert set(bob) == shared | {f"{SERVER}__bob_notes"}, bob
            assert not any(AUTHORIZATION_META in meta for meta in (*alice.values(), *bob.values()))
            assert await _called(gateway, ALICE_KEY, "alice_notes") == "notes of alice"
            # bob's tool is not alice's to call: refused before it reaches the upstream
            refused = await _called(gateway, ALICE_KEY, "bob_notes")
            assert refused.startswith("refused: Unknown tool"), refused

            # the upstream adds a tool for alice and says so on her session: her next list has it, bob's not
            assert await _called(gateway, ALICE_KEY, "grow_mine", {"name": "alice_drafts"}) == "added alice_drafts"
            grown = f"{SERVER}__alice_drafts"
            await poll_until(lambda: _has(gateway, ALICE_KEY, grown), "alice's new tool listed", 30)
            assert grown not in await _listed(gateway, BOB_KEY)
            assert await _called(gateway, ALICE_KEY, "alice_drafts") == "alice_drafts"


async def _has(gateway: Gateway, key: str, tool: str) -> bool:
    return tool in await _listed(gateway, key)


async def _pin(nats_url: str, tool: str) -> PinRecord:
    nc = await nats.connect(nats_url)
    try:
        kv = await kv_bucket(nc.jetstream(), subjects.KV_PINS)
        entry = await kv.get(pin_key(SERVER, "tool", tool))
        assert entry.value is not None
        return PinRecord.model_validate_json(entry.value)
    finally:
        await nc.close()


async def test_a_users_own_listing_is_held_to_the_servers_pins(nats_url, redis_url, tmp_path) -> None:
    """Under the default pinning (`tofu`), a tool only one user is listed and no pin covers waits for an
    owner like any new tool: not listed, pending in the pins, and a call of it answers the approval it
    waits for. What that user is not listed is not "removed" from the server (another account lists it)."""
    with running_oauth_upstream() as base:
        async with gateway_for_oauth_upstreams(nats_url, redis_url, tmp_path, config(base)) as (gateway, public):
            await _owner_authorizes(gateway, public, "alice")  # the shared listing has alice_notes
            await _users_authorize(gateway, public, (BOB_KEY, "bob"))

            bob = await _listed(gateway, BOB_KEY)
            assert set(bob) == {f"{SERVER}__{name}" for name in ("whoami", "echo", "grow_mine")}, bob
            pending = await _pin(nats_url, "bob_notes")
            assert pending.approved is None and pending.pending_reason == "new", pending
            assert (await _pin(nats_url, "alice_notes")).listed, "bob's listing lacks it: not a removal"
            # bob's call of it answers what it waits for, as a held tool of the shared listing does
            held = await _called(gateway, BOB_KEY, "bob_notes")
            assert held.startswith(f"refused: tool '{SERVER}/bob_notes' is quarantined"), held
            assert "waits for approval" in held and "bastion tools approve" in held, held


async def test_each_users_listing_stays_their_own_when_one_session_at_a_time_is_kept(
    nats_url, redis_url, tmp_path
) -> None:
    """`BASTION_MAX_USER_SESSIONS` bounds the sessions a user's listing is made over: with one kept,
    listing alice closes bob's session and the other way round, and each is still listed their own."""
    with running_oauth_upstream() as base:
        raw = config(base)
        raw["mcpServers"][SERVER]["pinning"] = "warn"
        async with gateway_for_oauth_upstreams(
            nats_url, redis_url, tmp_path, raw, executor_options={"max_user_sessions": 1}
        ) as (gateway, public):
            await _owner_authorizes(gateway, public)
            await _users_authorize(gateway, public, (ALICE_KEY, "alice"), (BOB_KEY, "bob"))
            for _ in range(2):
                for key, own, other in ((ALICE_KEY, "alice", "bob"), (BOB_KEY, "bob", "alice")):
                    listed = await _listed(gateway, key)
                    assert f"{SERVER}__{own}_notes" in listed and f"{SERVER}__{other}_notes" not in listed, listed
                    assert await _called(gateway, key, f"{own}_notes") == f"notes of {own}"


def _text(result) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def test_code_mode_and_discovery_search_each_users_own_tools(nats_url, redis_url, tmp_path) -> None:
    """A Code Mode run and discovery mode's `find_tools` work over the caller's own listing of a per-user
    server: alice's script finds, reads and calls `alice_notes` and never sees bob's, and the other way
    round."""
    with running_oauth_upstream() as base:
        raw = config(base)
        raw["mcpServers"][SERVER]["pinning"] = "warn"  # each user's own tool is listed, not held for approval
        async with gateway_for_oauth_upstreams(
            nats_url, redis_url, tmp_path, raw, codemode=CodeModeSettings(sandbox_workers=1)
        ) as (gateway, public):
            await _owner_authorizes(gateway, public)
            await _users_authorize(gateway, public, (ALICE_KEY, "alice"), (BOB_KEY, "bob"))
            for key, own, other in ((ALICE_KEY, "alice", "bob"), (BOB_KEY, "bob", "alice")):
                async with gateway.client(key, headers={"X-Bastion-Discovery": "on"}) as client:
                    found = await client.call_tool("find_tools", {"query": "notes"})
                    listed = {tool.name for tool in (await client.list_tools()).tools}
                names = {tool["name"] for tool in (found.structured_content or {})["tools"]}
                assert f"{SERVER}__{own}_notes" in names and f"{SERVER}__{other}_notes" not in names, names
                assert f"{SERVER}__{own}_notes" in listed and f"{SERVER}__{other}_notes" not in listed, listed

                async with gateway.client(key, headers={"X-Bastion-Code-Mode": "on"}) as client:
                    searched = _text(await client.call_tool("search_tools", {"query": "notes"}))
                    stub = _text(await client.call_tool("read_tool_file", {"path": "down_peruser"}))
                    mine = await client.call_tool("execute_code", {"code": f"print(down_peruser.{own}_notes())"})
                    theirs = await client.call_tool("execute_code", {"code": f"down_peruser.{other}_notes()"})
                assert f"{own}_notes" in searched and f"{other}_notes" not in searched, searched
                assert f"def {own}_notes" in stub and f"{other}_notes" not in stub, stub
                assert not mine.is_error and f"notes of {own}" in _text(mine), _text(mine)
                assert theirs.is_error and f"{other}_notes" in _text(theirs), _text(theirs)
