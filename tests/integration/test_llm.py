"""The OpenAI-compatible side end to end: the official `openai` SDK -> ingress `/v1` -> NATS ->
policy (key, budgets) -> executor -> a scripted OpenAI-compatible provider speaking the real wire
format, with MCP tools injected from the real upstream MCP servers and audit landing in ClickHouse."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from bastion_codemode.service import CodeModeService
from bastion_common import subjects
from bastion_common.audit_journal import JournalContents, read_segments
from bastion_common.codemode import META_TOOL_NAMES
from bastion_common.messages import AuditEvent, AuditQuery, AuditRows
from bastion_common.nats import connect, kv_bucket
from bastion_common.sealing import new_key
from bastion_common.settings import CodeModeSettings
from tests.support.gateway import ADMIN_KEY, READONLY_KEY, Gateway, default_config, running_gateway
from tests.support.llm_provider import Cut, Drop, Fail, Held, Reply, ScriptedProvider, Stall, scripted_provider
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

PROVIDER_KEY = "sk-provider-secret-never-shown-0123456789"
MODEL = "gpt-test"
BROKE_KEY = "bk_test_broke_key_00000000000"
AGENT_KEY = "bk_test_agent_key_00000000000"
SHALLOW_KEY = "bk_test_shallow_agent_key_000"
CODER_KEY = "bk_test_llm_code_mode_key_000"
ADMIN_TOKEN = "test-admin-token-llm-providers-0"
RUNTIME_KEY = "sk-runtime-provider-secret-9876543210"
CODE_AGENT_KEY = "bk_test_llm_code_agent_key_00"
SQUAD_KEY = "bk_test_llm_squad_member_key_0"
DOCS_MODEL = "gpt-4.1-mini"
"""The model docs/llm.md's examples name."""
PRICEY = "gpt-pricey"
"""Output at $1000 per million tokens, input free: `max_tokens=5` may cost at most $0.005."""


def _config(provider: ScriptedProvider) -> dict[str, Any]:
    config = default_config()
    config["keys"].append(
        {"name": "broke", "key": BROKE_KEY, "tools": ["echo/*"], "budget": {"limit_usd": 0.001, "period": "day"}}
    )
    config["keys"] += [
        {"name": "agent", "key": AGENT_KEY, "tools": ["echo/*"], "agent": {"tools_to_auto_execute": ["echo__echo"]}},
        {
            "name": "shallow",
            "key": SHALLOW_KEY,
            "tools": ["echo/*"],
            "agent": {"tools_to_auto_execute": ["echo__*"], "max_depth": 2},
        },
        {"name": "coder", "key": CODER_KEY, "tools": ["echo/*"], "code_mode": True},
        {
            "name": "code-agent",
            "key": CODE_AGENT_KEY,
            "tools": ["echo/*"],
            "code_mode": True,
            "agent": {"tools_to_auto_execute": ["execute_code"]},
        },
    ]
    config["mcpServers"]["echo"]["prices"] = {"echo": 0.004}
    config["teams"] = [{"id": "squad", "name": "Squad", "budget": {"limit_usd": 0.01, "period": "day"}}]
    config["keys"].append({"name": "squad-member", "key": SQUAD_KEY, "tools": ["echo/*"], "team": "squad"})
    config["llm"] = {
        "providers": {
            "scripted": {
                "base_url": provider.base_url,
                "api_key_env": "BASTION_TEST_PROVIDER_KEY",
                "models": [MODEL, PRICEY, DOCS_MODEL],
                "prices": {MODEL: {"input": 1.0, "output": 2.0}, PRICEY: {"input": 0.0, "output": 1000.0}},
                "retries": 1,
                "failure_threshold": 2,
                "reset_timeout": 60,
            },
            "down": {"base_url": "http://127.0.0.1:9/v1", "models": ["gpt-down"], "retries": 0, "failure_threshold": 2},
            # the same server under a short timeout: a stalled answer becomes a timeout
            "slow": {"base_url": provider.base_url, "models": ["gpt-slow"], "timeout": 0.5, "retries": 0},
        }
    }
    return config


