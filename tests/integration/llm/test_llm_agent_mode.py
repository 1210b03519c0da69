"""Agent mode and Code Mode on `/v1`: Bastion runs the allow-listed calls (or the Code Mode meta-tools
through the codemode service), feeds results back, and audits each round as the parent of its calls."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.codemode import META_TOOL_NAMES
from libs.common.contracts.messages import AuditEvent, AuditQuery, AuditRows
from libs.common.settings import CodeModeSettings
from tests.support.gateway import Gateway
from tests.support.llm_gateway import (
    AGENT_KEY,
    CODE_AGENT_KEY,
    CODER_KEY,
    MODEL,
    SHALLOW_KEY,
    StackShape,
    accumulated,
    audit_rows_since,
    sdk_client,
    tool_names,
)
from tests.support.llm_provider import Reply
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


STACK = StackShape(admin=False, notes=False, codemode=CodeModeSettings(sandbox_workers=1, sandbox_wall_seconds=20))
"""conftest's gateway with the codemode service and without the admin API (no test here uses it): the
tests here only complete, run echo's tools and Code Mode scripts, each Code Mode key serves one test,
and no test calls the notes server, so it has none."""


@pytest.fixture
def code_gateway(gateway: Gateway) -> Gateway:
    """The Code Mode tests' name for it: it runs the codemode service."""
    return gateway


async def test_agent_mode_runs_allowed_calls_concurrently_and_loops_until_the_model_stops(began, gateway, provider):
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": "a"}), ("echo__echo", {"text": "b"})]), Reply("done")]
    completion = await sdk_client(gateway, AGENT_KEY).chat.completions.create(
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
    rows = await audit_rows_since(gateway, 4, began)
    llm = sorted((r for r in rows if r.kind == "llm_request"), key=lambda r: r.ts)
    tools = [r for r in rows if r.kind == "tool_call"]
    assert len(llm) == 2 and len(tools) == 2
    assert {t.parent_id for t in tools} == {llm[0].event_id}


async def test_agent_mode_returns_calls_it_may_not_run_as_pending(began, gateway, provider):
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": "ran"}), ("echo__add", {"a": 1, "b": 2})])]
    completion = await sdk_client(gateway, AGENT_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "both"}]
    )
    (pending,) = completion.choices[0].message.tool_calls
    assert pending.function.name == "echo__add"
    summary = completion.model_extra["bastion"]
    assert summary["stopped"] == "pending_tool_calls"
    assert [m.get("content") for m in summary["transcript"][1:]] == ["ran"]
    assert len(provider.received) == 1
    rows = await audit_rows_since(gateway, 2, began)
    assert [r.name for r in rows if r.kind == "tool_call"] == ["echo__echo"]  # echo__add never ran


async def test_agent_mode_stops_at_its_depth_and_says_so(began, gateway, provider):
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": str(i)})]) for i in range(3)]
    completion = await sdk_client(gateway, SHALLOW_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "loop"}]
    )
    summary = completion.model_extra["bastion"]
    assert (summary["depth"], summary["stopped"]) == (2, "max_depth")
    assert completion.choices[0].message.tool_calls[0].function.arguments == '{"text":"1"}'
    assert len(provider.received) == 2
    rows = await audit_rows_since(gateway, 3, began)
    assert len([r for r in rows if r.kind == "tool_call"]) == 1


