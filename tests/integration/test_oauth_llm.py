"""OAuth access tokens on the OpenAI-compatible side: `/v1/models`, `/v1/chat/completions` and
`/v1/mcp/tool/execute` take a user's access token exactly as they take a virtual key.

The official `openai` SDK sends the token as its API key; the provider is a scripted
OpenAI-compatible server speaking the real wire format. The user sees the tools of their own groups,
is refused the others, and is the actor of the audit rows (with her team and customer); a missing or
forged token gets 401 with the RFC 9728 challenge, as on `/mcp`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, AuditQuery, AuditRows
from libs.common.runtime.sealing import new_key
from tests.support.gateway import SERVERS, Gateway, running_gateway
from tests.support.llm_provider import Reply, ScriptedProvider, scripted_provider
from tests.support.oauth_browser import log_in_for_tokens, set_password
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

MODEL = "gpt-test"
PASSWORD = "erin's long enough password"


def config(provider: ScriptedProvider) -> dict[str, Any]:
    return {
        "mcpServers": {
            "echo": {"command": sys.executable, "args": [str(SERVERS / "echo_server.py")]},
            "notes": {"command": sys.executable, "args": [str(SERVERS / "notes_server.py")]},
        },
        "groups": [{"id": "echoers", "tools": ["echo/echo", "echo/add"]}],
        "customers": [{"id": "acme", "name": "Acme"}],
        "teams": [{"id": "eng", "name": "Engineering", "customer_id": "acme"}],
        "users": [{"id": "erin", "name": "Erin", "team_id": "eng", "groups": ["echoers"]}],
        "llm": {"providers": {"scripted": {"base_url": provider.base_url, "models": [MODEL]}}},
    }


@pytest.fixture
async def provider() -> AsyncIterator[ScriptedProvider]:
    async with scripted_provider() as scripted:
        yield scripted


@pytest.fixture
async def gateway(nats_url, redis_url, tmp_path, provider) -> AsyncIterator[Gateway]:
    raw = config(provider)
    async with running_gateway(nats_url, redis_url, tmp_path, raw, oauth=True, secrets_key=new_key()) as gw:
        await poll_until(lambda: MODEL in gw.ingress.models.models, "the provider in the ingress view")
        assert (await set_password(nats_url, "erin", PASSWORD)).ok
        yield gw


async def _audit_of(nats_url: str, actor: str, kinds: set[str]) -> list[AuditEvent]:
    nc = await connect(nats_url, "test-audit-query")
    query = AuditQuery(limit=100, key_name=actor).model_dump_json().encode()

    async def rows() -> list[AuditEvent] | None:
        found = AuditRows.model_validate_json((await nc.request(subjects.AUDIT_QUERY, query, timeout=10)).data).rows
        return found if kinds <= {r.kind for r in found} else None

    try:
        return await poll_until(rows, f"audit rows {kinds} of {actor}", every=0.1)
    finally:
        await nc.close()


async def test_an_access_token_works_on_v1_exactly_as_a_key(gateway, provider):
    base = gateway.url.removesuffix("/mcp")
    token = (await log_in_for_tokens(base, "erin", PASSWORD))["access_token"]
    async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0, timeout=30) as sdk:
        assert [m.id for m in (await sdk.models.list()).data] == [MODEL]

        provider.script = [Reply(tool_calls=[("echo__add", {"a": 2, "b": 40})])]
        completion = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "add"}])
        offered = {tool["function"]["name"] for tool in provider.received[0].body["tools"]}
        assert offered == {"echo__echo", "echo__add"}, "erin's group, nothing else"
        assert provider.received[0].headers.get("authorization") != f"Bearer {token}", "her token stays here"

        (call,) = completion.choices[0].message.tool_calls or []
        ran = await sdk.post("/mcp/tool/execute", body=call.model_dump(), cast_to=object)
        assert ran == {"role": "tool", "tool_call_id": call.id, "content": "42"}
        outside = {"id": "call_x", "type": "function", "function": {"name": "notes__list_notes", "arguments": "{}"}}
        with pytest.raises(openai.PermissionDeniedError, match="not allowed"):
            await sdk.post("/mcp/tool/execute", body=outside, cast_to=object)

    rows = await _audit_of(gateway.nats_url, "user:erin", {"llm_request", "tool_call"})
    assert {(r.kind, r.status) for r in rows} >= {("llm_request", "ok"), ("tool_call", "ok"), ("tool_call", "denied")}
    # her team and its customer, as the policy records say, exactly as a key's rows name them
    assert {(r.user_id, r.team_id, r.customer_id) for r in rows} == {("erin", "eng", "acme")}


async def test_v1_without_a_valid_token_is_401_with_the_oauth_challenge(gateway):
    base = gateway.url.removesuffix("/mcp")
    metadata = f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
    forged = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJlcmluIn0.c2lnbmF0dXJl"
    async with httpx2.AsyncClient(timeout=10) as http:
        missing = await http.get(f"{base}/v1/models")
        wrong = await http.get(f"{base}/v1/models", headers={"authorization": f"Bearer {forged}"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == f"Bearer {metadata}"
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert "not issued by this gateway" in wrong.json()["error"]["message"]