@pytest.fixture
async def provider() -> AsyncIterator[ScriptedProvider]:
    async with scripted_provider() as scripted:
        yield scripted


@pytest.fixture
async def second_provider() -> AsyncIterator[ScriptedProvider]:
    async with scripted_provider() as scripted:
        yield scripted


@pytest.fixture
async def gateway(nats_url, redis_url, tmp_path, provider, monkeypatch) -> AsyncIterator[Gateway]:
    """With the admin API on, and provider keys sealed at rest."""
    monkeypatch.setenv("BASTION_TEST_PROVIDER_KEY", PROVIDER_KEY)
    settings = {"admin_token": ADMIN_TOKEN, "secrets_key": new_key(), "audit_journal_dir": str(tmp_path / "journal")}
    async with running_gateway(nats_url, redis_url, tmp_path, _config(provider), **settings) as gw:
        await poll_until(lambda: MODEL in gw.ingress.models.models, "the provider in the ingress view")
        try:
            yield gw
        finally:
            while _OPEN:
                await _OPEN.pop().close()


@pytest.fixture
async def code_gateway(nats_url, redis_url, tmp_path, provider, monkeypatch) -> AsyncIterator[Gateway]:
    """The gateway with the codemode service (real sandbox workers) for the Code Mode keys."""
    monkeypatch.setenv("BASTION_TEST_PROVIDER_KEY", PROVIDER_KEY)
    settings = CodeModeSettings(sandbox_workers=1, sandbox_wall_seconds=20)
    async with running_gateway(nats_url, redis_url, tmp_path, _config(provider), codemode=settings) as gw:
        codemode = next(s for s in gw.services if isinstance(s, CodeModeService))
        await poll_until(lambda: MODEL in gw.ingress.models.models, "the provider in the ingress view")
        await poll_until(lambda: {"echo", "notes"} <= {s for s, _ in codemode.catalog.pairs}, "the codemode catalog")
        try:
            yield gw
        finally:
            while _OPEN:
                await _OPEN.pop().close()


_OPEN: list[openai.AsyncOpenAI] = []
"""SDK clients the running test made, closed with its gateway (an open connection would warn)."""


def _client(gateway: Gateway, key: str = ADMIN_KEY) -> openai.AsyncOpenAI:
    base = gateway.url.removesuffix("/mcp")
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=30)
    _OPEN.append(client)
    return client


async def _execute(gateway: Gateway, tool_call: dict[str, Any], key: str = ADMIN_KEY) -> httpx.Response:
    base = gateway.url.removesuffix("/mcp")
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"{base}/v1/mcp/tool/execute", json=tool_call, headers={"authorization": f"Bearer {key}"}
        )


async def _audit(gateway: Gateway, wanted: int) -> list[AuditEvent]:
    nc = await connect(gateway.nats_url, "test-audit")
    try:
        for _ in range(200):
            reply = await nc.request(subjects.AUDIT_QUERY, AuditQuery(limit=100).model_dump_json().encode(), timeout=5)
            rows = AuditRows.model_validate_json(reply.data).rows
            if len(rows) >= wanted:
                return rows
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    raise AssertionError(f"expected {wanted} audit rows, found {len(rows)}")


