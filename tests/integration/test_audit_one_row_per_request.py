"""Attacks on the promise that a request which reached an audited handler ends in exactly ONE audit
row: a call that times out at the gateway while its upstream still holds it, and agents that walk
away mid-call (a handshake-era agent dropping its connection, a 2026-07-28 agent closing its
stream). Each ends with one row for the call, and ingress's chain holds exactly as many request
rows as it owes once nothing is in flight (`ingress_trail.settled_trail`).

The upstream is `gate_server.py`: a call to `gate__hold` is held there until the test opens its gate,
and says when it reached the upstream and when it ended there. No timing thresholds: every wait is
on a condition, with a timeout that only bounds a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from libs.common.contracts.messages import AuditEvent
from tests.support.gates import gate_upstream
from tests.support.gateway import ADMIN_HEADERS, Gateway, default_config, gateway_on_own_servers, legacy_initialize
from tests.support.ingress_trail import settled_trail
from tests.support.polling import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]

MODERN = "2026-07-28"
MODERN_META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


@pytest.fixture(scope="module")
async def gates(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gates")


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory, gates):
    workdir = tmp_path_factory.mktemp("one-row")
    config = default_config({"gate": gate_upstream(gates)})
    async with gateway_on_own_servers(workdir, config, call_timeout=30.0) as gw:
        yield gw


def _hold(name: str, request_id: int = 1, **params: Any) -> dict[str, Any]:
    call_params = {"name": "gate__hold", "arguments": {"name": name}, **params}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": call_params}


async def _session(http: httpx2.AsyncClient, url: str) -> dict[str, str]:
    """The admin key's headers with a fresh handshake-era session."""
    session = (await http.post(url, headers=ADMIN_HEADERS, json=legacy_initialize())).headers["mcp-session-id"]
    return {**ADMIN_HEADERS, "mcp-session-id": session}


async def _passes(http: httpx2.AsyncClient, url: str, headers: dict[str, str], gates: Path, name: str) -> None:
    """A call through the same upstream that is let through at once: the upstream still serves, and
    it has read every request sent to it before this one."""
    (gates / f"{name}.open").touch()
    answer = (await http.post(url, headers=headers, json=_hold(name))).json()
    assert answer["result"]["content"][0]["text"] == f"passed {name}", answer


async def _over_upstream(gates: Path, name: str) -> None:
    """The held call `name`, if it reached the upstream, has ended there (answered or cancelled)."""
    (gates / f"{name}.open").touch()
    if (gates / f"{name}.called").exists():
        await poll_until((gates / f"{name}.ended").exists, f"the upstream call {name} to end")


def _rows_of(rows: list[AuditEvent], name: str) -> list[AuditEvent]:
    return [
        row
        for row in rows
        if row.name == "gate__hold" and row.arguments == json.dumps({"name": name}, separators=(",", ":"))
    ]


async def _walked_away(gateway: Gateway, gates: Path, name: str, headers: dict[str, str], body: dict[str, Any]) -> None:
    """Post `body` (a held call), wait until the upstream holds it, then drop the connection."""
    async with httpx2.AsyncClient(timeout=30) as agent:
        posting = asyncio.ensure_future(agent.post(gateway.url, headers=headers, json=body))
        try:
            await poll_until((gates / f"{name}.called").exists, f"the call {name} to reach the upstream")
        finally:
            posting.cancel()  # the agent leaves mid-call: its connection is closed under the request
            with contextlib.suppress(asyncio.CancelledError):
                await posting


async def test_a_call_timing_out_at_the_gateway_while_its_upstream_holds_it_has_one_row(gateway, gates):
    async with httpx2.AsyncClient(timeout=30) as http:
        headers = await _session(http, gateway.url)
        answer = (
            await http.post(gateway.url, headers={**headers, "x-bastion-timeout": "0.5"}, json=_hold("late"))
        ).json()
        assert answer["error"]["code"] in (-32061, -32071), answer  # upstream or gateway timeout
        await _passes(http, gateway.url, headers, gates, "after-late")
        await _over_upstream(gates, "late")  # if it still held the call, the upstream answers it now
        await _passes(http, gateway.url, headers, gates, "after-late-ended")
    (row,) = _rows_of(await settled_trail(gateway), "late")
    assert row.status == "error" and row.error_kind in ("upstream_timeout", "gateway_timeout"), row


async def test_an_agent_dropping_its_connection_mid_call_leaves_one_row(gateway, gates):
    async with httpx2.AsyncClient(timeout=30) as http:
        headers = await _session(http, gateway.url)
        await _walked_away(gateway, gates, "dropped", headers, _hold("dropped"))
        await _over_upstream(gates, "dropped")  # the handler was not cancelled: the upstream answers now
        await _passes(http, gateway.url, headers, gates, "after-dropped")
    (row,) = _rows_of(await settled_trail(gateway), "dropped")
    assert row.status == "ok", row


async def test_a_2026_agent_closing_its_stream_mid_call_leaves_one_row(gateway, gates):
    modern = {**ADMIN_HEADERS, "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": "gate__hold"}
    body = _hold("closed", _meta=MODERN_META)
    async with httpx2.AsyncClient(timeout=30) as http:
        await _walked_away(gateway, gates, "closed", modern, body)
        # a closed stream cancels the call: the upstream is told, and its call ends without the gate
        await poll_until((gates / "closed.ended").exists, "the upstream to end the abandoned call")
        await _passes(http, gateway.url, await _session(http, gateway.url), gates, "after-closed")
    (row,) = _rows_of(await settled_trail(gateway), "closed")
    assert (row.status, row.error_kind) == ("error", "cancelled"), row
