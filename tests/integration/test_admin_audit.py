"""Admin changes are audit events: who, what, before/after, and never a secret,
including the admin routes that reach the oauth service (a user's password, an authorization link).

An in-process admin service (the whole gateway with the oauth service for the latter);
the events are read off the audit subjects as any consumer would, so what is checked is exactly what
reaches the stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, audit_events
from services.admin.api.redaction import REDACTED
from tests.support.admin_api import ECHO
from tests.support.gateway import default_config
from tests.support.polling import poll_until
from tests.support.upstream_login import gateway_for_oauth_upstreams, running_oauth_upstream

pytestmark = pytest.mark.integration

WAIT = 30.0


@pytest.fixture
async def seen(nats_url: str) -> AsyncIterator[tuple[list[bytes], asyncio.Queue[AuditEvent]]]:
    """Raw payloads and the admin events on the audit subjects, from before the first request."""
    client: NATS = await nats.connect(nats_url)
    raw: list[bytes] = []
    events: asyncio.Queue[AuditEvent] = asyncio.Queue()

    async def on_message(msg: Msg) -> None:
        raw.append(msg.data)
        for event in audit_events(msg.data):
            if event.kind == "admin":
                events.put_nowait(event)

    await client.subscribe(f"{subjects.AUDIT_EVENTS}.>", cb=on_message)
    await client.flush()
    yield raw, events
    await client.close()


async def next_admin(events: asyncio.Queue[AuditEvent]) -> AuditEvent:
    """The next admin event not made by the bootstrap token (it creates the tests' first owner, maybe
    while the subscription starts: `test_the_bootstrap_token_is_audited` checks those)."""
    while (event := await asyncio.wait_for(events.get(), WAIT)).actor == "bootstrap":
        pass
    return event


async def test_key_and_server_changes_are_audited_with_before_and_after_and_no_secret(
    api: httpx.AsyncClient, seen: tuple[list[bytes], asyncio.Queue[AuditEvent]]
) -> None:
    raw, events = seen
    created = await api.post("/keys", json={"name": "ci", "grants": ["echo/*"], "team_id": None})
    assert created.status_code == 201, created.text
    secret, key_id = created.json()["secret"], created.json()["key"]["id"]
    event = await next_admin(events)
    assert (event.action, event.target, event.status, event.before) == ("key.create", key_id, "ok", None)
    # the principal, its role and its address: never a shared token
    assert (event.actor, event.actor_role, event.actor_address) == ("test-owner", "owner", "127.0.0.1")
    assert json.loads(event.after or "")["name"] == "ci"
    assert event.producer.startswith("admin-") and event.seq >= 1 and event.hash  # the admin replica's chain

    assert (await api.patch(f"/keys/{key_id}", json={"grants": ["echo/*", "notes/*"]})).status_code == 200
    event = await next_admin(events)
    assert event.action == "key.update"
    assert json.loads(event.before or "")["grants"] == ["echo/*"]
    assert json.loads(event.after or "")["grants"] == ["echo/*", "notes/*"]

    assert (await api.post(f"/keys/{key_id}/revoke")).status_code == 200
    event = await next_admin(events)
    assert (event.action, event.target) == ("key.revoke", key_id)  # named for what it did, not "key.update"
    assert (json.loads(event.before or "")["revoked"], json.loads(event.after or "")["revoked"]) == (False, True)

    assert (await api.post("/servers", json={"name": "echo", "config": ECHO})).status_code == 201
    event = await next_admin(events)
    assert (event.action, event.target) == ("server.create", "echo")
    assert json.loads(event.after or "")["config"]["env"] == {"API_TOKEN": REDACTED}

    assert (await api.delete("/servers/echo")).status_code == 204
    event = await next_admin(events)
    assert (event.action, event.after) == ("server.delete", None)
    assert json.loads(event.before or "")["config"]["env"] == {"API_TOKEN": REDACTED}

    everything = b"".join(raw)
    assert secret.encode() not in everything
    assert ECHO["env"]["API_TOKEN"].encode() not in everything  # type: ignore[index]


async def test_a_password_set_and_a_minted_authorization_link_are_audited_without_either(
    nats_url: str, redis_url: str, tmp_path: Path, seen: tuple[list[bytes], asyncio.Queue[AuditEvent]]
) -> None:
    """The admin routes that reach the oauth service are admin changes too: who, what, which user or
    server; never the password, never the link (its ticket binds an upstream account)."""
    raw, events = seen
    password = "a long enough password for ann"
    server = "down-tracker"  # "down*": running_gateway does not wait for it to be ready
    with running_oauth_upstream() as base:
        config = default_config({server: {"url": f"{base}/mcp"}})
        config["users"] = [{"id": "ann", "name": "Ann"}]
        async with gateway_for_oauth_upstreams(nats_url, redis_url, tmp_path, config) as (
            gateway,
            _public,
        ):
            headers = gateway.admin_headers
            async with httpx.AsyncClient(base_url=gateway.admin_api, headers=headers, timeout=20) as admin:
                set_password = await admin.put("/users/ann/password", json={"password": password})
                assert set_password.status_code == 204, set_password.text
                event = await next_admin(events)
                assert (event.action, event.target, event.status) == ("user.set_password", "ann", "ok")
                assert (event.actor, event.actor_role) == ("test-owner", "owner")
                assert (event.before, event.after) == (None, None)

                status = gateway.ingress.catalog.server_status
                await poll_until(lambda: (s := status(server)) is not None and s.health == "needs_auth", "needs_auth")
                link = (await admin.get(f"/servers/{server}")).json()["authorize_url"]
                assert link and "ticket=" in link
                event = await next_admin(events)
                assert (event.action, event.target, event.status) == ("server.authorize_link", server, "ok")
                assert (event.actor, event.actor_address) == ("test-owner", "127.0.0.1")

    everything = b"".join(raw)
    assert password.encode() not in everything
    assert link.split("ticket=", 1)[1].encode() not in everything and b"ticket=" not in everything


async def test_a_route_written_through_the_admin_api_is_audited_with_its_principal(
    api: httpx.AsyncClient, seen: tuple[list[bytes], asyncio.Queue[AuditEvent]]
) -> None:
    _, events = seen
    provider = {"name": "audited", "config": {"base_url": "http://127.0.0.1:9/v1", "models": ["audited-listed"]}}
    made = await api.post("/llm-providers", json=provider)
    assert made.status_code == 201, made.text
    route = {"deployments": [{"provider": "audited", "model": "up-audited"}]}
    put = await api.put("/llm-models/gpt-audited", json=route)
    assert put.status_code == 200, put.text
    deleted = await api.delete("/llm-models/gpt-audited")
    assert deleted.status_code == 204, deleted.text
    assert (await next_admin(events)).action == "llm_provider.create"
    written, removed = await next_admin(events), await next_admin(events)
    assert (written.action, written.target, written.before) == ("llm_routes.create", "_routes", None)
    assert written.actor != "admin" and "up-audited" in (written.after or "")
    assert removed.action == "llm_routes.update" and "gpt-audited" not in (removed.after or "gpt-audited")