def _tool_names(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools", [])]


async def test_models_and_authentication(gateway):
    models = await _client(gateway).models.list()
    assert {model.id for model in models.data} == {MODEL, PRICEY, DOCS_MODEL, "gpt-down", "gpt-slow"}
    with pytest.raises(openai.AuthenticationError):
        await _client(gateway, "bk_not_a_key_at_all_000000000").models.list()


async def test_explicit_mode_returns_tool_calls_and_execute_runs_one(gateway, provider):
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": "hello"})], usage=(100, 20))]
    raw = await _client(gateway).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "say hello"}]
    )
    completion = raw.parse()
    parent = raw.headers["x-bastion-request-id"]
    # the provider got the key's MCP tools as function tools, and the provider key, never the agent's
    sent = provider.received[0]
    assert {"echo__echo", "echo__add", "notes__add_note"} <= set(_tool_names(sent.body))
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    echo = next(t for t in sent.body["tools"] if t["function"]["name"] == "echo__echo")
    assert echo["function"]["parameters"]["properties"]["text"]["type"] == "string"
    # explicit mode: the proposed call comes back untouched, nothing ran
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "echo__echo" and call.function.arguments == '{"text":"hello"}'
    assert completion.choices[0].finish_reason == "tool_calls"

    # as docs/llm.md shows it: the SDK's own client posts the tool call
    answer = await _client(gateway).post("/mcp/tool/execute", body=call.model_dump(), cast_to=object)
    assert answer == {"role": "tool", "tool_call_id": call.id, "content": "hello"}

    rows = await _audit(gateway, 2)
    llm = next(r for r in rows if r.kind == "llm_request")
    assert (llm.event_id, llm.server, llm.tool, llm.status) == (parent, "scripted", MODEL, "ok")
    assert (llm.prompt_tokens, llm.completion_tokens, llm.tool_calls) == (100, 20, ["echo__echo"])
    assert llm.cost_usd == pytest.approx((100 * 1.0 + 20 * 2.0) / 1e6)
    tool = next(r for r in rows if r.kind == "tool_call")
    assert (tool.name, tool.status, tool.parent_id) == ("echo__echo", "ok", parent)
    assert all(PROVIDER_KEY not in row.model_dump_json() for row in rows)


async def test_streaming_relays_chunks_and_tool_call_deltas(gateway, provider):
    provider.script = [Reply(text="Let me check that.", tool_calls=[("echo__add", {"a": 2, "b": 40})], usage=(7, 9))]
    stream = await _client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "add"}], stream=True
    )
    text, arguments, names, finish = [], [], [], None
    async for chunk in stream:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            for part in choice.delta.tool_calls or []:
                names.append(part.function.name or "")
                arguments.append(part.function.arguments or "")
            finish = choice.finish_reason or finish
    assert "".join(text) == "Let me check that."
    assert "".join(names) == "echo__add" and "".join(arguments) == '{"a":2,"b":40}'
    assert finish == "tool_calls"
    assert provider.received[0].body["stream_options"] == {"include_usage": True}
    (row,) = [r for r in await _audit(gateway, 1) if r.kind == "llm_request"]
    assert (row.status, row.prompt_tokens, row.completion_tokens, row.tool_calls) == ("ok", 7, 9, ["echo__add"])


async def test_an_application_tool_wins_a_name_clash_and_is_never_executed(gateway, provider):
    own = {
        "type": "function",
        "function": {"name": "echo__echo", "description": "the app's own", "parameters": {"type": "object"}},
    }
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": "mine"})])]
    completion = await _client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], tools=[own]
    )
    names = _tool_names(provider.received[0].body)
    assert names.count("echo__echo") == 1
    assert provider.received[0].body["tools"][0] == own  # the application's definition, not the MCP one
    assert completion.choices[0].message.tool_calls[0].function.name == "echo__echo"
    rows = await _audit(gateway, 1)
    assert [r.kind for r in rows] == ["llm_request"]  # Bastion ran nothing


async def test_a_forbidden_tool_proposed_by_the_model_never_runs(gateway, provider):
    provider.script = [Reply(tool_calls=[("echo__add", {"a": 1, "b": 2})])]
    completion = await _client(gateway, READONLY_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "add"}]
    )
    assert set(_tool_names(provider.received[0].body)) == {"echo__echo", "notes__list_notes"}
    (call,) = completion.choices[0].message.tool_calls
    refused = await _execute(gateway, call.model_dump(), READONLY_KEY)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    rows = await _audit(gateway, 2)
    tool = next(r for r in rows if r.kind == "tool_call")
    assert (tool.status, tool.execution) == ("denied", "not_run")


