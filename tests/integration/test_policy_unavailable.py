"""An active Cedar policy version that cannot be loaded fails closed, on a real gateway (NATS, Valkey,
policy, executor, audit, the official MCP client).

`policies.active` naming a version that is not stored, one whose record is garbage, one whose text
does not compile, or an unreadable `policies.active` itself: every tool call is refused with
`policy_unavailable` saying why (never decided by the grants alone), each refusal has its audit row,
policy's readiness names the cause, and a version that loads makes calls run again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mcp.shared.exceptions import MCPError
from nats.js.kv import KeyValue

from libs.common.bus.nats import connect, kv_bucket
from libs.common.cedar.cedar_policies import ACTIVE_KEY, ActivePolicies, PolicyVersion, version_key
from libs.common.cedar.policy_store import publish
from libs.common.contracts import subjects
from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from services.policy.service import PolicyService
from tests.support.audit_rows import audit_rows_when
from tests.support.gateway import ADMIN_KEY, Gateway, running_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

ALLOWING = '@id("no-deletes")\nforbid (principal, action, resource == Tool::"echo/delete");\n'


@pytest.fixture
async def policies(nats_url) -> AsyncIterator[KeyValue]:
    nc = await connect(nats_url, "test-policy-store")
    try:
        yield await kv_bucket(nc.jetstream(), subjects.KV_POLICY)
    finally:
        await nc.close()


async def _refusal(gw: Gateway) -> MCPError:
    """The refusal an echo call gets, once ingress too has seen the change (it drops its reused grants)."""

    async def refused() -> MCPError | None:
        async with gw.client(ADMIN_KEY) as client:
            try:
                await client.call_tool("echo__echo", {"text": "anything"})
            except MCPError as exc:
                return exc
        return None

    error = await poll_until(refused, "the call to be refused")
    assert error.error.code == JSONRPC_CODE[ErrorKind.POLICY_UNAVAILABLE], error.error
    assert (error.error.data or {}).get("kind") == "policy_unavailable"
    return error


async def _runs(gw: Gateway, text: str) -> bool:
    async with gw.client(ADMIN_KEY) as client:
        result = await client.call_tool("echo__echo", {"text": text})
    return result.content[0].text == text  # type: ignore[union-attr]


async def _applied(policy: PolicyService, why: str) -> None:
    """Policy has applied the bucket's change: the reason it gives for refusing is `why`."""
    await poll_until(lambda: why in (getattr(policy.gate, "unavailable", None) or ""), f"policy to say {why!r}")


async def test_an_active_version_that_cannot_be_loaded_refuses_every_call_until_one_loads(
    nats_url, redis_url, tmp_path, policies: KeyValue
):
    async with running_gateway(nats_url, redis_url, tmp_path, policy_options={"health_port": 0}) as gw:
        policy = next(s for s in gw.services if isinstance(s, PolicyService))
        assert policy.probes is not None
        assert await _runs(gw, "before"), "no policies active: the grants decide"

        await policies.put(ACTIVE_KEY, ActivePolicies(version=41).model_dump_json().encode())
        await _applied(policy, "policy version 41 is active but not stored")
        assert "policy version 41 is active but not stored" in (await _refusal(gw)).error.message
        assert (await policy.probes.readiness()).get("policy.policies", "").startswith("policy version 41")

        await policies.put(version_key(41), b"\x00 not a policy record")
        await _applied(policy, "policy version 41 is active but its record cannot be read")
        assert "its record cannot be read" in (await _refusal(gw)).error.message

        broken = PolicyVersion(version=42, text="permit (principal, action, resource) when {")
        await policies.put(version_key(42), broken.model_dump_json().encode())
        await policies.put(ACTIVE_KEY, ActivePolicies(version=42).model_dump_json().encode())
        await _applied(policy, "policy version 42 is active but does not compile")
        assert "does not compile" in (await _refusal(gw)).error.message

        await policies.put(ACTIVE_KEY, b"{not json")
        await _applied(policy, f"the active policy version ({ACTIVE_KEY}) cannot be read")
        assert "cannot be read" in (await _refusal(gw)).error.message

        rows = await audit_rows_when(
            nats_url, "admin", lambda found: sum(r.error_kind == "policy_unavailable" for r in found) >= 4
        )
        assert {r.execution for r in rows if r.error_kind == "policy_unavailable"} == {"not_run"}

        await publish(policies, ALLOWING, by="test")
        await poll_until(lambda: policy.gate.unavailable is None, "a version that loads applied")
        assert await _runs(gw, "after")
        assert "policy.policies" not in await policy.probes.readiness()
