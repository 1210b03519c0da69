"""The playground.

Act as a virtual key through the gateway's real `/mcp` (ingress, policy, budgets, the executor, audit),
from the admin service, which the browser reaches on its own origin.

The key's secret comes with each request (the console keeps it in the tab's memory only); it is
sent to ingress as the bearer and nowhere else: not stored, not logged, never in an answer. The
answer carries the key's id (its sha256) and when the call started, which is how the console finds
the call's audit row.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from libs.common.contracts.keys import key_id as key_id_of

from .mcp_client import connected, failure, list_all_tools

__all__ = [
    "CALL_SECONDS",
    "Playground",
    "PlaygroundAnswer",
    "PlaygroundCall",
    "PlaygroundChat",
    "PlaygroundExecute",
    "PlaygroundKey",
]

CALL_SECONDS = 120.0
_MAX_ARGUMENTS = 64
_MAX_TOOLS = 32


class PlaygroundKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: SecretStr = Field(min_length=1, max_length=512, description="The virtual key to act as.")


class PlaygroundCall(PlaygroundKey):
    tool: str = Field(min_length=1, max_length=256, description="The tool's gateway name, as `tools/list` gives it.")
    arguments: dict[str, Any] = Field(default_factory=dict, max_length=_MAX_ARGUMENTS)


class PlaygroundChat(PlaygroundKey):
    model: str = Field(min_length=1, max_length=256, description="A model an LLM provider serves.")
    message: str = Field(min_length=1, max_length=32_768, description="The user's message.")
    tools: list[str] = Field(
        default_factory=list,
        max_length=_MAX_TOOLS,
        description="Gateway names of the key's tools to offer the model; none by default.",
    )


class PlaygroundExecute(PlaygroundKey):
    tool_call: dict[str, Any] = Field(
        max_length=8, description="One OpenAI `tool_call` the model proposed (`id`, `type`, `function`), as it came."
    )


class PlaygroundAnswer(BaseModel):
    ok: bool
    """The request was answered (a tool's own error is `ok` with `result.isError`)."""
    key_id: str
    started_at: float
    tools: list[dict[str, Any]] | None = None
    result: dict[str, Any] | None = None
    """A tool's result (`tools/call`) or the chat completion (`/v1/chat/completions`), as JSON."""
    error: str | None = None


class Playground:
    """Requests to `<gateway_url>/mcp`; no gateway URL (`BASTION_PUBLIC_URL`) leaves it off."""

    def __init__(self, gateway_url: str) -> None:
        self.url = f"{gateway_url.rstrip('/')}/mcp" if gateway_url else ""
        self.chat_url = f"{gateway_url.rstrip('/')}/v1/chat/completions" if gateway_url else ""
        self.execute_url = f"{gateway_url.rstrip('/')}/v1/mcp/tool/execute" if gateway_url else ""

    async def tools(self, body: PlaygroundKey) -> PlaygroundAnswer:
        return await self._run(body.secret, None, {})

    async def call(self, body: PlaygroundCall) -> PlaygroundAnswer:
        return await self._run(body.secret, body.tool, body.arguments)

    async def chat(self, body: PlaygroundChat, include_tools: list[str]) -> PlaygroundAnswer:
        """One chat completion through the gateway's `/v1` as the key.

        (Its budget applies, it is audited), offering the model only the key's tools that `include_tools`
        (`server/tool` patterns) names: the gateway injects every tool of the key unless the narrowing
        header says otherwise. A key in agent mode has the gateway run the calls on its allow-list; the
        answer then carries `bastion.transcript`."""
        request = {"model": body.model, "messages": [{"role": "user", "content": body.message}]}
        return await self._v1(
            self.chat_url, body.secret, request, {"X-Bastion-Include-Tools": ", ".join(include_tools)}
        )

    async def execute(self, body: PlaygroundExecute) -> PlaygroundAnswer:
        """Run one tool call a model proposed (explicit mode) through the gateway's `/v1/mcp/tool/execute` as the key.

        Policy, budgets, the executor, and an audit row under the round that proposed it."""
        return await self._v1(self.execute_url, body.secret, body.tool_call, {})

    async def _v1(
        self, url: str, secret: SecretStr, request: dict[str, Any], headers: dict[str, str]
    ) -> PlaygroundAnswer:
        """POST `request` to the gateway's OpenAI-compatible side as the key; its JSON answer, or why not."""
        value = secret.get_secret_value()
        answer = PlaygroundAnswer(ok=False, key_id=key_id_of(value), started_at=time.time())
        try:
            async with httpx2.AsyncClient(timeout=CALL_SECONDS) as http:
                reply = await http.post(url, json=request, headers={**headers, "Authorization": f"Bearer {value}"})
            found = reply.json()
        except (httpx2.HTTPError, ValueError) as exc:
            answer.error = failure(exc, url).replace(value, "***")
            return answer
        if reply.status_code != 200:
            error = found.get("error") if isinstance(found, dict) else None
            said = error.get("message") if isinstance(error, dict) else None
            answer.error = f"HTTP {reply.status_code}: {said or 'the gateway refused'}".replace(value, "***")
            return answer
        answer.ok, answer.result = True, found
        return answer

    async def _run(self, secret: SecretStr, tool: str | None, arguments: dict[str, Any]) -> PlaygroundAnswer:
        value = secret.get_secret_value()
        answer = PlaygroundAnswer(ok=False, key_id=key_id_of(value), started_at=time.time())
        headers = {"Authorization": f"Bearer {value}"}
        try:
            async with asyncio.timeout(CALL_SECONDS):
                async with connected(self.url, headers, read_seconds=CALL_SECONDS) as client:
                    if tool is None:
                        answer.tools = await list_all_tools(client)
                    else:
                        result = await client.call_tool(tool, arguments)
                        answer.result = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        except TimeoutError:
            answer.error = f"no answer within {CALL_SECONDS:.0f} s"
            return answer
        except Exception as exc:  # the gateway's refusal (401, denied, ...) is the answer
            answer.error = failure(exc, self.url).replace(value, "***")
            return answer
        answer.ok = True
        return answer
