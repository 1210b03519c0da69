"""What a tool call's audit event says about who and what, through the whole
gateway: the key's user/team/customer, the arguments and result when content logging is on, only
their sha256 when it is off for the key or the deployment, and a place on the ingress chain."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, AuditQuery, AuditRows
from tests.support.gateway import SERVERS, running_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

OPEN_KEY = "bk_test_content_open_key_00000"
QUIET_KEY = "bk_test_content_quiet_key_0000"


def _config() -> dict[str, Any]:
    return {
        "mcpServers": {
            "echo": {
                "command": sys.executable,
                "args": [str(SERVERS / "echo_server.py")],
                "prices": {"echo": 0.002},  # `add` is free
            }
        },
        "keys": [
            {"name": "open", "key": OPEN_KEY, "tools": ["*"], "user": "ann", "team": "data", "customer": "acme"},
            {"name": "quiet", "key": QUIET_KEY, "tools": ["*"], "content_logging": False},
        ],
    }


async def _rows(nats_url: str, count: int) -> list[AuditEvent]:
    nc = await connect(nats_url, "test")
    try:

        async def enough() -> list[AuditEvent]:
            query = AuditQuery(limit=50).model_dump_json().encode()
            rows = AuditRows.model_validate_json((await nc.request(subjects.AUDIT_QUERY, query, timeout=5)).data).rows
            return rows if len(rows) >= count else []

        return await poll_until(enough, f"{count} audit rows")
    finally:
        await nc.close()


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def test_events_name_the_owner_and_keep_content_unless_the_key_turns_it_off(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with running_gateway(nats_url, redis_url, tmp_path, _config()) as gateway:
        async with gateway.client(OPEN_KEY) as client:
            await client.call_tool("echo__echo", {"text": "visible words"})
        async with gateway.client(QUIET_KEY) as client:
            await client.call_tool("echo__echo", {"text": "private words"})
        rows = {row.key_name: row for row in await _rows(nats_url, 2)}
    opened, quiet = rows["open"], rows["quiet"]
    assert (opened.user_id, opened.team_id, opened.customer_id) == ("ann", "data", "acme")
    assert json.loads(opened.arguments or "") == {"text": "visible words"}
    assert "visible words" in (opened.result or "")
    assert opened.arguments_sha256 == _sha({"text": "visible words"})
    assert quiet.arguments is None and quiet.result is None
    assert quiet.arguments_sha256 == _sha({"text": "private words"}) and quiet.result_sha256
    assert "private words" not in quiet.model_dump_json()
    assert opened.producer.startswith("ingress-") and opened.producer == quiet.producer
    assert {opened.seq, quiet.seq} == {1, 2}
    # the price policy charged (no budget needed to know what a call costs)
    assert opened.cost_usd == quiet.cost_usd == 0.002


async def test_an_unpriced_tool_costs_nothing_and_a_priced_one_its_price_when_it_runs(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with running_gateway(nats_url, redis_url, tmp_path, _config()) as gateway:
        async with gateway.client(OPEN_KEY) as client:
            await client.call_tool("echo__add", {"a": 1, "b": 2})
            await client.call_tool("echo__echo", {"text": "priced"})
            refused = await client.call_tool("echo__echo", {"text": 42})  # the executor refuses it: never ran
            assert refused.is_error
        rows = await _rows(nats_url, 3)
    by_status = {(row.name, row.status): row for row in rows}
    assert by_status["echo__add", "ok"].cost_usd is None
    assert by_status["echo__echo", "ok"].cost_usd == 0.002
    unrun = by_status["echo__echo", "error"]
    assert (unrun.error_kind, unrun.execution, unrun.cost_usd) == ("invalid_arguments", "not_run", 0.0)


async def test_the_deployment_switch_turns_content_off_for_every_key(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with running_gateway(nats_url, redis_url, tmp_path, _config(), audit_content=False) as gateway:
        async with gateway.client(OPEN_KEY) as client:
            await client.call_tool("echo__echo", {"text": "visible words"})
        (row,) = await _rows(nats_url, 1)
    assert row.arguments is None and row.result is None
    assert row.arguments_sha256 == _sha({"text": "visible words"})


async def test_a_tool_error_row_names_its_kind(nats_url: str, redis_url: str, tmp_path: Path) -> None:
    """A tool that ran and answered `isError` is a `tool_error` row, and its `error_kind` says so
    (it was empty: a query by error kind missed exactly these calls)."""
    async with running_gateway(nats_url, redis_url, tmp_path, _config()) as gateway:
        async with gateway.client(OPEN_KEY) as client:
            failed = await client.call_tool("echo__fail", {"message": "disk full"})
            assert failed.is_error
            await client.call_tool("echo__add", {"a": 1, "b": 2})
        rows = {row.name: row for row in await _rows(nats_url, 2)}
    failed_row, ok_row = rows["echo__fail"], rows["echo__add"]
    assert (failed_row.status, failed_row.error_kind, failed_row.execution) == ("tool_error", "tool_error", "ran")
    assert "disk full" in (failed_row.result or "")
    assert (ok_row.status, ok_row.error_kind) == ("ok", None)
