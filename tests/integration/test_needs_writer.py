"""Needs written for the tools nobody wrote needs for, by the deployment's own LLM side
(`services.codemode.needs_writer`, docs/code-mode.md "Needs written for your tools").

The codemode service asks the gateway's own `/v1` with a virtual key, so the request passes the key's
budget and lands in the audit trail like any chat completion; the provider is a scripted
OpenAI-compatible server that reads what it is asked. A need written for a tool moves it to the top
of a search no definition answers; one server's tools are asked about per request, and needs the
model names for a tool it was not asked about (a hostile description steering it) are dropped; a
restart reads the written needs back and asks for none; a provider that fails is retried, then left,
and one that cannot be reached is waited for."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from cli.ports import hold_ports
from libs.common.contracts.messages import AuditEvent
from libs.common.settings import CodeModeSettings
from services.codemode import needs
from services.codemode.needs_writer import NeedsWriter, Written
from services.codemode.searcher import Searcher
from services.codemode.service import CodeModeService
from services.codemode.toolset import Toolset
from tests.support.audit_rows import audit_rows_when
from tests.support.gateway import Gateway, SharedGateway, default_config, gateway_on_own_servers
from tests.support.llm_provider import Computed, Drop, Fail, Reply, ScriptedProvider
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

MODEL = "gpt-needs"
WRITER_KEY = "bk_test_search_needs_writer_00"
CODER_KEY = "bk_test_needs_code_mode_key_0"
WEATHER = [
    "will it rain in Paris tomorrow",
    "weather forecast for Berlin this weekend",
    "do I need an umbrella today",
    "temperature outside right now",
    "is a storm coming to Lisbon",
    "wind speed and humidity in Oslo",
    "snow forecast for the Alps",
    "how hot will it get on Saturday",
    "weather pls",
]
"""What the provider writes for echo's `echo`: no tool's definition is about the weather."""
ASKED_ABOUT_WEATHER = "is it going to rain in London on Friday"


def _needs_for(tool: str) -> list[str]:
    return WEATHER if tool == "echo" else [f"run the {tool} tool for me, case {n}" for n in range(9)]


class Writer:
    """The provider's side: what it was asked, per request, and its answers (needs for each tool,
    and the weather planted on notes' `list_notes` whatever it was asked)."""

    def __init__(self) -> None:
        self.provider = ScriptedProvider()
        self.asked: list[dict[str, Any]] = []

    def answer(self, body: dict[str, Any]) -> Reply:
        asked = orjson.loads(body["messages"][-1]["content"])
        self.asked.append({"body": body, **asked})
        written = {tool["name"]: _needs_for(tool["name"]) for tool in asked["tools"]}
        written.setdefault("list_notes", WEATHER)
        return Reply(text="```json\n" + orjson.dumps(written).decode() + "\n```", usage=(300, 200))


def _config(writer: Writer) -> dict[str, Any]:
    config = default_config()
    config["keys"] += [
        {"name": "search-needs", "key": WRITER_KEY, "tools": [], "budget": {"limit_usd": 1, "period": "day"}},
        {"name": "coder", "key": CODER_KEY, "tools": ["echo/*", "notes/*"], "code_mode": True},
    ]
    prices = {MODEL: {"input": 1.0, "output": 2.0}}
    config["llm"] = {
        "providers": {"scripted": {"base_url": writer.provider.base_url, "models": [MODEL], "prices": prices}}
    }
    return config


def _settings(port: int, workdir: Path) -> CodeModeSettings:
    return CodeModeSettings(
        sandbox_workers=1,
        search_needs_writer_url=f"http://127.0.0.1:{port}/v1",
        search_needs_writer_key=SecretStr(WRITER_KEY),
        search_needs_writer_model=MODEL,
        search_needs_written_file=str(workdir / "codemode" / "written-needs.jsonl"),
        search_needs_writer_retry_seconds=0.2,  # the first request may come before ingress listens
    )


@pytest.fixture(scope="module")
async def writer() -> AsyncIterator[Writer]:
    writer = Writer()
    writer.provider.script = [Computed(writer.answer) for _ in range(20)]
    await writer.provider.start()
    yield writer
    await writer.provider.stop()


@pytest.fixture(scope="module")
async def shared(writer: Writer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SharedGateway[Gateway]]:
    workdir = tmp_path_factory.mktemp("needs-writer")
    with hold_ports(1) as held:  # the gateway's, no one else's while it starts, lazily (`cli.ports`)
        (port,) = held.ports
        async with SharedGateway(
            lambda: gateway_on_own_servers(workdir, _config(writer), codemode=_settings(port, workdir), port=port)
        ) as holder:
            yield holder


@pytest.fixture
async def gateway(shared: SharedGateway[Gateway]) -> Gateway:
    return await shared.get()


def _codemode(gateway: Gateway) -> CodeModeService:
    return next(s for s in gateway.services if isinstance(s, CodeModeService))


def _written(settings: CodeModeSettings) -> dict[str, list[str]]:
    path = Path(settings.search_needs_written_file)
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []
    return {f"{row['server']}.{row['tool']}": row["needs"] for row in rows}


async def _first_found(gateway: Gateway, query: str) -> str:
    async with gateway.client(CODER_KEY) as client:
        found = await client.call_tool("search_tools", {"query": query, "limit": 3})
    return "".join(getattr(block, "text", "") for block in found.content).splitlines()[0]


