"""Upstream MCP server implementing the fixtures of the official MCP conformance suite.

The suite (`npx @modelcontextprotocol/conformance server --url ...`) calls tools, resources and
prompts by fixed names (`test_simple_text`, `test://static-text`, `test_simple_prompt`, ...); each
scenario's description (`conformance list` + the bundle) spells out what it expects. This server
implements all of them with the official Python SDK (`mcp` 2.x, `MCPServer`), so it can be tested
directly and as the only upstream behind Bastion.

    python tests/conformance/fixture_server.py --port 3001     # http://127.0.0.1:3001/mcp
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.types import (
    AudioContent,
    Completion,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    SamplingMessage,
    SetLevelRequestParams,
    TextContent,
    TextResourceContents,
)
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "servers"))
from _runner import keep_subscriptions  # the example servers' shared helpers

PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_EMPTY = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

mcp = MCPServer(name="mcp-conformance-fixture", version="1.0.0")


class MemoryEventStore(EventStore):
    """Keeps every SSE event so a client can resume with Last-Event-ID (server-sse-polling, SEP-1699)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []

    async def store_event(self, stream_id, message):  # type: ignore[override]
        event_id = str(len(self.events) + 1)
        self.events.append((stream_id, event_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback: EventCallback):  # type: ignore[override]
        stream = next((s for s, e, _ in self.events if e == last_event_id), None)
        if stream is None:
            return None
        for s, e, message in self.events:
            if s == stream and int(e) > int(last_event_id) and message is not None:
                await send_callback(EventMessage(message, e))
        return stream


# --- tools ---------------------------------------------------------------------------------------
@mcp.tool()
def test_simple_text() -> str:
    """Returns simple text content."""
    return "This is a simple text response for testing."


@mcp.tool()
def test_image_content() -> list[ImageContent]:
    """Returns image content."""
    return [ImageContent(type="image", data=PNG_1X1, mime_type="image/png")]


@mcp.tool()
def test_audio_content() -> list[AudioContent]:
    """Returns audio content."""
    return [AudioContent(type="audio", data=WAV_EMPTY, mime_type="audio/wav")]


@mcp.tool()
def test_embedded_resource() -> list[EmbeddedResource]:
    """Returns an embedded resource."""
    res = TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return [EmbeddedResource(type="resource", resource=res)]


@mcp.tool()
def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
    """Returns text, image and resource content."""
    res = TextResourceContents(
        uri="test://mixed-content-resource", mime_type="application/json", text='{"test":"data","value":123}'
    )
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=PNG_1X1, mime_type="image/png"),
        EmbeddedResource(type="resource", resource=res),
    ]


@mcp.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three info log notifications while it runs."""
    await ctx.info("Tool execution started")
    await asyncio.sleep(0.05)
    await ctx.info("Tool processing data")
    await asyncio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@mcp.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0/100, 50/100, 100/100."""
    for step in (0, 50, 100):
        await ctx.report_progress(progress=step, total=100, message=f"Completed step {step} of 100")
        if step < 100:
            await asyncio.sleep(0.05)
    return "Tool with progress executed successfully"


@mcp.tool()
def test_error_handling() -> str:
    """Always fails (isError: true)."""
    raise RuntimeError("This tool intentionally returns an error for testing")


@mcp.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Asks the client for an LLM completion (sampling/createMessage)."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=100,
        related_request_id=ctx.request_id,
    )
    text = result.content.text if getattr(result.content, "type", None) == "text" else "No response"
    return f"LLM response: {text}"


class UserInfo(BaseModel):
    username: str = Field(description="User's response")
    email: str = Field(description="User's email address")


@mcp.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    """Asks the client for user input (elicitation/create)."""
    result = await ctx.elicit(message=message, schema=UserInfo)
    content = result.data.model_dump_json() if result.action == "accept" else "{}"
    return f"User response: action={result.action}, content={content}"


class Defaults(BaseModel):
    """SEP-1034: a default for every primitive type."""

    name: str = Field(default="John Doe", description="User name")
    age: int = Field(default=30, description="User age")
    score: float = Field(default=95.5, description="User score")
    status: str = Field(
        default="active", description="User status", json_schema_extra={"enum": ["active", "inactive", "pending"]}
    )
    verified: bool = Field(default=True, description="Verification status")