async def test_budget_refusal_happens_before_the_provider_is_called(gateway, provider):
    provider.script = [Reply(text="never")]
    with pytest.raises(openai.APIStatusError) as refused:
        await _client(gateway, BROKE_KEY).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1000
        )
    assert refused.value.status_code == 402
    assert refused.value.body["code"] == "budget_exceeded"
    assert provider.received == []
    (row,) = await _audit(gateway, 1)
    assert (row.kind, row.status, row.error_kind) == ("llm_request", "denied", "budget_exceeded")


async def test_a_dropped_connection_is_retried_before_any_token(gateway, provider):
    provider.script = [Drop(), Reply(text="second time lucky")]
    completion = await _client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "second time lucky"
    assert len(provider.received) == 2


async def test_provider_errors_reach_the_client_without_the_provider_key(gateway, provider, caplog):
    caplog.set_level(logging.DEBUG)
    provider.script = [Fail(500, f"upstream exploded near {PROVIDER_KEY}")]
    with pytest.raises(openai.APIStatusError) as failed:
        await _client(gateway).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 502
    assert "HTTP 500" in failed.value.message and PROVIDER_KEY not in failed.value.message
    (row,) = await _audit(gateway, 1)
    assert row.status == "error" and PROVIDER_KEY not in (row.error or "")
    assert caplog.records and PROVIDER_KEY not in caplog.text  # in no service's log line, at any level


async def test_a_stalled_provider_times_out(gateway, provider):
    provider.script = [Stall()]
    with pytest.raises(openai.APIStatusError) as stalled:
        await _client(gateway).chat.completions.create(model="gpt-slow", messages=[{"role": "user", "content": "hi"}])
    assert stalled.value.status_code == 504 and stalled.value.body["code"] == "upstream_timeout"
    (row,) = await _audit(gateway, 1)
    assert (row.status, row.error_kind, row.server) == ("error", "upstream_timeout", "slow")


async def test_a_stream_broken_after_its_first_tokens_is_not_retried(gateway, provider):
    provider.script = [Cut("Half an ans"), Reply("a retry would repeat the text")]
    stream = await _client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = []
    with pytest.raises(openai.APIError) as broken:
        async for chunk in stream:
            text += [choice.delta.content or "" for choice in chunk.choices]
    assert "".join(text) == "Half an ans"  # relayed as it came, then the error as an event of its own
    assert "unreachable" in broken.value.message
    assert len(provider.received) == 1  # tokens had reached the client: no second attempt
    (row,) = await _audit(gateway, 1)
    assert (row.status, row.error_kind) == ("error", "upstream_unavailable")