async def test_tools_without_needs_get_needs_from_the_gateways_own_llm_and_rank_by_them(
    gateway: Gateway, writer: Writer, caplog: pytest.LogCaptureFixture
) -> None:
    codemode = _codemode(gateway)
    tools = {f"{server}.{tool}" for server, tool in codemode.catalog.pairs}
    await poll_until(lambda: _written(codemode.settings).keys() == tools, "needs written for every tool", within=60)
    written = _written(codemode.settings)
    assert written["echo.echo"] == WEATHER
    assert written["notes.list_notes"] == _needs_for("list_notes")  # the weather planted on it was dropped
    # one server's tools per request, as its definitions say, through the model the setting names
    for asked in writer.asked:
        assert asked["body"]["model"] == MODEL and "tools" not in asked["body"]  # the key injects no MCP tool
        assert {f"{asked['server']}.{tool['name']}" for tool in asked["tools"]} <= tools
    assert {asked["server"] for asked in writer.asked} == {"echo", "notes"}
    assert all(WRITER_KEY not in received.headers.get("authorization", "") for received in writer.provider.received)

    async def ranks_by_its_needs() -> bool:
        return (await _first_found(gateway, ASKED_ABOUT_WEATHER)).startswith("echo.echo(")

    await poll_until(ranks_by_its_needs, "echo.echo ranked by the needs written for it", within=30)

    def charged(rows: list[AuditEvent]) -> list[AuditEvent]:
        return [row for row in rows if row.kind == "llm_request" and row.status == "ok"]

    rows = await audit_rows_when(gateway.nats_url, "search-needs", lambda rows: len(charged(rows)) >= 2)
    assert all(row.tool == MODEL and (row.cost_usd or 0) > 0 for row in charged(rows))
    assert WRITER_KEY not in caplog.text


async def test_a_restart_ranks_with_the_written_needs_and_asks_for_none(gateway: Gateway) -> None:
    codemode = _codemode(gateway)
    tools = {f"{server}.{tool}" for server, tool in codemode.catalog.pairs}
    await poll_until(lambda: _written(codemode.settings).keys() == tools, "needs written for every tool", within=60)
    catalog = codemode.catalog
    toolset = Toolset(
        (server, definition) for (server, _), definition in zip(catalog.pairs, catalog.definitions, strict=True)
    )
    searcher = Searcher(codemode.settings)
    await searcher.start()
    try:
        searcher.catalog_changed(toolset)
        assert searcher.store is not None
        assert searcher.store.needs.of(toolset.by_name["echo.echo"]) == tuple(WEATHER)
        index = await searcher.index(toolset, None)
        found = await searcher.search(index, ASKED_ABOUT_WEATHER, 1)
        assert [spec.qualified for spec in found.tools] == ["echo.echo"]
        assert searcher.writer.requests == 0
    finally:
        await searcher.close()


def _requests(outcome: str) -> float:
    return REGISTRY.get_sample_value("bastion_codemode_search_needs_requests_total", {"outcome": outcome}) or 0.0


@contextlib.asynccontextmanager
async def _writer_against(
    provider: ScriptedProvider, tmp_path: Path
) -> AsyncIterator[tuple[NeedsWriter, list[Written]]]:
    written: list[Written] = []
    settings = CodeModeSettings(
        search_needs_writer_url=provider.base_url,
        search_needs_writer_key=SecretStr("sk-the-writers-own-key-0000"),
        search_needs_writer_model=MODEL,
        search_needs_written_file=str(tmp_path / "written.jsonl"),
        search_needs_writer_retry_seconds=0.05,
    )
    writer = NeedsWriter(settings, written.append)
    try:
        yield writer, written
    finally:
        await writer.close()


async def test_a_failing_provider_is_tried_three_times_then_left_and_an_unreachable_one_waited_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = ScriptedProvider()
    # a dropped connection says nothing about the batch (the API unreachable): waited for, not counted
    provider.script = [Drop(), Fail(500, "overloaded"), Drop(), Reply(text="no JSON here"), Fail(429, "slow down")]
    await provider.start()
    toolset = Toolset([("tracker", {"name": "get_issue", "description": "Get one issue.", "inputSchema": {}})])
    try:
        async with _writer_against(provider, tmp_path) as (writer, written):
            before = {outcome: _requests(outcome) for outcome in ("written", "error", "unreachable")}
            with caplog.at_level(logging.INFO):
                writer.want(toolset.by_name.values())
                writer.want(toolset.by_name.values())  # the same definition again: asked once
                await poll_until(lambda: "after 3 tries" in caplog.text, "the writer to give up", within=30)
            assert writer.requests == 5 and written == []
            after = {outcome: _requests(outcome) - before[outcome] for outcome in before}
            assert after == {"written": 0, "error": 3, "unreachable": 2}
            assert "HTTP 429: slow down" in caplog.text
            assert not (tmp_path / "written.jsonl").exists()
            assert "sk-the-writers-own-key" not in caplog.text
            assert provider.received[0].headers["authorization"] == "Bearer sk-the-writers-own-key-0000"
            # a changed description is a new definition: asked again, and this time answered
            provider.script = [Reply(text=orjson.dumps({"get_issue": WEATHER}).decode())]
            changed = Toolset([("tracker", {"name": "get_issue", "description": "Get an issue.", "inputSchema": {}})])
            writer.want(changed.by_name.values())
            await poll_until(lambda: written, "the changed definition's needs", within=30)
            assert _requests("written") - before["written"] == 1
            line = written[0]["get_issue"][0]
            assert line.needs == tuple(WEATHER)
            assert line.description_sha256 == needs.fingerprint("Get an issue.")
    finally:
        await provider.stop()
