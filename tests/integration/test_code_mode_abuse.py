"""Abuse through the whole gateway: one key's runaway scripts are stopped by their limits and take
at most that key's share of the sandbox, so another key's run completes meanwhile; a script cannot
reach the meta-tools; the gateway stays healthy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from libs.common.contracts.messages import AuditEvent
from libs.common.settings import CodeModeSettings
from services.codemode.service import CodeModeService
from tests.support.audit_rows import audit_rows_when
from tests.support.codemode_gateway import codemode_ready, shared_codemode_fixture
from tests.support.gateway import Gateway, SharedGateway, default_config, running_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

GREEDY_KEY = "bk_test_code_mode_greedy_0000"
OTHER_KEY = "bk_test_code_mode_other_00000"
SPIN = "for i in range(1000000000000):\n    pass\n"


def echo_config(*keys: dict[str, Any]) -> dict[str, Any]:
    """The default config with these keys, serving only echo: no test here uses notes."""
    config = default_config()
    del config["mcpServers"]["notes"]
    config["keys"] += keys
    return config


GREEDY = {"name": "greedy", "key": GREEDY_KEY, "tools": ["echo/*"], "code_mode": True}
SETTINGS = CodeModeSettings(
    sandbox_workers=3, sandbox_runs_per_key=2, sandbox_cpu_seconds=1, sandbox_wall_seconds=60, sandbox_max_calls=50
)


def abuse_config() -> dict[str, Any]:
    return echo_config(GREEDY, {"name": "other", "key": OTHER_KEY, "tools": ["echo/echo"], "code_mode": True})


shared = shared_codemode_fixture(abuse_config, SETTINGS)


@pytest.fixture
async def gateway(shared: SharedGateway) -> Gateway:
    """The module's gateway once its pool is whole again, as a fresh one's is: a run stopped by a
    limit leaves its worker to be replaced in the background."""
    gw = await shared.get()
    await poll_until(lambda: gw.codemode.pool.idle == 3, "the pool back to three workers")  # type: ignore[attr-defined]
    return gw


@pytest.fixture
async def alone(shared: SharedGateway) -> None:
    """For a test that starts a gateway of its own: the module's is stopped first (`SharedGateway`)."""
    await shared.close()


@pytest.fixture
async def own_gateway(nats_url: str, redis_url: str, tmp_path: Path, alone: None) -> AsyncIterator[Gateway]:
    """A gateway of the test's own, for a test that takes its codemode service down."""
    async with codemode_ready(running_gateway(nats_url, redis_url, tmp_path, abuse_config(), codemode=SETTINGS)) as gw:
        yield gw


def _text(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def _inner_calls(rows: list[AuditEvent]) -> list[AuditEvent]:
    """The rows of the calls made inside the first code run among `rows`."""
    runs = [row for row in rows if row.kind == "code_run"]
    return [row for row in rows if runs and row.parent_id == runs[0].event_id]


async def test_runaway_scripts_are_stopped_and_take_only_their_keys_share(gateway):
    replaced = gateway.codemode.pool.replaced
    async with gateway.client(GREEDY_KEY) as greedy, gateway.client(OTHER_KEY) as other:
        runaways = [asyncio.create_task(greedy.call_tool("execute_code", {"code": SPIN})) for _ in range(3)]
        # two hold workers, the third waits for the key's own share; the third worker stays free
        answer = await other.call_tool("execute_code", {"code": 'result = echo.echo(text="still here")'})
        assert _text(answer) == 'result: "still here"'
        assert not all(task.done() for task in runaways)
        for finished in await asyncio.gather(*runaways):
            assert finished.is_error
            assert _text(finished) == "LimitExceeded: CPU time limit of 1 s per run"
    codemode = gateway.codemode
    await poll_until(lambda: codemode.pool.idle == 3, "the pool back to three workers")
    assert codemode.pool.replaced == replaced + 3
    async with httpx2.AsyncClient() as http:
        assert (await http.get(gateway.url.replace("/mcp", "/healthz"))).status_code == 200


async def test_a_script_cannot_call_the_meta_tools(gateway):
    async with gateway.client(GREEDY_KEY) as client:
        direct = await client.call_tool("execute_code", {"code": 'execute_code(code="1")\n'})
        assert direct.is_error
        assert "execute_code is a meta-tool of the agent; a script cannot call it" in _text(direct)
        nested = await client.call_tool("execute_code", {"code": 'parallel([("execute_code", {"code": "1"})])\n'})
        assert nested.is_error
        assert "execute_code is a meta-tool of the agent; a script cannot call it" in _text(nested)


async def test_thousands_of_calls_stop_at_the_call_limit_and_forbidden_tools_stay_forbidden(gateway):
    async with gateway.client(GREEDY_KEY) as client:
        flood = await client.call_tool("execute_code", {"code": 'for i in range(5000):\n    echo.echo(text="x")\n'})
        assert _text(flood) == "LimitExceeded: tool call limit of 50 per run"
    async with gateway.client(OTHER_KEY) as client:
        forbidden = await client.call_tool("execute_code", {"code": "echo.add(a=1, b=2)\n"})
        assert forbidden.is_error and "no tool echo.add for this key" in _text(forbidden)


async def test_a_codemode_replica_dying_mid_run_fails_the_call_within_seconds(own_gateway):
    codemode = own_gateway.codemode
    async with own_gateway.client(GREEDY_KEY) as client:
        run = asyncio.create_task(client.call_tool("execute_code", {"code": SPIN}))
        await poll_until(lambda: codemode.pool.idle < 3, "the run to hold a worker")
        await codemode._nc.close()  # its subscriptions vanish, as when the process is killed
        with pytest.raises(MCPError) as lost:
            await run
    assert lost.value.error.code == -32070
    assert "codemode replica" in lost.value.error.message


async def test_a_tool_call_cut_off_by_the_wall_clock_limit_ends_the_run_and_is_audited(
    nats_url, redis_url, tmp_path, alone
):
    settings = CodeModeSettings(sandbox_workers=1, sandbox_wall_seconds=2)
    async with running_gateway(nats_url, redis_url, tmp_path, echo_config(GREEDY), codemode=settings) as gw:
        codemode = next(s for s in gw.services if isinstance(s, CodeModeService))
        await poll_until(lambda: len(codemode.catalog.pairs) > 0, "the codemode catalog")
        async with gw.client(GREEDY_KEY) as client:
            stuck = await client.call_tool("execute_code", {"code": "echo.sleep(seconds=60)\n"})
        assert _text(stuck) == "LimitExceeded: wall-clock time limit of 2 s per run"
        inner = _inner_calls(await audit_rows_when(gw.nats_url, "greedy", _inner_calls))
    assert inner[0].name == "echo__sleep" and inner[0].error_kind == "upstream_timeout" and inner[0].status == "error"