async def test_tool_prices_and_token_costs_share_the_team_budget(gateway, provider):
    """Team budget $0.01: a tool call ($0.004) and a completion (at most $0.005, actually $0.004) fit;
    then neither another completion nor another tool call does, though each alone would have."""
    client = _client(gateway, SQUAD_KEY)
    call = {"id": "call_1", "type": "function", "function": {"name": "echo__echo", "arguments": '{"text": "paid"}'}}
    assert (await _execute(gateway, call, SQUAD_KEY)).status_code == 200
    provider.script = [Reply("four tokens", usage=(10, 4))]
    completion = await client.chat.completions.create(
        model=PRICEY, messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert completion.choices[0].message.content == "four tokens"
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model=PRICEY, messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert refused.value.status_code == 402 and refused.value.body["code"] == "budget_exceeded"
    assert len(provider.received) == 1  # refused before the provider was called
    again = await _execute(gateway, {**call, "id": "call_2"}, SQUAD_KEY)
    assert again.status_code == 402 and again.json()["error"]["code"] == "budget_exceeded"
    rows = await _audit(gateway, 4)
    llm = sorted((r for r in rows if r.kind == "llm_request"), key=lambda r: r.ts)
    assert [(r.status, r.cost_usd) for r in llm] == [("ok", pytest.approx(0.004)), ("denied", 0.0)]


async def test_an_unreachable_provider_opens_its_breaker_and_only_its_own(gateway, provider):
    client = _client(gateway)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as down:
            await client.chat.completions.create(model="gpt-down", messages=[{"role": "user", "content": "hi"}])
        assert down.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model="gpt-down", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 503 and refused.value.body["code"] == "circuit_open"
    provider.script = [Reply("still here")]  # another provider's breaker is its own
    completion = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "still here"


async def test_an_unknown_model_is_a_404(gateway):
    with pytest.raises(openai.NotFoundError):
        await _client(gateway).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


async def test_agent_mode_runs_allowed_calls_concurrently_and_loops_until_the_model_stops(gateway, provider):
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": "a"}), ("echo__echo", {"text": "b"})]), Reply("done")]
    completion = await _client(gateway, AGENT_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "echo a and b"}]
    )
    assert completion.choices[0].message.content == "done" and not completion.choices[0].message.tool_calls
    summary = completion.model_extra["bastion"]
    assert (summary["depth"], summary["stopped"]) == (2, None)
    assistant, *results = summary["transcript"]
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["echo__echo", "echo__echo"]
    assert [r["content"] for r in results] == ["a", "b"]
    # the second round saw the calls and their results
    assert provider.received[1].body["messages"][1:] == summary["transcript"]
    rows = await _audit(gateway, 4)
    llm = sorted((r for r in rows if r.kind == "llm_request"), key=lambda r: r.ts)
    tools = [r for r in rows if r.kind == "tool_call"]
    assert len(llm) == 2 and len(tools) == 2
    assert {t.parent_id for t in tools} == {llm[0].event_id}


async def test_agent_mode_returns_calls_it_may_not_run_as_pending(gateway, provider):
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": "ran"}), ("echo__add", {"a": 1, "b": 2})])]
    completion = await _client(gateway, AGENT_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "both"}]
    )
    (pending,) = completion.choices[0].message.tool_calls
    assert pending.function.name == "echo__add"
    summary = completion.model_extra["bastion"]
    assert summary["stopped"] == "pending_tool_calls"
    assert [m.get("content") for m in summary["transcript"][1:]] == ["ran"]
    assert len(provider.received) == 1
    rows = await _audit(gateway, 2)
    assert [r.name for r in rows if r.kind == "tool_call"] == ["echo__echo"]  # echo__add never ran


async def test_agent_mode_stops_at_its_depth_and_says_so(gateway, provider):
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": str(i)})]) for i in range(3)]
    completion = await _client(gateway, SHALLOW_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "loop"}]
    )
    summary = completion.model_extra["bastion"]
    assert (summary["depth"], summary["stopped"]) == (2, "max_depth")
    assert completion.choices[0].message.tool_calls[0].function.arguments == '{"text":"1"}'
    assert len(provider.received) == 2
    rows = await _audit(gateway, 3)
    assert len([r for r in rows if r.kind == "tool_call"]) == 1


async def test_agent_mode_streams_text_across_rounds(gateway, provider):
    provider.script = [Reply("Checking. ", tool_calls=[("echo__echo", {"text": "x"})]), Reply("Done.")]
    stream = await _client(gateway, AGENT_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "go"}], stream=True
    )
    text, tool_deltas, finish, summary = [], 0, None, None
    async for chunk in stream:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            tool_deltas += len(choice.delta.tool_calls or [])
            finish = choice.finish_reason or finish
        summary = (chunk.model_extra or {}).get("bastion") or summary
    assert "".join(text) == "Checking. Done."
    assert (tool_deltas, finish) == (0, "stop")
    assert summary is not None and [m["role"] for m in summary["transcript"]] == ["assistant", "tool"]
    assert summary["transcript"][1]["content"] == "x"


