"""An upstream that uses the whole protocol, not just tools: prompts, resources and templates,
subscriptions, completion, logging, progress, and requests to the agent mid-call (sampling,
elicitation, roots), on 2026-07-28 sessions as `input_required` results (`plan_trip`, `mood`).
Written with the official SDK; stdio by default, `--http` for streamable HTTP.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import Context, Elicit, ListRoots, MCPServer, Resolve, Sample
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.types import (
    Completion,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    InputRequiredResult,
    ListRootsResult,
    SamplingMessage,
    TextContent,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "servers"))
from _runner import keep_subscriptions, parse_args, run

SCHEME = os.environ.get("MEMO_SCHEME", "memo")
"""URI scheme of this server's resources, so two copies behind one gateway list different URIs."""
mcp = MCPServer(name="interactive", version="1.0.0")
subscribed = keep_subscriptions(mcp)
cancelled: list[str] = []


class Answer(BaseModel):
    answer: str


@mcp.tool()
async def ask_llm(prompt: str, ctx: Context) -> str:
    """Asks the agent's model (sampling/createMessage) and returns what it said."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=50
    )
    return f"model said: {getattr(result.content, 'text', '')}"


_waiting: list[asyncio.Event] = []


@mcp.tool()
async def ask_llm_together(prompt: str, ctx: Context) -> str:
    """Waits until a second call of this tool is running too, then asks the agent's model: with
    two calls in flight on one upstream session, the gateway cannot tell whose request it is."""
    arrived = asyncio.Event()
    _waiting.append(arrived)
    if len(_waiting) % 2 == 0:
        for event in _waiting:
            event.set()
    await arrived.wait()
    try:
        return await ask_llm(prompt, ctx)
    except Exception as exc:  # the refusal, as the tool's visible result
        return f"refused: {exc}"


@mcp.tool()
async def ask_user(question: str, ctx: Context) -> str:
    """Asks the agent's user (elicitation/create)."""
    result = await ctx.elicit(message=question, schema=Answer)
    return f"{result.action}: {result.data.answer if result.action == 'accept' and result.data else '-'}"


@mcp.tool()
async def my_roots(ctx: Context) -> str:
    """Lists the agent's roots (roots/list)."""
    result = await ctx.session.list_roots()
    return ",".join(str(root.uri) for root in result.roots)


def _destination(question: str) -> Elicit[Answer]:
    return Elicit(question, Answer)


def _roots() -> ListRoots:
    return ListRoots()


def _pitch(destination: Annotated[Answer, Resolve(_destination)]) -> Sample:
    text = f"pitch {destination.answer}"
    return Sample([SamplingMessage(role="user", content=TextContent(type="text", text=text))], max_tokens=50)


@mcp.tool()
async def plan_trip(
    question: str,
    destination: Annotated[Answer, Resolve(_destination)],
    roots: Annotated[ListRootsResult, Resolve(_roots)],
    pitch: Annotated[CreateMessageResult, Resolve(_pitch)],
) -> str:
    """Asks the user, the agent's roots and then its model (the pitch needs the user's answer). On a
    2026-07-28 session the SDK asks in two `input_required` rounds: elicitation and roots together,
    then sampling."""
    where = ",".join(str(root.uri) for root in roots.roots)
    return f"{destination.answer} from {where}: {getattr(pitch.content, 'text', '')}"


@mcp.tool()
async def slow_progress(steps: int, ctx: Context) -> str:
    """Reports progress `steps` times."""
    for step in range(1, steps + 1):
        await ctx.report_progress(progress=step, total=steps, message=f"step {step}")
        await asyncio.sleep(0.01)
    return f"{steps} steps done"


@mcp.tool()
async def chatty(ctx: Context) -> str:
    """Logs one message at each of debug, info and warning."""
    await ctx.debug("debug line")
    await ctx.info("info line")
    await ctx.warning("warning line")
    return "logged"


@mcp.tool()
async def sleepy(label: str, seconds: float) -> str:
    """Sleeps; a cancellation from the client is recorded under `label` (see `cancellations`)."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        cancelled.append(label)
        raise
    return f"slept {label}"


@mcp.tool()
def cancellations() -> str:
    """The labels of every `sleepy` call that was cancelled, in order."""
    return ",".join(cancelled)


@mcp.tool()
async def touch(uri: str, ctx: Context) -> str:
    """Tells subscribers that `uri` changed (if anyone subscribed to it)."""
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:  # subscriptions live on listen streams
        await ctx.notify_resource_updated(uri)
        return "published"
    if uri in subscribed:
        await ctx.session.send_resource_updated(uri)
        return "notified"
    return "nobody subscribed"


@mcp.tool()
async def add_prompt(name: str, ctx: Context) -> str:
    """Registers a new prompt and announces the change."""
    mcp.add_prompt(_prompt(name))
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        await ctx.notify_prompts_changed()
    else:
        await ctx.session.send_prompt_list_changed()
    return f"added {name}"


def _prompt(name: str):
    from mcp.server.mcpserver.prompts.base import Prompt

    def render() -> str:
        return f"prompt {name}"

    return Prompt.from_function(render, name=name, description=f"added at runtime: {name}")


@mcp.prompt()
def greet(name: str) -> list[UserMessage]:
    """Greets someone by name."""
    return [UserMessage(role="user", content=TextContent(type="text", text=f"Hello, {name}!"))]


@mcp.prompt()
async def mood(ctx: Context) -> str | InputRequiredResult:
    """Asks the user how they feel; on 2026-07-28 by hand, with an `input_required` result."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        asked = await ctx.elicit(message="How do you feel?", schema=Answer)
        return f"Write something {asked.data.answer if asked.action == 'accept' and asked.data else 'neutral'}."
    answer = (ctx.input_responses or {}).get("mood")
    if answer is None:
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
        request = ElicitRequest(params=ElicitRequestFormParams(message="How do you feel?", requested_schema=schema))
        return InputRequiredResult(input_requests={"mood": request}, request_state="asked-mood")
    assert ctx.request_state == "asked-mood", ctx.request_state  # echoed byte for byte
    return f"Write something {(getattr(answer, 'content', None) or {}).get('answer', 'neutral')}."


@mcp.resource(f"{SCHEME}://pinned", mime_type="text/plain", description="The pinned memo")
def pinned() -> str:
    return "pinned memo text"


@mcp.resource(f"{SCHEME}://notes/{{note_id}}", mime_type="text/plain", description="A note by id")
def note(note_id: str) -> str:
    return f"note {note_id}"


@mcp.completion()
async def complete(ref, argument, context) -> Completion:
    values = [v for v in ("alice", "albert", "bob") if v.startswith(argument.value)]
    return Completion(values=values, total=len(values), has_more=False)


if __name__ == "__main__":
    run(mcp, parse_args(__doc__.splitlines()[0]))
