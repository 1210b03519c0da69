"""Code Mode through a real gateway: the official MCP client -> ingress -> codemode (real sandbox
workers) -> policy -> executor -> real upstream servers, with audit rows in ClickHouse."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from prometheus_client import REGISTRY

from libs.common.contracts.codemode import META_TOOL_NAMES
from libs.common.contracts.messages import AuditEvent
from libs.common.settings import CodeModeSettings
from services.codemode.service import CodeModeService
from tests.support.audit_rows import audit_rows_when
from tests.support.codemode_gateway import shared_codemode_fixture
from tests.support.gateway import (
    ADMIN_KEY,
    READONLY_KEY,
    Gateway,
    SharedGateway,
    default_config,
    running_gateway,
    stdio_server,
)
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

CODER_KEY = "bk_test_code_mode_key_0000000"
NARROW_KEY = "bk_test_code_mode_narrow_0000"
LIMITED_KEY = "bk_test_code_mode_limited_000"


def code_mode_config(rendezvous: bool = True) -> dict:
    """`rendezvous=False`: without the rendezvous server, for a gateway of a test that never meets."""
    meets = {"rendezvous": stdio_server(Path(__file__).parents[1] / "support" / "rendezvous_server.py")}
    config = default_config(meets if rendezvous else None)
    config["keys"] += [
        {"name": "coder", "key": CODER_KEY, "tools": ["echo/*", "notes/*", "rendezvous/*"], "code_mode": True},
        {"name": "narrow", "key": NARROW_KEY, "tools": ["echo/echo", "notes/list_notes"], "code_mode": True},
        {
            "name": "limited",
            "key": LIMITED_KEY,
            "tools": ["echo/*"],
            "code_mode": True,
            "rate_limit": {"requests": 2, "per": "hour"},
        },
    ]
    return config


SETTINGS = CodeModeSettings(sandbox_workers=2, sandbox_wall_seconds=20)
shared = shared_codemode_fixture(code_mode_config, SETTINGS, {"echo", "notes", "rendezvous"})


@pytest.fixture
async def gateway(shared: SharedGateway) -> Gateway:
    """The module's gateway: each test's audit rows are told apart by time, the pool's replacements
    counted from where the test found them; the rate-limited key and the notes are one test's."""
    return await shared.get()


@pytest.fixture
async def alone(shared: SharedGateway) -> None:
    """For a test that starts a gateway of its own: the module's is stopped first (`SharedGateway`)."""
    await shared.close()