SCRIPT = 'print(echo.echo(text="from a script")["result"])\n'


async def _audit_chain(gateway: Gateway, key_name: str, llm_rounds: int) -> tuple[list[AuditEvent], ...]:
    """(llm_request rows by time, code_run rows, tool_call rows) of one key, once all arrived."""

    async def rows() -> list[AuditEvent]:
        nc = await connect(gateway.nats_url, "test-audit")
        try:
            reply = await nc.request(subjects.AUDIT_QUERY, AuditQuery(key_name=key_name).model_dump_json().encode(), 5)
        finally:
            await nc.close()
        found = AuditRows.model_validate_json(reply.data).rows
        kinds = [r.kind for r in found]
        done = kinds.count("llm_request") == llm_rounds and "code_run" in kinds and "tool_call" in kinds
        return found if done else []

    found = await poll_until(rows, f"the audit rows of {key_name}")
    by_kind = lambda kind: sorted((r for r in found if r.kind == kind), key=lambda r: r.ts)  # noqa: E731
    return by_kind("llm_request"), by_kind("code_run"), by_kind("tool_call")


async def test_a_code_mode_key_gets_the_meta_tools_and_execute_runs_code_through_codemode(code_gateway, provider):
    provider.script = [Reply(tool_calls=[("execute_code", {"code": SCRIPT})]), Reply("plain tools")]
    raw = await _client(code_gateway, CODER_KEY).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "echo from a script"}]
    )
    completion, parent = raw.parse(), raw.headers["x-bastion-request-id"]
    assert set(_tool_names(provider.received[0].body)) == META_TOOL_NAMES  # the meta-tools, not the catalog
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "execute_code"  # explicit mode: proposed, not run

    answer = await _client(code_gateway, CODER_KEY).post("/mcp/tool/execute", body=call.model_dump(), cast_to=object)
    assert answer["role"] == "tool" and answer["tool_call_id"] == call.id
    assert answer["content"].splitlines()[0] == "from a script"  # the script ran in the sandbox

    (llm,), (run,), (echo,) = await _audit_chain(code_gateway, "coder", 1)
    assert llm.event_id == parent and llm.tool_calls == ["execute_code"]
    assert (run.name, run.status, run.parent_id) == ("execute_code", "ok", parent)
    assert (echo.name, echo.status, echo.parent_id) == ("echo__echo", "ok", run.event_id)

    # the same header as on /mcp switches Code Mode off for one request: the key's MCP tools come back
    await _client(code_gateway, CODER_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Bastion-Code-Mode": "off"}
    )
    plain = set(_tool_names(provider.received[1].body))
    assert {"echo__echo", "echo__add"} <= plain and not plain & META_TOOL_NAMES


async def test_agent_mode_runs_code_mode_calls_through_codemode_while_streaming(code_gateway, provider):
    provider.script = [Reply("Running it. ", tool_calls=[("execute_code", {"code": SCRIPT})]), Reply("It said so.")]
    stream = await _client(code_gateway, CODE_AGENT_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "echo from a script"}], stream=True
    )
    text, summary = [], None
    async for chunk in stream:
        text += [choice.delta.content or "" for choice in chunk.choices]
        summary = (chunk.model_extra or {}).get("bastion") or summary
    assert "".join(text) == "Running it. It said so."
    assert summary is not None and summary["stopped"] is None
    _, result = summary["transcript"]
    assert result["role"] == "tool" and result["content"].splitlines()[0] == "from a script"
    assert provider.received[1].body["messages"][-1] == result  # the model saw what the script printed

    (first, _), (run,), (echo,) = await _audit_chain(code_gateway, "code-agent", 2)
    assert (run.name, run.parent_id) == ("execute_code", first.event_id)
    assert echo.parent_id == run.event_id


