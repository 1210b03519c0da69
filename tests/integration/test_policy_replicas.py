"""Changes reach every replica fast: two policy and two ingress replicas share one NATS, and a
revocation, a grant change and a group change made in KV are enforced by all of them within 1 s."""

from __future__ import annotations

import time

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from libs.common.bus.nats import connect, kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.entities import ToolGroup, entity_key
from libs.common.contracts.keys import key_id
from libs.common.contracts.messages import Caller, GatewayError, KeyRecord
from libs.common.settings import IngressSettings, PolicySettings
from services.ingress.auth.keys import AuthFailure
from services.ingress.service import IngressService
from services.policy.filters import narrowing
from services.policy.service import PolicyService
from tests.support.gateway import READONLY_KEY, default_config, running_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

PROPAGATION_DEADLINE = 1.0  # the product promise, not a performance measurement
OPEN = narrowing(None, None)


@pytest.fixture
async def replicas(nats_url, redis_url, tmp_path):
    config = default_config()
    config["groups"] = [{"id": "extra", "tools": ["echo/add"]}]
    async with running_gateway(nats_url, redis_url, tmp_path, config) as gw:
        policy2 = PolicyService(PolicySettings(nats_url=nats_url, redis_url=redis_url, instance="-2"))
        ingress2 = IngressService(IngressSettings(nats_url=nats_url, port=0, instance="-2"))
        await policy2.start()
        await ingress2.start()
        policies = [s for s in gw.services if isinstance(s, PolicyService)] + [policy2]
        ingresses = [gw.ingress, ingress2]
        try:
            yield gw, policies, ingresses
        finally:
            await ingress2.stop()
            await policy2.stop()


async def _until_all(check, what: str) -> float:
    started = time.perf_counter()
    await poll_until(check, f"{what} to reach every replica", within=PROPAGATION_DEADLINE, every=0.002)
    elapsed = time.perf_counter() - started
    print(f"{what}: every replica within {elapsed * 1000:.1f} ms")
    return elapsed


async def test_changes_reach_every_replica_within_a_second(replicas):
    _gw, policies, ingresses = replicas
    caller = Caller(key_id=key_id(READONLY_KEY), key_name="readonly")
    nc = await connect(ingresses[0].settings.nats_url, "test")
    try:
        keys = await kv_bucket(nc.jetstream(), subjects.KV_KEYS)
        groups = await kv_bucket(nc.jetstream(), subjects.KV_POLICY)
        record = KeyRecord.model_validate_json((await keys.get(caller.key_id)).value)

        def allowed(policy: PolicyService, tool: str) -> bool:
            return not isinstance(policy.view.authorize(caller, "echo", tool, OPEN), GatewayError)

        assert all(allowed(p, "echo") and not allowed(p, "add") for p in policies)

        # a grant change
        await keys.put(
            caller.key_id, record.model_copy(update={"grants": ["echo/echo", "echo/add"]}).model_dump_json().encode()
        )
        await _until_all(lambda: all(allowed(p, "add") for p in policies), "grant change")

        # a group change: bind the key to a group, then change the group
        await keys.put(caller.key_id, record.model_copy(update={"groups": ["extra"]}).model_dump_json().encode())
        await _until_all(lambda: all(allowed(p, "add") for p in policies), "group binding")
        group = ToolGroup(id="extra", tools=["echo/stats"])
        await groups.put(entity_key("group", "extra"), group.model_dump_json().encode())
        await _until_all(lambda: all(allowed(p, "stats") and not allowed(p, "add") for p in policies), "group change")

        # a revocation: refused by both policy replicas and turned away by both ingress replicas
        await keys.put(caller.key_id, record.model_copy(update={"revoked": True}).model_dump_json().encode())
        await _until_all(
            lambda: (
                all(not allowed(p, "echo") for p in policies)
                and all(isinstance(i.keys.authenticate(f"Bearer {READONLY_KEY}"), AuthFailure) for i in ingresses)
            ),
            "revocation",
        )
    finally:
        await nc.close()


async def test_a_client_served_by_both_ingress_replicas(replicas):
    _gw, _, ingresses = replicas
    for ingress in ingresses:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {READONLY_KEY}"}) as http,
            Client(streamable_http_client(ingress.url, http_client=http)) as client,
        ):
            result = await client.call_tool("echo__echo", {"text": "any replica"})
            assert result.content[0].text == "any replica"
