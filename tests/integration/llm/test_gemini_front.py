"""`/v1beta/models/<m>:generateContent` and `:streamGenerateContent`, the Gemini front, driven by the
official `google-genai` SDK pointed at Bastion (`HttpOptions(base_url=...)`, a Bastion key as its API
key): the request is translated to the chat completion on the bus and reaches a fake provider of
another wire (OpenAI's, Anthropic's, Bedrock's) or of Gemini's own; the answer comes back in Gemini's
wire, the key's MCP tools run through Bastion, errors in Google's envelope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from google import genai
from google.genai import errors, types

from tests.support.gateway import ADMIN_KEY, Gateway
from tests.support.llm_gateway import AGENT_KEY, audit_rows_since, llm_config
from tests.support.llm_provider import Broken, Reply, ScriptedProvider
from tests.support.wire_fakes import started_fakes, wires_gateway

pytestmark = [
    pytest.mark.integration,
    # google-genai's async client subclasses aiohttp's session, which aiohttp discourages
    pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning"),
]

WIRES = ("openai", "anthropic", "gemini", "bedrock")
"""The provider wires behind the front in these tests: three of other providers, and Gemini's own."""
NARROW_KEY = "bk_test_gemini_front_narrow_0"
"""A key granted `m-openai` only."""
BODY_LIMIT = 64 * 1024
LOOKUP = types.FunctionDeclaration(
    name="lookup",
    description="Look a word up (the application's own tool: Bastion never runs it)",
    parameters=types.Schema(
        type=types.Type.OBJECT, properties={"word": types.Schema(type=types.Type.STRING)}, required=["word"]
    ),
)


@pytest.fixture(scope="module")
async def shared_gateway(
    tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, ScriptedProvider]
) -> AsyncIterator[Gateway]:
    config = llm_config(fakes["openai"])
    config["keys"].append({"name": "narrow", "key": NARROW_KEY, "tools": ["echo/*"], "models": ["m-openai"]})
    workdir = tmp_path_factory.mktemp("gemini-front")
    async with wires_gateway(workdir, config, fakes, max_body_bytes=BODY_LIMIT) as gw:
        yield gw


_CLIENTS: list[genai.Client] = []
"""The SDK clients the running test made, closed after it."""


@pytest.fixture
async def gateway(shared_gateway: Gateway) -> AsyncIterator[Gateway]:
    try:
        yield shared_gateway
    finally:
        while _CLIENTS:
            await _CLIENTS.pop().aio.aclose()


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[dict[str, ScriptedProvider]]:
    """A fake provider of each of `WIRES`, for the module's gateway."""
    async with started_fakes(WIRES) as started:
        yield started


@pytest.fixture(params=WIRES)
def fake(request: pytest.FixtureRequest, fakes: dict[str, ScriptedProvider]) -> ScriptedProvider:
    """The fake of one of `WIRES`, with a script and a record of requests of this test's own."""
    fakes[request.param].reset()
    return fakes[request.param]


def _root(gateway: Gateway) -> str:
    return gateway.url.removesuffix("/mcp")


def _client(gateway: Gateway, key: str = ADMIN_KEY, version: str | None = "v1beta") -> genai.Client:
    """The SDK as an application points it at Bastion (`version` None: the SDK's default, `v1`)."""
    options = types.HttpOptions(base_url=_root(gateway), api_version=version, timeout=30_000)
    _CLIENTS.append(genai.Client(api_key=key, http_options=options))
    return _CLIENTS[-1]


async def _streamed(chat: Any, message: Any) -> list[types.GenerateContentResponse]:
    return [chunk async for chunk in await chat.send_message_stream(message)]


async def _execute(gateway: Gateway, part: types.Part) -> httpx.Response:
    """Run a proposed MCP call through Bastion, in the form the SDK got it (a `functionCall` part)."""
    body = part.model_dump(mode="json", by_alias=True, exclude_none=True)
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"{_root(gateway)}/v1/mcp/tool/execute", json=body, headers={"x-goog-api-key": ADMIN_KEY}
        )


async def test_a_streamed_tool_conversation_reaches_each_wire(began, gateway, fake):
    fake.script = [
        Reply("Let me echo. ", tool_calls=[("echo__echo", {"text": "hi"})], usage=(100, 20), cached=40),
        Reply("It said hi.", usage=(130, 6)),
    ]
    config = types.GenerateContentConfig(
        system_instruction="Be brief.",
        tools=[types.Tool(function_declarations=[LOOKUP])],
        temperature=0.2,
        max_output_tokens=300,
        stop_sequences=["END"],
    )
    chat = _client(gateway).aio.chats.create(model=f"m-{fake.wire}", config=config)
    chunks = await _streamed(chat, "echo hi")
    assert "".join(chunk.text or "" for chunk in chunks[:-1]) == "Let me echo. "
    last = chunks[-1]
    (call,) = last.function_calls or []
    assert (call.name, call.args) == ("echo__echo", {"text": "hi"})
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    usage = last.usage_metadata
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.cached_content_token_count) == (100, 20, 40)
    # the provider was asked in its own wire, offered the application's tool and the key's MCP tools
    asked = fake.received[0].body
    assert {"lookup", "echo__echo", "echo__add"} <= set(fake.speaker.tool_names(asked))
    assert "Be brief." in orjson.dumps(asked).decode()

    (part,) = [p for p in last.candidates[0].content.parts if p.function_call]
    executed = await _execute(gateway, part)
    assert executed.status_code == 200, executed.text
    result = types.Part.model_validate(executed.json())
    assert (result.function_response.name, result.function_response.response) == ("echo__echo", {"result": "hi"})
    answer = await _streamed(chat, result)
    assert "".join(chunk.text or "" for chunk in answer) == "It said hi."
    # the provider got the tool's result paired with its call (and, Gemini's, its call's signature)
    assert fake.speaker.tool_results(fake.received[1].body) == ["hi"]
    assert fake.refused == []
    rows = await audit_rows_since(gateway, 3, began)
    assert sorted((r.kind, r.status) for r in rows) == [("llm_request", "ok")] * 2 + [("tool_call", "ok")]