@mcp.tool()
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Elicitation whose schema has defaults (SEP-1034)."""
    result = await ctx.elicit(message="Please provide user information", schema=Defaults)
    content = result.data.model_dump_json() if result.action == "accept" else "{}"
    return f"Elicitation completed: action={result.action}, content={content}"


def _titled(kind: str, labels: list[str]) -> list[dict[str, str]]:
    return [{"const": f"value{i}", "title": f"{label} {kind}"} for i, label in enumerate(labels, 1)]


class Enums(BaseModel):
    """SEP-1330: the five enum variants."""

    untitledSingle: str = Field(
        description="Untitled single-select", json_schema_extra={"enum": ["option1", "option2", "option3"]}
    )
    titledSingle: str = Field(
        description="Titled single-select", json_schema_extra={"oneOf": _titled("Option", ["First", "Second", "Third"])}
    )
    legacyEnum: str = Field(
        description="Legacy titled enum",
        json_schema_extra={"enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
    )
    untitledMulti: list[str] = Field(
        description="Untitled multi-select",
        json_schema_extra={"items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
    )
    titledMulti: list[str] = Field(
        description="Titled multi-select",
        json_schema_extra={"items": {"anyOf": _titled("Choice", ["First", "Second", "Third"])}},
    )


@mcp.tool()
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Elicitation with every enum schema variant (SEP-1330)."""
    result = await ctx.elicit(message="Please select options", schema=Enums)
    content = result.data.model_dump_json() if result.action == "accept" else "{}"
    return f"Elicitation completed: action={result.action}, content={content}"


@mcp.tool()
async def test_reconnection(ctx: Context) -> str:
    """Closes its SSE stream mid-call; the client resumes with Last-Event-ID (SEP-1699)."""
    await ctx.info("Before disconnect")
    await ctx.close_sse_stream()
    await asyncio.sleep(0.2)
    await ctx.info("After reconnect")
    return "Reconnection test completed"


@mcp.tool()
def json_schema_2020_12_tool(name: str = "", address: dict | None = None) -> str:
    """Tool with JSON Schema 2020-12 features"""
    return f"name={name} address={json.dumps(address)}"


# The suite checks that `$schema`, `$defs` and `additionalProperties` survive tools/list (SEP-1613).
mcp._tool_manager.get_tool("json_schema_2020_12_tool").parameters = {  # type: ignore[union-attr]
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


# --- resources -----------------------------------------------------------------------------------
@mcp.resource("test://static-text", mime_type="text/plain", description="A static text resource")
def static_text() -> str:
    return "This is the content of the static text resource."


@mcp.resource("test://static-binary", mime_type="image/png", description="A static binary resource")
def static_binary() -> bytes:
    return base64.b64decode(PNG_1X1)


@mcp.resource("test://template/{id}/data", mime_type="application/json", description="A templated resource")
def template_data(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@mcp.resource("test://watched-resource", mime_type="text/plain", description="A subscribable resource")
def watched() -> str:
    return "Watched resource content"


async def _set_level(ctx, params: SetLevelRequestParams) -> EmptyResult:
    return EmptyResult()


keep_subscriptions(mcp)
mcp._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_level)


# --- prompts and completion ----------------------------------------------------------------------
@mcp.prompt()
def test_simple_prompt() -> list[UserMessage]:
    """A simple prompt without arguments"""
    return [UserMessage(role="user", content=TextContent(type="text", text="This is a simple prompt for testing."))]


@mcp.prompt()
def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
    """A prompt with two required arguments"""
    text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
    return [UserMessage(role="user", content=TextContent(type="text", text=text))]


@mcp.prompt()
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
    """A prompt embedding a resource"""
    res = TextResourceContents(uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing.")
    return [
        UserMessage(role="user", content=EmbeddedResource(type="resource", resource=res)),
        UserMessage(role="user", content=TextContent(type="text", text="Please process the embedded resource above.")),
    ]


@mcp.prompt()
def test_prompt_with_image() -> list[UserMessage]:
    """A prompt with image content"""
    return [
        UserMessage(role="user", content=ImageContent(type="image", data=PNG_1X1, mime_type="image/png")),
        UserMessage(role="user", content=TextContent(type="text", text="Please analyze the image above.")),
    ]


@mcp.completion()
async def complete(ref, argument, context) -> Completion:
    return Completion(values=[], total=0, has_more=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args()
    mcp.run("streamable-http", host=args.host, port=args.port, event_store=MemoryEventStore(), retry_interval=100)


if __name__ == "__main__":
    main()
