"""The fake providers speak what the real ones speak: each provider's own SDK (`anthropic`,
`google-genai`, `boto3`, `openai` for Azure) is pointed at its fake and must send requests the fake
accepts (its schema, its conversation rules, its credentials: Bedrock's SigV4 signature recomputed)
and parse every answer into its own types: completions, streams, tool calls, usage, errors, overloads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anthropic
import boto3
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as gtypes
from google.oauth2.credentials import Credentials as GoogleCredentials

from tests.support.llm_provider import Broken, Fail, Overload, Reply, ScriptedProvider, scripted_provider
from tests.support.provider_wires.bedrock import ACCESS_KEY, REGION, SECRET_KEY
from tests.support.provider_wires.openai import AZURE_VERSION

pytestmark = [
    pytest.mark.integration,
    # google-genai's async client subclasses aiohttp's session, which aiohttp discourages
    pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning"),
]

KEY = "provider-key-of-the-sdk-tests-000"
WEATHER = {"name": "weather", "description": "The weather in a city", "input_schema": {"type": "object"}}


@pytest.fixture
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[ScriptedProvider]:
    async with scripted_provider(request.param, None if request.param == "bedrock" else KEY) as provider:
        yield provider


def _root(fake: ScriptedProvider) -> str:
    return f"http://127.0.0.1:{fake.port}"


@pytest.mark.parametrize("fake", ["anthropic"], indirect=True)
async def test_the_anthropic_sdk_reads_the_anthropic_fake(fake: ScriptedProvider) -> None:
    client = anthropic.AsyncAnthropic(base_url=_root(fake), api_key=KEY, max_retries=0)
    fake.script = [
        Reply(text="Let me look.", tool_calls=[("weather", {"city": "Paris"})], usage=(30, 7), cached=20),
        Reply(text="Sunny in Paris.", usage=(50, 4)),
        Overload(),
        Fail(429, "slow down", retry_after=7),
    ]
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    first = await client.messages.create(model="claude-x", max_tokens=100, messages=ask, tools=[WEATHER])
    (text, use) = first.content
    assert (first.stop_reason, text.type, use.type, use.input) == ("tool_use", "text", "tool_use", {"city": "Paris"})
    assert (first.usage.input_tokens, first.usage.cache_read_input_tokens, first.usage.output_tokens) == (10, 20, 7)
    answer = [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]
    conversation = [*ask, {"role": "assistant", "content": first.content}, {"role": "user", "content": answer}]
    async with client.messages.stream(model="claude-x", max_tokens=100, messages=conversation, tools=[WEATHER]) as s:
        final = await s.get_final_message()
    assert (final.content[0].text, final.stop_reason, final.usage.output_tokens) == ("Sunny in Paris.", "end_turn", 4)
    with pytest.raises(anthropic.OverloadedError):
        await client.messages.create(model="claude-x", max_tokens=100, messages=ask)
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(model="claude-x", max_tokens=100, messages=ask)
    assert limited.value.response.headers["retry-after"] == "7"
    assert fake.refused == []
    await client.close()


@pytest.mark.parametrize("fake", ["anthropic"], indirect=True)
async def test_the_anthropic_fake_refuses_what_anthropic_refuses(fake: ScriptedProvider) -> None:
    client = anthropic.AsyncAnthropic(base_url=_root(fake), api_key=KEY, max_retries=0)
    unanswered = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}]},
        {"role": "user", "content": "and?"},
    ]
    with pytest.raises(anthropic.BadRequestError, match="tool_use"):
        await client.messages.create(model="claude-x", max_tokens=10, messages=unanswered)
    with pytest.raises(anthropic.AuthenticationError):
        await anthropic.AsyncAnthropic(base_url=_root(fake), api_key="wrong", max_retries=0).messages.create(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    await client.close()


def _genai(fake: ScriptedProvider) -> genai.Client:
    options = gtypes.HttpOptions(base_url=_root(fake))
    if fake.wire == "vertex":
        token = GoogleCredentials(token=KEY)
        return genai.Client(
            vertexai=True, project="fake-project", location="europe-west4", credentials=token, http_options=options
        )
    return genai.Client(api_key=KEY, http_options=options)


@pytest.mark.parametrize("fake", ["gemini", "vertex"], indirect=True)
async def test_the_genai_sdk_reads_the_gemini_fakes(fake: ScriptedProvider) -> None:
    client = _genai(fake).aio
    fake.script = [
        Reply(tool_calls=[("weather", {"city": "Paris"})], usage=(30, 9), cached=12, reasoning=4),
        Reply(text="Sunny in Paris.", usage=(50, 4)),
        Overload(),
        Broken("Sun"),
    ]
    declaration = gtypes.FunctionDeclaration(name="weather", description="d", parameters_json_schema={"type": "object"})
    config = gtypes.GenerateContentConfig(tools=[gtypes.Tool(function_declarations=[declaration])])
    ask = gtypes.Content(role="user", parts=[gtypes.Part(text="Weather in Paris?")])
    first = await client.models.generate_content(model="gemini-x", contents=[ask], config=config)
    (call,) = first.function_calls or []
    usage = first.usage_metadata
    assert (call.name, call.args, first.candidates[0].finish_reason) == ("weather", {"city": "Paris"}, "STOP")
    assert usage is not None and (usage.cached_content_token_count, usage.thoughts_token_count) == (12, 4)
    reply = gtypes.Part.from_function_response(name="weather", response={"result": "sunny"})
    conversation = [ask, first.candidates[0].content, gtypes.Content(role="user", parts=[reply])]
    streamed = [
        r
        async for r in await client.models.generate_content_stream(
            model="gemini-x", contents=conversation, config=config
        )
    ]
    assert "".join(r.text or "" for r in streamed) == "Sunny in Paris."
    with pytest.raises(genai_errors.ServerError) as overloaded:
        await client.models.generate_content(model="gemini-x", contents=[ask])
    assert overloaded.value.code == 503
    with pytest.raises(genai_errors.APIError):
        _ = [r async for r in await client.models.generate_content_stream(model="gemini-x", contents=[ask])]
    assert fake.refused == []


@pytest.mark.parametrize("fake", ["gemini"], indirect=True)
async def test_the_gemini_fake_wants_its_thought_signature_back(fake: ScriptedProvider) -> None:
    client = _genai(fake).aio
    fake.script = [Reply(tool_calls=[("weather", {"city": "Paris"})])]
    ask = gtypes.Content(role="user", parts=[gtypes.Part(text="Weather?")])
    first = await client.models.generate_content(model="gemini-x", contents=[ask])
    unsigned = gtypes.Content(role="model", parts=[gtypes.Part(function_call=first.function_calls[0])])
    reply = gtypes.Content(role="user", parts=[gtypes.Part.from_function_response(name="weather", response={})])
    with pytest.raises(genai_errors.ClientError, match="thought_signature"):
        await client.models.generate_content(model="gemini-x", contents=[ask, unsigned, reply])


def _bedrock(fake: ScriptedProvider, secret: str = SECRET_KEY):  # type: ignore[no-untyped-def]
    return boto3.client(
        "bedrock-runtime",
        region_name=REGION,
        endpoint_url=_root(fake),
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.mark.parametrize("fake", ["bedrock"], indirect=True)
async def test_boto3_reads_the_bedrock_fake_which_checks_its_sigv4_signature(fake: ScriptedProvider) -> None:
    client = _bedrock(fake)
    fake.script = [
        Reply(text="Let me look.", tool_calls=[("weather", {"city": "Paris"})], usage=(30, 7), cached=10),
        Reply(text="Sunny in Paris.", usage=(50, 4)),
        Overload(),
        Broken("Sun"),
    ]
    tools = {"tools": [{"toolSpec": {"name": "weather", "inputSchema": {"json": {"type": "object"}}}}]}
    ask = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
    model = "anthropic.claude-x-v1:0"
    first = await asyncio.to_thread(client.converse, modelId=model, messages=ask, toolConfig=tools)
    text, use = first["output"]["message"]["content"]
    assert (first["stopReason"], text["text"], use["toolUse"]["input"]) == (
        "tool_use",
        "Let me look.",
        {"city": "Paris"},
    )
    assert (first["usage"]["inputTokens"], first["usage"]["cacheReadInputTokens"]) == (20, 10)
    result = {"toolResult": {"toolUseId": use["toolUse"]["toolUseId"], "content": [{"text": "sunny"}]}}
    conversation = [*ask, first["output"]["message"], {"role": "user", "content": [result]}]

    def streamed() -> list[dict]:  # type: ignore[type-arg]
        answer = client.converse_stream(modelId=model, messages=conversation, toolConfig=tools)
        return list(answer["stream"])

    events = await asyncio.to_thread(streamed)
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert (text, events[-2]["messageStop"]["stopReason"], events[-1]["metadata"]["usage"]["outputTokens"]) == (
        "Sunny in Paris.",
        "end_turn",
        4,
    )
    with pytest.raises(ClientError) as overloaded:
        await asyncio.to_thread(client.converse, modelId=model, messages=ask)
    assert overloaded.value.response["Error"]["Code"] == "ServiceUnavailableException"
    with pytest.raises(EventStreamError, match="serviceUnavailableException"):
        await asyncio.to_thread(lambda: list(client.converse_stream(modelId=model, messages=ask)["stream"]))
    assert fake.refused == []
    with pytest.raises(ClientError, match="signature"):
        await asyncio.to_thread(_bedrock(fake, "not-the-secret").converse, modelId=model, messages=ask)


@pytest.mark.parametrize("fake", ["azure"], indirect=True)
async def test_the_azure_openai_client_reads_the_azure_fake(fake: ScriptedProvider) -> None:
    client = openai.AsyncAzureOpenAI(azure_endpoint=_root(fake), api_key=KEY, api_version=AZURE_VERSION, max_retries=0)
    fake.script = [Reply(text="hello", usage=(9, 1))]
    done = await client.chat.completions.create(model="my-deployment", messages=[{"role": "user", "content": "hi"}])
    assert (done.choices[0].message.content, fake.received[0].path.split("?")[0]) == (
        "hello",
        "/openai/deployments/my-deployment/chat/completions",
    )
    assert fake.received[0].headers["api-key"] == KEY
    await client.close()
