"""No credential reaches the agent on any channel an upstream controls, however it is disguised.

A hostile upstream (tests/support/hostile_server.py, official SDK) sends a fake AWS key id and a
GitHub token, plain, encoded (base64, base64url twice, hex, `\\uXXXX`, percent), disguised (zero-width
characters, spaces, fullwidth letters) and cut across blocks and fields, down every channel of
`UPSTREAM_CHANNELS`; the agent, the official client through the whole gateway, must never see any
of them, and must see the redaction marker where they were (so each channel is shown to deliver).
A channel added to the table without a probe here fails the test. Nor does any of it reach the
gateway's own log, and an agent asking for a task (`tasks/get`) is told the gateway relays none.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from services.executor.interceptors.channels import UPSTREAM_CHANNELS
from tests.support.gateway import (
    ADMIN_HEADERS,
    ADMIN_KEY,
    READS_EXAMPLES,
    ROOT,
    default_config,
    legacy_initialize,
    running_gateway,
)
from tests.support.polling import poll_until
from tests.support.server_values import server_values

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]

HOSTILE = ROOT / "tests" / "support" / "hostile_server.py"


HOSTILE_VALUES = server_values(HOSTILE, "hostile_values")
FORMS: dict[str, tuple[str, str]] = HOSTILE_VALUES.FORMS


class Agent:
    """Everything the agent's client received, as JSON text, whatever the channel."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def sampling(self, _ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.seen.append(params.model_dump_json())
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="ok"), model="m")

    async def elicitation(self, _ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.seen.append(params.model_dump_json())
        return types.ElicitResult(action="decline")

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.seen.append(params.model_dump_json())

    async def message(self, message: Any) -> None:
        self.seen.append(message.model_dump_json() if hasattr(message, "model_dump_json") else repr(message))

    async def progress(self, value: float, total: float | None, message: str | None) -> None:
        self.seen.append(json.dumps({"progress": value, "message": message}, ensure_ascii=False))


Probe = Callable[[Client, Agent, str, list[str]], Awaitable[list[str]]]


async def _call(client: Client, agent: Agent, tool: str, form: str) -> list[str]:
    result = await client.call_tool(f"hostile__{tool}", {"form": form}, progress_callback=agent.progress)
    return [result.model_dump_json()]


async def _result(client: Client, agent: Agent, form: str, bus: list[str]) -> list[str]:
    return [*await _call(client, agent, "result", form), *await _call(client, agent, "structured", form)]


async def _error(client: Client, agent: Agent, form: str, bus: list[str]) -> list[str]:
    try:
        result = await client.call_tool("hostile__fail", {"form": form})
    except MCPError as error:
        return [error.error.model_dump_json()]
    return [result.model_dump_json()]


async def _read(client: Client, agent: Agent, form: str, bus: list[str]) -> list[str]:
    return [(await client.read_resource(f"leak://doc/{form}")).model_dump_json()]


async def _prompt(client: Client, agent: Agent, form: str, bus: list[str]) -> list[str]:
    return [(await client.get_prompt("hostile__leaky", {"form": form})).model_dump_json()]


async def _complete(client: Client, agent: Agent, form: str, bus: list[str]) -> list[str]:
    ref = types.PromptReference(type="ref/prompt", name="hostile__leaky")
    return [(await client.complete(ref, {"name": "form", "value": form})).model_dump_json()]


def _sent_to_agent(tool: str) -> Probe:
    """A tool whose upstream writes to the agent mid-call: what the agent got besides the result."""

    async def probe(client: Client, agent: Agent, form: str, bus: list[str]) -> list[str]:
        agent.seen.clear()
        await _call(client, agent, tool, form)
        return list(agent.seen)

    return probe


async def _updated(client: Client, agent: Agent, form: str, bus: list[str]) -> list[str]:
    """The update leaves the executor on the bus (ingress fans it out to subscribed agents): what
    is there is all any agent can get."""
    bus.clear()
    await _call(client, agent, "touch", form)
    await poll_until(lambda: bool(bus), "the resource update on the bus")
    return list(bus)


PROBES: dict[str, Probe] = {
    "tools/call": _result,
    "error": _error,
    "resources/read": _read,
    "prompts/get": _prompt,
    "completion/complete": _complete,
    "notifications/progress": _sent_to_agent("progress"),
    "notifications/message": _sent_to_agent("log"),
    "notifications/resources/updated": _updated,
    "sampling/createMessage": _sent_to_agent("sample"),
    "elicitation/create": _sent_to_agent("elicit"),
}


def _leaks(texts: list[str], form: str) -> list[str]:
    """The pieces of the credentials (whole, and the halves the split variants send) found in what
    the agent saw, after undoing JSON's own escaping (`\\u` for non-ASCII) once."""
    aws, github = FORMS[form]
    pieces = {aws, github, aws[:9], aws[9:], github[: len(github) // 2], github[len(github) // 2 :]}
    pieces |= {github[:20], github[20:]}
    seen = " ".join(texts)
    readable = seen + " " + json.dumps(seen)[1:-1] + " " + seen.encode().decode("unicode_escape", "ignore")
    return sorted(p for p in pieces if p in readable)


async def test_every_upstream_channel_is_guarded(nats_url, redis_url, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="services")
    assert set(PROBES) == set(UPSTREAM_CHANNELS), "a channel of UPSTREAM_CHANNELS has no probe here"
    config = default_config(
        {
            "hostile": {
                "command": sys.executable,
                "args": [str(HOSTILE)],
                "protocol": "legacy",
                "pinning": "warn",
                "sandbox": READS_EXAMPLES,
            }
        }
    )
    agent = Agent()
    bus: list[str] = []
    async with running_gateway(nats_url, redis_url, tmp_path, config) as gateway:
        await gateway.wait_for_servers("hostile")
        nc = await connect(nats_url, "test-resource-updates")
        try:

            async def on_update(msg: Any) -> None:
                bus.append(msg.data.decode())

            await nc.subscribe(subjects.RESOURCE_UPDATED, cb=on_update)
            async with gateway.client(
                ADMIN_KEY,
                mode="legacy",
                sampling_callback=agent.sampling,
                elicitation_callback=agent.elicitation,
                logging_callback=agent.log,
                message_handler=agent.message,
            ) as client:
                failures = []
                for channel, probe in PROBES.items():
                    for form in FORMS:
                        try:
                            texts = await asyncio.wait_for(probe(client, agent, form, bus), 30)
                        except Exception as exc:
                            failures.append(f"{channel} {form}: failed: {str(exc)[:300]}")
                            continue
                        leaked = _leaks(texts, form)
                        if leaked or "[REDACTED:" not in " ".join(texts):
                            failures.append(f"{channel} {form}: {len(leaked)} pieces leaked; saw {texts}")
                assert not failures, "\n".join(failures)
            await _no_task_channel(gateway.url)
        finally:
            await nc.close()
    leaked = [r.getMessage() for r in caplog.records if any(_leaks([r.getMessage()], form) for form in FORMS)]
    assert not leaked, f"a credential reached the gateway's log: {leaked[:3]}"


async def _no_task_channel(url: str) -> None:
    """A task id the gateway never gave this caller reaches no upstream's task: the agent is told it
    does not know it (task results themselves are guarded like results: test_tasks.py)."""
    async with httpx2.AsyncClient(timeout=30) as http:
        headers = dict(ADMIN_HEADERS)
        response = await http.post(url, headers=headers, json=legacy_initialize(client="raw"))
        headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
        headers["MCP-Protocol-Version"] = "2025-06-18"
        ask = {"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"taskId": "t-1"}}
        answer = (await http.post(url, headers=headers, json=ask)).json()
    assert answer["error"]["code"] == INVALID_PARAMS and "Unknown task" in answer["error"]["message"], answer