async def _once_served(client: openai.AsyncOpenAI, model: str) -> Any:
    """The first completion of `model` once every service has the provider (ingress and the executors
    each watch the providers' bucket: one may see a change a moment before the other)."""

    async def attempt() -> Any:
        try:
            return await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        except openai.APIStatusError as exc:
            if ("does not exist" in exc.message or "no provider serves" in exc.message) and exc.status_code in (
                404,
                502,
            ):
                return None
            raise

    return await poll_until(attempt, f"{model} served")


async def test_providers_are_added_changed_and_removed_at_run_time(gateway, second_provider):
    base = gateway.url.removesuffix("/mcp")
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    config = {"base_url": second_provider.base_url, "api_key": RUNTIME_KEY, "models": ["gpt-runtime"]}
    client = _client(gateway)
    async with httpx.AsyncClient(base_url=f"{base}/admin/v1", headers=headers, timeout=30) as admin:
        created = await admin.post("/llm-providers", json={"name": "runtime", "config": config})
        assert created.status_code == 201, created.text
        assert created.json()["config"]["api_key"] == "***"
        listed = await admin.get("/llm-providers")
        assert [p["name"] for p in listed.json()] == ["down", "runtime", "scripted", "slow"]
        assert RUNTIME_KEY not in listed.text and RUNTIME_KEY not in (await admin.get("/llm-providers/runtime")).text
        clash = await admin.post("/llm-providers", json={"name": "again", "config": {**config, "models": [MODEL]}})
        assert clash.status_code == 409 and "'scripted' already serves 'gpt-test'" in clash.text

        nc = await connect(gateway.nats_url, "test-kv")
        try:
            stored = (await (await kv_bucket(nc.jetstream(), subjects.KV_LLM)).get("runtime")).value or b""
        finally:
            await nc.close()
        assert b"runtime" in stored and RUNTIME_KEY.encode() not in stored  # sealed at rest

        # served without a restart, with its own key
        second_provider.script = [Reply("from the runtime provider"), Reply("renamed")]
        completion = await _once_served(client, "gpt-runtime")
        assert completion.choices[0].message.content == "from the runtime provider"
        assert second_provider.received[0].headers["authorization"] == f"Bearer {RUNTIME_KEY}"
        assert provider_models(await client.models.list()) >= {"gpt-runtime", MODEL}

        # the key sent back masked stays what it was
        changed = {"config": {**config, "api_key": "***", "models": ["gpt-runtime-2"]}}
        updated = await admin.put("/llm-providers/runtime", json=changed)
        assert updated.status_code == 200, updated.text
        completion = await _once_served(client, "gpt-runtime-2")
        assert completion.choices[0].message.content == "renamed"
        assert second_provider.received[1].headers["authorization"] == f"Bearer {RUNTIME_KEY}"

        assert (await admin.delete("/llm-providers/runtime")).status_code == 204
        await poll_until(
            lambda: "gpt-runtime-2" not in gateway.ingress.models.models, "the provider gone from the ingress view"
        )
        assert "gpt-runtime-2" not in provider_models(await client.models.list())
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="gpt-runtime-2", messages=[{"role": "user", "content": "hi"}])
    assert len(second_provider.received) == 2


def provider_models(page: Any) -> set[str]:
    return {model.id for model in page.data}


async def test_a_key_created_through_the_admin_api_can_be_an_agent(gateway, provider):
    base = gateway.url.removesuffix("/mcp")
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {"name": "made-agent", "grants": ["echo/*"], "agent": {"tools_to_auto_execute": ["echo__echo"]}}
    async with httpx.AsyncClient(base_url=f"{base}/admin/v1", headers=headers, timeout=30) as admin:
        created = await admin.post("/keys", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["key"]["agent"] == {"tools_to_auto_execute": ["echo__echo"], "max_depth": 10}
        secret, key_id = created.json()["secret"], created.json()["key"]["id"]
        await poll_until(lambda: gateway.ingress.keys.record(key_id) is not None, "the new key at ingress")
        provider.script = [Reply(tool_calls=[("echo__echo", {"text": "auto"})]), Reply("done")]
        completion = await _client(gateway, secret).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "echo"}]
        )
        assert completion.model_extra["bastion"]["depth"] == 2
        assert completion.model_extra["bastion"]["transcript"][1]["content"] == "auto"

        cleared = await admin.patch(f"/keys/{key_id}", json={"agent": None})
        assert cleared.status_code == 200 and cleared.json()["agent"] is None