async def test_agent_mode_streams_text_across_rounds(gateway, provider):
    provider.script = [Reply("Checking. ", tool_calls=[("echo__echo", {"text": "x"})]), Reply("Done.")]
    stream = await sdk_client(gateway, AGENT_KEY).chat.completions.create(
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


async def test_every_stream_opens_with_the_assistant_role_once_and_its_message_can_be_sent_back(gateway, provider):
    """The SDK's accumulator takes the role from the deltas: without it the message it builds has
    none (and a strict provider refuses it sent back); sent twice it would read "assistantassistant"."""
    provider.script = [
        Reply("Checking. ", tool_calls=[("echo__echo", {"text": "x"})]),  # agent: text, a call run, then
        Reply("Done."),  # more text from a second round
        Reply(tool_calls=[("echo__add", {"a": 1, "b": 2})]),  # agent: no text at all, one pending call
        Reply("Plain."),  # explicit mode
        Reply("Thanks."),  # the continued conversation
    ]
    agent, explicit = sdk_client(gateway, AGENT_KEY), sdk_client(gateway)
    user = {"role": "user", "content": "go"}
    texts, pending, plain = [
        await accumulated(await client.chat.completions.create(model=MODEL, messages=[user], stream=True))
        for client in (agent, agent, explicit)
    ]
    for chunks, message, _ in (texts, pending, plain):
        assert chunks[0].choices[0].delta.role == "assistant"
        assert message.role == "assistant"
    assert texts[1].content == "Checking. Done."
    assert [call.function.name for call in pending[1].tool_calls or []] == ["echo__add"]

    _, message, summary = texts
    assert summary is not None
    messages = [user, *summary["transcript"], message.model_dump(exclude_none=True), {"role": "user", "content": "ok"}]
    again = await agent.chat.completions.create(model=MODEL, messages=messages)
    assert again.choices[0].message.content == "Thanks."
    assert provider.refused == []
    assert provider.received[-1].body["messages"][3] == {"role": "assistant", "content": "Checking. Done."}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_an_agent_answer_after_a_mixed_round_continues_as_sent(gateway, provider, stream):
    """One call run, one returned pending: what the application got (transcript, then the answer's
    message) plus its own result for the pending call is a conversation a strict provider accepts,
    each call answered once, in the order proposed."""
    provider.script = [
        Reply("Both. ", tool_calls=[("echo__echo", {"text": "ran"}), ("echo__add", {"a": 1, "b": 2})]),
        Reply("All done."),
    ]
    client = sdk_client(gateway, AGENT_KEY)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "both"}]
    if stream:
        _, message, summary = await accumulated(
            await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
        )
    else:
        completion = await client.chat.completions.create(model=MODEL, messages=messages)
        message, summary = completion.choices[0].message, completion.model_extra["bastion"]
    assert summary is not None and summary["stopped"] == "pending_tool_calls"
    (pending,) = message.tool_calls or []
    assert pending.function.name == "echo__add"
    messages += [*summary["transcript"], message.model_dump(exclude_none=True)]
    messages.append(await client.post("/mcp/tool/execute", body=pending.model_dump(), cast_to=object))

    final = await client.chat.completions.create(model=MODEL, messages=messages)
    assert final.choices[0].message.content == "All done."
    assert provider.refused == []
    sent = provider.received[-1].body["messages"]
    proposed = [c["id"] for m in sent if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    answered = [m["tool_call_id"] for m in sent if m["role"] == "tool"]
    names = [c["function"]["name"] for m in sent if m["role"] == "assistant" for c in m.get("tool_calls") or []]
    assert proposed == answered and len(set(proposed)) == 2 and names == ["echo__echo", "echo__add"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "tool"]
    assert [m["content"] for m in sent if m["role"] == "tool"] == ["ran", "3"]
    assert "".join(m.get("content") or "" for m in sent if m["role"] == "assistant") == "Both. "  # said once


async def test_agent_mode_gives_repeated_or_missing_call_ids_ids_of_their_own(began, gateway, provider):
    """A provider numbering its calls per answer (`call_0` every round) or leaving ids out would make
    the conversation Bastion sends back repeat an id, which strict providers refuse."""
    provider.script = [
        Reply(tool_calls=[("echo__echo", {"text": "a"})], ids=("call_0",)),
        Reply(tool_calls=[("echo__echo", {"text": "b"})], ids=("call_0",)),
        Reply(tool_calls=[("echo__echo", {"text": "c"}), ("echo__add", {"a": 1, "b": 2})], ids=("", "")),
        Reply("done"),
    ]
    client = sdk_client(gateway, AGENT_KEY)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "echo thrice"}]
    completion = await client.chat.completions.create(model=MODEL, messages=messages)
    summary = completion.model_extra["bastion"]
    assert (summary["depth"], summary["stopped"]) == (3, "pending_tool_calls")
    (pending,) = completion.choices[0].message.tool_calls
    messages += [*summary["transcript"], completion.choices[0].message.model_dump(exclude_none=True)]
    messages.append(await client.post("/mcp/tool/execute", body=pending.model_dump(), cast_to=object))
    final = await client.chat.completions.create(model=MODEL, messages=messages)
    assert final.choices[0].message.content == "done" and provider.refused == []
    ids = [c["id"] for m in provider.received[-1].body["messages"] for c in m.get("tool_calls") or []]
    assert len(ids) == len(set(ids)) == 4 and "" not in ids
    rows = await audit_rows_since(gateway, 8, began)
    rounds = {r.event_id for r in rows if r.kind == "llm_request"}
    assert all(r.parent_id in rounds for r in rows if r.kind == "tool_call")  # the renamed ids still link up


SCRIPT = 'print(echo.echo(text="from a script"))\n'


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
    raw = await sdk_client(code_gateway, CODER_KEY).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "echo from a script"}]
    )
    completion, parent = raw.parse(), raw.headers["x-bastion-request-id"]
    assert set(tool_names(provider.received[0].body)) == META_TOOL_NAMES  # the meta-tools, not the catalog
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "execute_code"  # explicit mode: proposed, not run

    answer = await sdk_client(code_gateway, CODER_KEY).post("/mcp/tool/execute", body=call.model_dump(), cast_to=object)
    assert answer["role"] == "tool" and answer["tool_call_id"] == call.id
    assert answer["content"].splitlines()[0] == "from a script"  # the script ran in the sandbox

    (llm,), (run,), (echo,) = await _audit_chain(code_gateway, "coder", 1)
    assert llm.event_id == parent and llm.tool_calls == ["execute_code"]
    assert (run.name, run.status, run.parent_id) == ("execute_code", "ok", parent)
    assert (echo.name, echo.status, echo.parent_id) == ("echo__echo", "ok", run.event_id)

    # the same header as on /mcp switches Code Mode off for one request: the key's MCP tools come back
    await sdk_client(code_gateway, CODER_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Bastion-Code-Mode": "off"}
    )
    plain = set(tool_names(provider.received[1].body))
    assert {"echo__echo", "echo__add"} <= plain and not plain & META_TOOL_NAMES


async def test_agent_mode_runs_code_mode_calls_through_codemode_while_streaming(code_gateway, provider):
    provider.script = [Reply("Running it. ", tool_calls=[("execute_code", {"code": SCRIPT})]), Reply("It said so.")]
    stream = await sdk_client(code_gateway, CODE_AGENT_KEY).chat.completions.create(
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
