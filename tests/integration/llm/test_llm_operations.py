"""Operating the LLM side: providers and agent keys changed at run time through the admin API, the
docs' examples run as written, and the audit journal owing a completion in flight."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest

from libs.common.audit.audit_journal import JournalContents, read_segments
from libs.common.bus.nats import connect, kv_bucket
from libs.common.contracts import subjects
from libs.common.runtime.sealing import new_key
from tests.support.debian import debian_binary
from tests.support.executor_away import answered_by_a_new_executor, counted
from tests.support.gateway import ADMIN_KEY, Gateway, default_config, running_gateway
from tests.support.llm_gateway import (
    AGENT_KEY,
    DOCS_MODEL,
    MODEL,
    PROVIDER_KEY,
    RUNTIME_KEY,
    audit_rows_since,
    closing_clients,
    llm_config,
    sdk_client,
)
from tests.support.llm_provider import Held, Reply, ScriptedProvider, conversation_problem
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway_of_its_own(
    nats_url: str, redis_url: str, tmp_path: Path, provider: ScriptedProvider, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Gateway]:
    """A gateway with the admin API for a test that changes the providers. No stdio server: no tool is called on
    it. While the module's gateway runs, this one's audit store does not open (the embedded ClickHouse
    is the process's, at the other one's path): no test on it reads audit rows."""
    monkeypatch.setenv("BASTION_TEST_PROVIDER_KEY", PROVIDER_KEY)
    config = {**llm_config(provider), "mcpServers": {}}
    settings: dict[str, Any] = {"secrets_key": new_key(), "audit_journal_dir": str(tmp_path / "journal")}
    async with running_gateway(nats_url, redis_url, tmp_path, config, admin=True, **settings) as gw:
        await poll_until(lambda: MODEL in gw.ingress.models.models, "the provider in the ingress view")
        async with closing_clients(gw):
            yield gw


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


async def test_providers_are_added_changed_and_removed_at_run_time(gateway_of_its_own, second_provider):
    config = {"base_url": second_provider.base_url, "api_key": RUNTIME_KEY, "models": ["gpt-runtime"]}
    client = sdk_client(gateway_of_its_own)
    async with httpx.AsyncClient(
        base_url=gateway_of_its_own.admin_api, headers=gateway_of_its_own.admin_headers, timeout=30
    ) as admin:
        created = await admin.post("/llm-providers", json={"name": "runtime", "config": config})
        assert created.status_code == 201, created.text
        assert created.json()["config"]["api_key"] == "***"
        listed = await admin.get("/llm-providers")
        assert [p["name"] for p in listed.json()] == ["down", "runtime", "scripted", "slow"]
        assert RUNTIME_KEY not in listed.text and RUNTIME_KEY not in (await admin.get("/llm-providers/runtime")).text
        clash = await admin.post("/llm-providers", json={"name": "again", "config": {**config, "models": [MODEL]}})
        assert clash.status_code == 409 and "'scripted' already serves 'gpt-test'" in clash.text

        nc = await connect(gateway_of_its_own.nats_url, "test-kv")
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
            lambda: "gpt-runtime-2" not in gateway_of_its_own.ingress.models.models,
            "the provider gone from the ingress view",
        )
        assert "gpt-runtime-2" not in provider_models(await client.models.list())
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="gpt-runtime-2", messages=[{"role": "user", "content": "hi"}])
    assert len(second_provider.received) == 2


def provider_models(page: Any) -> set[str]:
    return {model.id for model in page.data}


async def test_a_key_created_through_the_admin_api_can_be_an_agent(gateway, provider):
    body = {"name": "made-agent", "grants": ["echo/*"], "agent": {"tools_to_auto_execute": ["echo__echo"]}}
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=30) as admin:
        created = await admin.post("/keys", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["key"]["agent"] == {"tools_to_auto_execute": ["echo__echo"], "max_depth": 10}
        secret, key_id = created.json()["secret"], created.json()["key"]["id"]
        await poll_until(lambda: gateway.ingress.keys.record(key_id) is not None, "the new key at ingress")
        provider.script = [Reply(tool_calls=[("echo__echo", {"text": "auto"})]), Reply("done")]
        completion = await sdk_client(gateway, secret).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "echo"}]
        )
        assert completion.model_extra["bastion"]["depth"] == 2
        assert completion.model_extra["bastion"]["transcript"][1]["content"] == "auto"

        cleared = await admin.patch(f"/keys/{key_id}", json={"agent": None})
        assert cleared.status_code == 200 and cleared.json()["agent"] is None


DOCS = Path(__file__).resolve().parents[3] / "docs" / "llm.md"


def _docs_blocks(language: str, gateway: Gateway, key: str = ADMIN_KEY) -> list[str]:
    """docs/llm.md's code blocks in `language`, pointed at the test gateway instead of `./run up`."""
    base = gateway.url.removesuffix("/mcp")
    blocks = re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S)
    return [b.replace("http://127.0.0.1:8420", base).replace("bk_demo_local_only_change_me_0000", key) for b in blocks]