async def test_agent_mode_and_the_sdks_default_version(gateway, fakes):
    anthropic = fakes["anthropic"]
    anthropic.reset()
    anthropic.script = [Reply(tool_calls=[("echo__echo", {"text": "hi"})]), Reply("The echo said hi.")]
    client = _client(gateway, AGENT_KEY, version=None)  # `/v1/models/<m>:generateContent`
    response = await client.aio.models.generate_content(model="m-anthropic", contents="echo hi")
    assert response.text == "The echo said hi."
    assert response.function_calls is None
    assert anthropic.speaker.tool_results(anthropic.received[1].body) == ["hi"]
    listed = [model.name async for model in await client.aio.models.list()]
    assert {f"models/m-{wire}" for wire in WIRES} <= set(listed)


async def test_a_key_without_the_model_grant_is_refused_in_googles_shape(began, gateway, fakes):
    fakes["gemini"].reset()
    narrow = _client(gateway, NARROW_KEY)
    with pytest.raises(errors.ClientError) as refused:
        await narrow.aio.models.generate_content(model="m-gemini", contents="hi")
    assert (refused.value.code, refused.value.status) == (403, "PERMISSION_DENIED")
    assert "may not use model 'm-gemini'" in refused.value.message
    assert fakes["gemini"].received == []
    assert [model.name async for model in await narrow.aio.models.list()] == ["models/m-openai"]
    assert (await narrow.aio.models.get(model="m-openai")).name == "models/m-openai"
    with pytest.raises(errors.ClientError) as hidden:
        await narrow.aio.models.get(model="m-gemini")
    assert (hidden.value.code, hidden.value.status) == (404, "NOT_FOUND")
    with pytest.raises(errors.ClientError) as unknown:
        await _client(gateway, "bk_test_not_a_key_at_all_0000").aio.models.generate_content(
            model="m-gemini", contents="hi"
        )
    assert (unknown.value.code, unknown.value.status) == (401, "UNAUTHENTICATED")


async def test_bad_input_gets_a_clear_error_in_googles_envelope(gateway, fakes):
    url = f"{_root(gateway)}/v1beta/models/m-gemini:generateContent"
    fakes["gemini"].reset()
    async with httpx.AsyncClient(timeout=30) as http:
        # the key as Google's API also takes it, in the query
        malformed = await http.post(url, params={"key": ADMIN_KEY}, content=b'{"contents": [')
        oversized = await http.post(
            url, headers={"x-goog-api-key": ADMIN_KEY}, json={"contents": [{"parts": [{"text": "x" * BODY_LIMIT}]}]}
        )
        searching = await http.post(
            url,
            headers={"x-goog-api-key": ADMIN_KEY},
            json={"contents": [{"parts": [{"text": "hi"}]}], "tools": [{"googleSearch": {}}]},
        )
        unpaired = await http.post(
            url,
            headers={"x-goog-api-key": ADMIN_KEY},
            json={"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "x", "response": {}}}]}]},
        )
        no_sse = await http.post(
            url.replace(":generateContent", ":streamGenerateContent"),
            headers={"x-goog-api-key": ADMIN_KEY},
            json={"contents": [{"parts": [{"text": "hi"}]}]},
        )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "not valid JSON" in malformed.json()["error"]["message"]
    assert oversized.status_code == 413 and f"({BODY_LIMIT} bytes)" in oversized.json()["error"]["message"]
    assert (searching.status_code, searching.json()["error"]["code"]) == (400, 400)
    assert "server tools (googleSearch)" in searching.json()["error"]["message"]
    assert "no functionCall named 'x'" in unpaired.json()["error"]["message"]
    assert no_sse.status_code == 400 and "alt=sse" in no_sse.json()["error"]["message"]
    assert fakes["gemini"].received == []


async def test_count_tokens_is_an_estimate_made_without_a_provider(gateway, fakes):
    fakes["gemini"].reset()
    counted = await _client(gateway).aio.models.count_tokens(model="m-gemini", contents="a" * 400)
    assert 90 <= (counted.total_tokens or 0) <= 120
    assert fakes["gemini"].received == []


async def test_a_provider_failing_midway_ends_the_stream_with_an_error_the_sdk_raises(gateway, fakes):
    openai_wire = fakes["openai"]
    openai_wire.reset()
    openai_wire.script = [Broken("Hel")]
    stream = await _client(gateway).aio.models.generate_content_stream(model="m-openai", contents="hi")
    text = []
    with pytest.raises(errors.APIError) as broken:
        async for chunk in stream:
            text.append(chunk.text or "")
    assert "".join(text) == "Hel" and broken.value.code == 502
