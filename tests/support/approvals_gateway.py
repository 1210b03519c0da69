"""The refund example's gateway that the approval tests share (NATS, Valkey, ClickHouse, policy, an
executor running the refund upstream that writes each run to a ledger, the admin service, a webhook
receiver): its keys and policies, its module-scoped fixtures (a module imports `webhook`, `gateway`,
`ledger`, `approver_token` and `approver`), and an agent's refund calls, parked and retried."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from libs.common.cedar.approvals import APPROVAL_META
from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from libs.common.runtime.sealing import new_key
from tests.support.admin_api import principal_token
from tests.support.gateway import Gateway
from tests.support.refund_gateway import billing_server, documented_policy, ledger_of, refund_gateway
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

__all__ = [
    "OTHER_KEY",
    "POLICIES",
    "SECRETS",
    "SUPPORT_KEY",
    "WEBHOOK_SECRET",
    "approver",
    "approver_token",
    "gateway",
    "ledger",
    "parked_refund",
    "refund_config",
    "refused_retry",
    "result_text",
    "retried_refund",
    "webhook",
]

SUPPORT_KEY = "bk_test_support_key_0000000000"
OTHER_KEY = "bk_test_other_key_000000000000"

# the refund example: up to 100 EUR runs; above, a person approves
POLICIES = (
    documented_policy("refund-above-100")
    + """
@id("refund-huge")
@approval("finance")
@timeout("1")
@reason("a huge refund is decided within a second, or never")
forbid (principal, action == Action::"tools/call", resource == Tool::"billing/refund")
when { context.decimals.amount.greaterThan(decimal("100000.0")) };

@id("no-delete-on-billing")
@reason("orders are never deleted by an agent")
forbid (principal, action, resource in Server::"billing")
when { resource.tool like "delete_*" };

@id("own-customer-rows")
@reason("a key reads only its own customer's rows")
forbid (principal, action, resource == Tool::"billing/lookup")
unless { context.arguments.customer == principal.customer };
"""
)


SECRETS = new_key()


def refund_config(workdir: Path) -> dict[str, Any]:
    config: dict[str, Any] = {
        "mcpServers": {"billing": billing_server(workdir)},
        "customers": [{"id": "acme", "name": "Acme"}],
        "teams": [{"id": "support", "name": "Support", "customer_id": "acme"}],
        "users": [{"id": "sam", "name": "Sam", "team_id": "support"}],
        "keys": [
            {"name": "support", "key": SUPPORT_KEY, "tools": ["billing/*"], "user": "sam"},
            {"name": "other", "key": OTHER_KEY, "tools": ["billing/*"]},
        ],
    }
    return config


WEBHOOK_SECRET = "webhook-signing-secret"


@pytest.fixture(scope="module")
async def webhook() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver) -> AsyncIterator[Gateway]:
    workdir = tmp_path_factory.mktemp("approvals")
    config = refund_config(workdir)
    webhooks = {
        "approval_webhook_url": webhook.url,
        "approval_webhook_secret": WEBHOOK_SECRET,
        "egress": {"allow_private_hosts": ["127.0.0.1"]},  # the receiver is on loopback
    }
    async with refund_gateway(workdir, config, SECRETS, POLICIES, "the refund example", **webhooks) as gw:
        yield gw


@pytest.fixture(scope="module")
def ledger(gateway: Gateway) -> Path:
    return ledger_of(gateway)


@pytest.fixture(scope="module")
async def approver_token(gateway: Gateway) -> str:
    assert gateway.admin is not None
    return await principal_token(
        gateway.admin, gateway.admin_token, "fran@example.com", {"role": "call_approver"}, kind="person"
    )


@pytest.fixture(scope="module")
async def approver(gateway: Gateway, approver_token: str) -> AsyncIterator[httpx.AsyncClient]:
    token = approver_token
    async with httpx.AsyncClient(
        base_url=gateway.admin_api, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as http:
        yield http


async def parked_refund(gateway: Gateway, arguments: dict[str, Any], key: str = SUPPORT_KEY) -> dict[str, Any]:
    """Call refund expecting it parked; the answer's `data` (what the agent acts on)."""
    async with gateway.client(key) as client:
        with pytest.raises(MCPError) as parked:
            await client.call_tool("billing__refund", arguments)
    assert parked.value.code == JSONRPC_CODE[ErrorKind.APPROVAL_REQUIRED]
    data: dict[str, Any] = parked.value.data
    assert data["kind"] == "approval_required"
    return data


async def retried_refund(gateway: Gateway, approval_id: str, arguments: dict[str, Any], key: str = SUPPORT_KEY) -> Any:
    """The agent calls again naming the approval: the result, or the `MCPError` it was answered with."""
    async with gateway.client(key) as client:
        try:
            return await client.call_tool("billing__refund", arguments, meta={APPROVAL_META: approval_id})
        except MCPError as exc:
            return exc


async def refused_retry(
    gateway: Gateway, approval_id: str, arguments: dict[str, Any], key: str = SUPPORT_KEY
) -> MCPError:
    answer = await retried_refund(gateway, approval_id, arguments, key)
    assert isinstance(answer, MCPError), answer
    return answer


def result_text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)
