"""Admin changes are audit events: who, what, before/after, and never a secret (issue 11 item 1).

An in-process ingress with the admin API; the events are read off the audit subjects as any
consumer would, so what is checked is exactly what reaches the stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from bastion_common import subjects
from bastion_common.audit_redact import REDACTED
from bastion_common.messages import AuditEvent, audit_events
from tests.support.admin_api import ECHO

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
    return await asyncio.wait_for(events.get(), WAIT)


async def test_key_and_server_changes_are_audited_with_before_and_after_and_no_secret(
    api: httpx.AsyncClient, seen: tuple[list[bytes], asyncio.Queue[AuditEvent]]
) -> None:
    raw, events = seen
    created = await api.post("/keys", json={"name": "ci", "grants": ["echo/*"], "team_id": None})
    assert created.status_code == 201, created.text
    secret, key_id = created.json()["secret"], created.json()["key"]["id"]
    event = await next_admin(events)
    assert (event.action, event.target, event.status, event.before) == ("key.create", key_id, "ok", None)
    assert event.actor is not None and event.actor.startswith("admin-token@")
    assert json.loads(event.after or "")["name"] == "ci"
    assert event.producer and event.seq >= 1 and event.hash  # on the ingress replica's chain

    assert (await api.patch(f"/keys/{key_id}", json={"grants": ["echo/*", "notes/*"]})).status_code == 200
    event = await next_admin(events)
    assert event.action == "key.update"
    assert json.loads(event.before or "")["grants"] == ["echo/*"]
    assert json.loads(event.after or "")["grants"] == ["echo/*", "notes/*"]

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