DOCS = Path(__file__).resolve().parents[2] / "docs" / "llm.md"


def _docs_blocks(language: str, gateway: Gateway, key: str = ADMIN_KEY) -> list[str]:
    """docs/llm.md's code blocks in `language`, pointed at the test gateway instead of `./run up`."""
    base = gateway.url.removesuffix("/mcp")
    blocks = re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S)
    return [b.replace("http://127.0.0.1:8420", base).replace("bk_demo_local_only_change_me_0000", key) for b in blocks]


async def test_the_docs_sdk_examples_run_as_written(gateway, provider, capsys):
    explicit, streaming, agent = _docs_blocks("python", gateway)
    namespace: dict[str, Any] = {}
    provider.script = [
        Reply(tool_calls=[("notes__add_note", {"title": "hello", "text": "hello"})]),
        Reply("Hello there!"),
        Reply(tool_calls=[("echo__echo", {"text": "hi"})]),
        Reply("It said hi."),
    ]
    try:
        await asyncio.to_thread(exec, explicit, namespace)
        assert namespace["tool_message"]["role"] == "tool"
        assert namespace["tool_message"]["tool_call_id"] == namespace["call"].id
        await asyncio.to_thread(exec, streaming, namespace)
        assert capsys.readouterr().out.endswith("Hello there!")
    finally:
        namespace["client"].close()
    namespace["client"] = namespace["OpenAI"](base_url=f"{gateway.url.removesuffix('/mcp')}/v1", api_key=AGENT_KEY)
    try:
        await asyncio.to_thread(exec, agent, namespace)
    finally:
        namespace["client"].close()
    assert namespace["loop"]["depth"] == 2
    assert [m["role"] for m in namespace["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert namespace["messages"][-1]["content"] == "It said hi."


async def test_the_docs_curl_examples_run_as_written(gateway, provider):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed on this machine")
    (script,) = [block for block in _docs_blocks("bash", gateway) if "/v1/models" in block]
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": "hi"})])]
    done = await asyncio.to_thread(
        subprocess.run, ["bash", "-euc", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    models, completion, tool = done.stdout.replace("}{", "}\n{").splitlines()
    assert '"object":"list"' in models and DOCS_MODEL in models
    assert '"finish_reason":"tool_calls"' in completion
    assert tool == '{"role":"tool","tool_call_id":"call_abc","content":"hi"}'


async def test_a_completion_in_flight_is_owed_in_the_audit_journal(gateway, provider, tmp_path):
    """Until its answer, a completion's event is written down as begun: a replica killed meanwhile
    still leaves its row (the next process replays it), as for MCP requests."""

    def journal() -> JournalContents:
        return read_segments(sorted((tmp_path / "journal").rglob("*.wal")))

    provider.script = [Held(Reply("at last"))]
    raw = asyncio.create_task(
        _client(gateway).chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    )
    owed = await poll_until(
        lambda: [b for b in journal().begun.values() if b["kind"] == "llm_request"], "a begun llm_request"
    )
    (begun,) = owed
    assert begun["id"] not in journal().emitted and begun["name"] == MODEL
    provider.release.set()
    answer = await raw
    assert answer.headers["x-bastion-request-id"] == begun["id"]
    await poll_until(lambda: begun["id"] in journal().emitted, "its event journaled as emitted")
    (row,) = await _audit(gateway, 1)
    assert (row.event_id, row.status) == (begun["id"], "ok")