def _text(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def _since(started: float, rows: list[AuditEvent]) -> list[AuditEvent]:
    """The rows of what happened from `started` on: the shared gateway holds earlier tests' too."""
    return [row for row in rows if row.ts >= started]


async def _run(client, code: str):
    return await client.call_tool("execute_code", {"code": code})


async def _coder_runs(gateway, code: str) -> str:
    """What `code` printed and returned, run on the coder key; a run that failed fails the test."""
    async with gateway.client(CODER_KEY) as client:
        answer = await _run(client, code)
    assert not answer.is_error, _text(answer)
    return _text(answer)


async def test_a_code_mode_key_lists_the_five_meta_tools_and_headers_switch(gateway):
    assert await gateway.tool_names(CODER_KEY) == META_TOOL_NAMES
    assert "echo__echo" in await gateway.tool_names(CODER_KEY, {"X-Bastion-Code-Mode": "off"})
    assert await gateway.tool_names(ADMIN_KEY, {"X-Bastion-Code-Mode": "on"}) == META_TOOL_NAMES
    assert "must be 'on' or 'off'" in await gateway.refused_listing(CODER_KEY, {"X-Bastion-Code-Mode": "maybe"})


async def test_files_docs_and_search_show_only_what_the_key_may_use(gateway):
    async with gateway.client(NARROW_KEY) as client:
        files = _text(await client.call_tool("list_tool_files", {}))
        assert files.splitlines() == [
            "servers/echo.py  1 tool — server echo: echo",
            "servers/notes.py  1 tool — server notes: list_notes",
        ]
        stub = _text(await client.call_tool("read_tool_file", {"path": "servers/echo.py"}))
        assert stub.splitlines()[0].startswith("1  ")
        assert "def echo(text: str) -> str:" in stub
        for alias in ("echo", "echo.py", "./servers/echo.py"):
            assert _text(await client.call_tool("read_tool_file", {"path": alias})) == stub
        ranged = _text(
            await client.call_tool("read_tool_file", {"path": "servers/echo.py", "start_line": 3, "end_line": 3})
        )
        assert ranged == "3  def echo(text: str) -> str:"
        docs = _text(await client.call_tool("get_tool_docs", {"name": "echo.echo"}))
        assert docs.startswith("echo.echo(text: str) -> str")
        hidden = await client.call_tool("get_tool_docs", {"name": "echo.add"})  # exists, not granted
        assert hidden.is_error and "no tool echo.add for this key" in _text(hidden)
        found = _text(await client.call_tool("search_tools", {"query": "notes list"}))
        assert found.splitlines()[0].startswith("notes.list_notes() — ")
        bad = await client.call_tool("search_tools", {"query": "x", "limit": 500})
        assert bad.is_error and "limit" in _text(bad)


async def test_search_understands_meaning_and_never_offers_a_tool_the_key_may_not_call(gateway):
    """Hybrid search through the gateway: a need with no word of the tool's name finds it, and a
    key's search never reaches the tools it was not granted, however exactly the query names them."""
    async with gateway.client(CODER_KEY) as client:
        found = _text(await client.call_tool("search_tools", {"query": "sum of two integers", "limit": 3}))
        assert found.splitlines()[0].startswith("echo.add(a: int, b: int)"), found
        assert "lexical only" not in found
    async with gateway.client(NARROW_KEY) as client:
        for query in ("add two numbers", "echo.add", "sum of two integers", "search the notes"):
            found = _text(await client.call_tool("search_tools", {"query": query, "limit": 50}))
            offered = {line.split("(", 1)[0] for line in found.splitlines() if "(" in line}
            assert offered <= {"echo.echo", "notes.list_notes"}, (query, found)


async def test_a_script_calls_tools_through_policy_and_each_call_is_audited_under_its_run(gateway):
    code = (
        'a = notes.add_note(title="t1", text="hello")\n'
        'b = notes.add_note(title="t2", text="world")\n'
        "titles = [n['title'] for n in notes.list_notes()]\n"
        'print("added", a["id"], b["id"])\n'
        "result = {'titles': titles, 'sum': echo.add(a=2, b=40)}\n"
    )
    started = time.time()
    lines = (await _coder_runs(gateway, code)).splitlines()
    assert lines[0] == "added 1 2"
    assert lines[1] == 'result: {"titles":["t1","t2"],"sum":42}'

    def four_calls_under_a_run(rows: list[AuditEvent]) -> bool:
        rows = _since(started, rows)
        runs = [r for r in rows if r.kind == "code_run"]
        return bool(runs) and len([r for r in rows if r.parent_id == runs[0].event_id]) == 4

    rows = _since(started, await audit_rows_when(gateway.nats_url, "coder", four_calls_under_a_run))
    run = next(r for r in rows if r.kind == "code_run")
    children: list[AuditEvent] = [r for r in rows if r.parent_id == run.event_id]
    assert run.name == "execute_code" and run.status == "ok"
    assert sorted(c.name for c in children) == ["echo__add", "notes__add_note", "notes__add_note", "notes__list_notes"]
    assert all(c.kind == "tool_call" and c.status == "ok" and c.key_name == "coder" for c in children)


async def test_parallel_runs_calls_concurrently_and_keeps_their_order(gateway):
    # each meet() returns "met" only while all three are in flight at once
    code = (
        'r = parallel([("rendezvous.meet", {"group": "g", "size": 3}) for _ in range(3)]'
        ' + [("echo.echo", {"text": "z"})])\n'
        "result = r"
    )
    assert await _coder_runs(gateway, code) == 'result: ["met","met","met","z"]'


async def test_errors_name_the_line_the_tool_and_the_closest_names(gateway):
    async with gateway.client(NARROW_KEY) as client:
        syntax = await _run(client, "x = 1\ny = = 2\n")  # Starlark places the column after the token
        assert syntax.is_error
        assert _text(syntax) == (
            "SyntaxError at line 2, column 6: got '=', want primary expression\n  2 | y = = 2\n    |      ^"
        )
        runtime = await _run(client, 'print("before")\ndef f(d):\n    return d["x"] + 1\nf({"x": "a"})\n')
        text = _text(runtime)
        assert runtime.is_error and text.startswith(
            "before\nError at line 3, column 19: unknown binary op: string + int"
        )
        assert "trace: line 4 in <toplevel>, line 3 in f" in text
        forbidden = await _run(client, "echo.add(a=1, b=2)\n")  # exists, but this key may not use it
        assert forbidden.is_error
        assert "no tool echo.add for this key; closest: echo.echo" in _text(forbidden)
        typo = await _run(client, "notes.list_note()\n")
        assert "closest: notes.list_notes" in _text(typo)
        refused = await _run(client, 'parallel([("echo.add", {"a": 1, "b": 2})])\n')
        assert refused.is_error and "no tool echo.add for this key" in _text(refused)
    async with gateway.client(CODER_KEY) as client:
        failing = await _run(client, 'x = 1\necho.fail(message="boom")\n')
        assert failing.is_error
        assert _text(failing).startswith("ToolError at line 2, column 10: echo.fail failed: ")
        assert "boom" in _text(failing)


async def test_a_scripts_calls_count_against_the_keys_rate_limit(gateway):
    code = 'for i in range(3):\n    print(echo.echo(text="call %d" % i))\n'
    async with gateway.client(LIMITED_KEY) as client:
        answer = await _run(client, code)
    lines = _text(answer).splitlines()
    assert answer.is_error and lines[:2] == ["call 0", "call 1"]
    assert lines[2].startswith("ToolError at line 2, column 20: echo.echo failed: rate_limited: ")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_agent_cancelling_a_run_stops_it_and_its_tool_calls(gateway, mode):
    import anyio

    codemode = next(s for s in gateway.services if isinstance(s, CodeModeService))
    replaced, started = codemode.pool.replaced, time.time()
    async with gateway.client(CODER_KEY, mode=mode) as client:
        # legacy: the SDK sends notifications/cancelled; 2026-07-28: it closes the response stream
        with anyio.move_on_after(1.0):
            await _run(client, "echo.sleep(seconds=60)\n")
        await poll_until(lambda: codemode.pool.replaced == replaced + 1, "the cancelled run's worker replaced")
        # the session keeps working
        assert _text(await _run(client, "result = 1")) == "result: 1"
    # the run's row (ingress) and its inner call's (codemode) come from two producers: wait for both
    rows = await audit_rows_when(
        gateway.nats_url,
        "coder",
        lambda rows: (
            any(r.error_kind == "cancelled" and r.parent_id for r in _since(started, rows))
            and any(r.kind == "code_run" and r.error_kind == "cancelled" for r in _since(started, rows))
        ),
    )
    rows = _since(started, rows)
    run = next(r for r in rows if r.kind == "code_run" and r.error_kind == "cancelled")
    inner = next(r for r in rows if r.parent_id == run.event_id)
    assert inner.name == "echo__sleep" and inner.error_kind == "cancelled"


async def test_a_direct_call_of_a_catalog_tool_still_works_in_code_mode(gateway):
    async with gateway.client(CODER_KEY) as client:
        assert _text(await client.call_tool("echo__echo", {"text": "direct"})) == "direct"


async def test_bad_meta_tool_arguments_are_clear(gateway):
    async with gateway.client(CODER_KEY) as client:
        missing = await client.call_tool("execute_code", {})
        assert missing.is_error and "invalid arguments for execute_code: code: Field required" in _text(missing)
        no_file = await client.call_tool("read_tool_file", {"path": "servers/nope.py"})
        assert no_file.is_error and "servers/echo.py" in _text(no_file)


async def test_health_stays_green(gateway):
    async with httpx2.AsyncClient() as http:
        health = await http.get(gateway.url.replace("/mcp", "/healthz"))
    assert health.status_code == 200
    async with gateway.client(READONLY_KEY) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == {"echo__echo", "notes__list_notes"}


async def test_without_its_model_search_is_lexical_and_says_so(nats_url, redis_url, tmp_path, alone):
    settings = CodeModeSettings(sandbox_workers=1, search_embeddings=False)
    config = code_mode_config(rendezvous=False)
    async with running_gateway(nats_url, redis_url, tmp_path, config, codemode=settings) as gw:
        assert REGISTRY.get_sample_value("bastion_codemode_search_model_loaded") == 0
        async with gw.client(CODER_KEY) as client:
            found = _text(await client.call_tool("search_tools", {"query": "notes list"}))
        first, second = found.splitlines()[:2]
        assert first == "(lexical only: embeddings are turned off (BASTION_SEARCH_EMBEDDINGS=false))"
        assert second.startswith("notes.list_notes() — ")
        lexical = REGISTRY.get_sample_value("bastion_codemode_searches_total", {"engine": "lexical"})
        assert lexical is not None and lexical >= 1


async def test_without_the_codemode_service_a_meta_tool_call_fails_clearly(nats_url, redis_url, tmp_path, alone):
    # a meta-tool call never reaches the executor: no upstream server is started
    async with running_gateway(nats_url, redis_url, tmp_path, code_mode_config(), executor=False) as gw:
        async with gw.client(CODER_KEY) as client:
            with pytest.raises(MCPError) as unavailable:
                await client.call_tool("list_tool_files", {})
        assert "no codemode service" in unavailable.value.error.message