async def test_the_docs_sdk_examples_run_as_written(gateway, provider, capsys):
    explicit, streaming, agent, streamed_agent = _docs_blocks("python", gateway)
    namespace: dict[str, Any] = {}
    provider.script = [
        Reply(tool_calls=[("notes__add_note", {"title": "hello", "text": "hello"})]),
        Reply("Hello there!"),
        Reply(tool_calls=[("echo__echo", {"text": "hi"})]),
        Reply("It said hi."),
        Reply("Both. ", tool_calls=[("echo__echo", {"text": "ran"}), ("echo__add", {"a": 1, "b": 2})]),
        Reply("Streaming. ", tool_calls=[("echo__echo", {"text": "again"})]),
        Reply("Streamed."),
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
        assert namespace["loop"]["depth"] == 2
        assert [m["role"] for m in namespace["messages"]] == ["user", "assistant", "tool", "assistant"]
        assert namespace["messages"][-1]["content"] == "It said hi."
        # a mixed round (one call run, one pending): the same lines leave a conversation to send back
        await asyncio.to_thread(exec, agent, namespace)
        assert namespace["loop"]["stopped"] == "pending_tool_calls"
        assert conversation_problem(namespace["messages"]) is None
        await asyncio.to_thread(exec, streamed_agent, namespace)  # continues it, streaming
    finally:
        namespace["client"].close()
    assert provider.refused == [] and not provider.script
    assert namespace["message"].role == "assistant" and namespace["message"].content == "Streaming. Streamed."
    assert conversation_problem(namespace["messages"]) is None


async def test_the_docs_curl_examples_run_as_written(gateway, provider):
    debian_binary("curl")  # the docs' examples call it by name
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


async def test_a_completion_that_finds_no_executor_is_relayed_to_the_one_that_takes_its_place(
    gateway_of_its_own, provider
):
    """The executor is away (stopped here; leaving a NATS member that stopped answering, in
    `docs/reliability.md`): policy relays the completion again until one takes its place
    (`libs.common.bus.rejoin`), instead of answering "no executor service is running"; it is asked once."""
    gw = gateway_of_its_own
    client = sdk_client(gw)
    provider.script = [Reply("before"), Reply("after")]
    hi: Any = [{"role": "user", "content": "hi"}]
    assert (await client.chat.completions.create(model=MODEL, messages=hi)).choices[0].message.content == "before"
    answer = await answered_by_a_new_executor(
        gw,
        lambda: client.chat.completions.create(model=MODEL, messages=hi),
        lambda: counted("bastion_policy_completions_sent_again"),
    )
    assert answer.choices[0].message.content == "after"
    assert len(provider.received) == 2


async def test_a_completion_in_flight_is_owed_in_the_audit_journal(gateway, provider, journal_dir):
    """Until its answer, a completion's event is written down as begun: a replica killed meanwhile
    still leaves its row (the next process replays it, naming the API it came in through), as for MCP
    requests."""
    began = time.time()  # the journal and the audit store hold the earlier tests' requests too

    def journal() -> JournalContents:
        return read_segments(sorted(journal_dir.rglob("*.wal")))

    provider.script = [Held(Reply("at last"))]
    raw = asyncio.create_task(
        sdk_client(gateway).chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    )
    owed = await poll_until(
        lambda: [b for b in journal().begun.values() if b["kind"] == "llm_request" and cast(float, b["ts"]) >= began],
        "a begun llm_request",
    )
    (begun,) = owed
    assert begun["id"] not in journal().emitted and begun["name"] == MODEL
    (rebuilt,) = [e for e in journal().owed() if e.event_id == begun["id"]]  # what a replay would publish
    assert rebuilt.llm_front == "chat_completions"
    provider.release.set()
    answer = await raw
    assert answer.headers["x-bastion-request-id"] == begun["id"]
    await poll_until(lambda: begun["id"] in journal().emitted, "its event journaled as emitted")
    (row,) = await audit_rows_since(gateway, 1, began)
    assert (row.event_id, row.status) == (begun["id"], "ok")


async def test_without_a_provider_the_models_list_and_the_docs_first_example_say_how_to_add_one(
    nats_url, redis_url, tmp_path
):
    """A new user's first call (the example config has no `llm:` section): the empty list and the
    404 both say what to configure, in the shapes OpenAI clients parse."""
    namespace: dict[str, Any] = {}
    # no tool is called, so no stdio server; nor is an audit row read, so the module's gateway holding
    # the process's embedded ClickHouse (this one's audit store then does not open) changes nothing here
    config = {**default_config(), "mcpServers": {}}
    async with running_gateway(nats_url, redis_url, tmp_path, config) as gw:
        base = gw.url.removesuffix("/mcp")
        async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=ADMIN_KEY, max_retries=0) as client:
            models = await client.models.list()
        hint = (models.model_extra or {})["bastion"]["hint"]
        assert models.data == [] and "llm:" in hint
        assert hint.endswith(").") and not hint.endswith("..")  # one full stop, not two
        try:
            with pytest.raises(openai.NotFoundError) as missing:
                await asyncio.to_thread(exec, _docs_blocks("python", gw)[0], namespace)
        finally:
            namespace["client"].close()
    assert missing.value.body["code"] == "model_not_found"
    message = missing.value.message
    assert "'gpt-4.1-mini'" in message and "No LLM provider is configured" in message
    assert "llm:" in message and "/admin/v1/llm-providers" in message and "docs/llm.md" in message
