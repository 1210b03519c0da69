"""The `a2a` server kind: an A2A agent whose skills are served as tools, one `SendMessage` per call.

`open()` reads the agent's card (through the server's egress rules, bounded, its signature checked
when the owner gave a key) and keeps it for the session; the session lists one tool per skill and
runs a call as `SendMessage`, following a task the agent answers with (`GetTask`) until it ends or
the call's time runs out, when the task is cancelled. A health check reads the card again: a
changed card is listed again, which pinning holds as drift until a person approves it. Everything
else a call goes through (grants, Cedar, approvals, budgets, rate limits, guardrails, the audit
row) is the call path's, as for any server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx2
import mcp_types as types

from libs.common.contracts.a2a_config import A2aSection
from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, ToolCall, UpstreamRequest

from ...answer_limits import answer_cutoff
from ...replies import ran, refusal
from ..egress_guard import refusal_in
from ..interface import CallContext, Connector, Listing, SessionHooks
from ..mcp.http_client import http_client
from . import wire
from .card import MAX_CARD_BYTES, AgentCard, CardError, read_card

__all__ = ["A2aConnector", "A2aSession", "connector"]

log = logging.getLogger(__name__)

MakeClient = Callable[[httpx2.Timeout], httpx2.AsyncClient]


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _why(exc: BaseException) -> str:
    refused = refusal_in(exc)
    return str(refused) if refused is not None else type(exc).__name__


async def fetch_card(client: httpx2.AsyncClient, url: str, section: A2aSection) -> AgentCard:
    """The card at `url` + `card_path`, read and checked (`CardError` says why not)."""
    response = await client.get(url.rstrip("/") + section.card_path)
    if response.status_code != 200:
        raise CardError(f"the agent card answered HTTP {response.status_code}")
    if len(response.content) > MAX_CARD_BYTES:
        raise CardError(f"the agent card is larger than {MAX_CARD_BYTES} bytes")
    return read_card(response.content, section.card_public_key)


class A2aSession:
    """One live session (`upstreams.interface.UpstreamSession`): the card as last read, and the client."""

    protocol_version: str | None = "a2a/1.0"
    subscription_style: Literal["none"] = "none"

    def __init__(self, name: str, config: ServerConfig, card: AgentCard, client: httpx2.AsyncClient, hooks: Any):
        assert config.url is not None
        self.name = name
        self._url = config.url
        self._section = config.a2a or A2aSection()
        self.card = card
        self._client = client
        self._on_list_changed: Callable[[], None] = hooks.on_list_changed

    async def list(self) -> Listing:
        return Listing(tools=self.card.tools)

    async def ping(self, within: float) -> str | None:
        """Read the card again: unreachable is unhealthy; changed is listed again (drift)."""
        try:
            async with asyncio.timeout(within):
                card = await fetch_card(self._client, self._url, self._section)
        except (TimeoutError, httpx2.HTTPError) as exc:
            return f"the agent card is unreachable ({_why(exc)})"
        except CardError as exc:
            return str(exc)
        if card.sha256 != self.card.sha256:
            log.info("upstream %s: its agent card changed; listing it again", self.name)
            self.card = card
            self._on_list_changed()
        return None

    async def request(self, request: UpstreamRequest, ctx: CallContext) -> CallOutcome:
        message = f"server {self.name!r} is an A2A agent: it offers tools (its skills) only, not {request.method}"
        return refusal(request, ErrorKind.UPSTREAM_ERROR, message, code=types.METHOD_NOT_FOUND)

    async def call_tool(self, call: ToolCall, ctx: CallContext) -> CallOutcome:
        """`SendMessage`, then `GetTask` until the task ends, all due by `ctx.deadline`."""
        if call.tool not in self.card.skills:
            return refusal(call, ErrorKind.UNKNOWN_TOOL, f"agent {self.name!r} has no skill {call.tool!r}", "not_run")
        started = time.perf_counter()
        answer: wire.Answer | None = None
        try:
            async with asyncio.timeout_at(ctx.deadline):
                answer = await self._post(wire.send_message(call.arguments, self.card.skills[call.tool]))
                while answer.result is None:
                    await asyncio.sleep(self._section.poll_interval)
                    assert answer.task_id is not None
                    answer = await self._post(wire.get_task(answer.task_id))
        except TimeoutError:
            await self._cancel(answer)
            message = f"agent {self.name!r} did not finish within {ctx.budget:.3g} seconds (its task was cancelled)"
            return refusal(call, ErrorKind.UPSTREAM_TIMEOUT, message, "may_have_run", upstream_ms=_since(started))
        except wire.WireError as exc:
            return refusal(call, ErrorKind.UPSTREAM_ERROR, str(exc), "may_have_run", upstream_ms=_since(started))
        except httpx2.StreamError as exc:
            return refusal(call, ErrorKind.RESULT_TOO_LARGE, str(exc), "ran", upstream_ms=_since(started))
        except (httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
            message = f"agent {self.name!r} is unreachable: {_why(exc)}"
            return refusal(call, ErrorKind.UPSTREAM_UNAVAILABLE, message, "not_run", upstream_ms=_since(started))
        except httpx2.HTTPError as exc:
            message = f"agent {self.name!r} failed during the request: {type(exc).__name__}"
            return refusal(call, ErrorKind.UPSTREAM_UNAVAILABLE, message, "may_have_run", upstream_ms=_since(started))
        assert answer.result is not None
        return ran(call.id, answer.result, _since(started))

    async def _post(self, body: bytes) -> wire.Answer:
        response = await self._client.post(self.card.endpoint, content=body, headers=wire.PROTOCOL_HEADERS)
        if response.status_code >= 400:
            raise wire.WireError(f"the agent answered HTTP {response.status_code}")
        return wire.read_answer(response.content)

    async def _cancel(self, answer: wire.Answer | None) -> None:
        """Best effort, briefly: the call is over whatever the agent says."""
        if answer is None or answer.task_id is None:
            return
        try:
            async with asyncio.timeout(2):
                await self._client.post(self.card.endpoint, content=wire.cancel_task(answer.task_id))
        except (TimeoutError, httpx2.HTTPError):
            log.info("upstream %s: cancelling task %s failed", self.name, answer.task_id)

    async def follow(self, uris: Any, within: float) -> bool:
        return False

    async def run(self) -> None:
        return None


class A2aConnector:
    """Opens sessions to one agent (`upstreams.interface.Connector`)."""

    def __init__(self, name: str, config: ServerConfig, hooks: SessionHooks, make_client: MakeClient) -> None:
        assert config.url is not None
        self.name = name
        self.config = config
        self._hooks = hooks
        self._make_client = make_client

    def attempt_failed(self) -> None:
        return None

    @asynccontextmanager
    async def open(self) -> AsyncIterator[A2aSession]:
        assert self.config.url is not None
        client = self._make_client(httpx2.Timeout(self._hooks.settings.connect_timeout, read=None))
        try:
            section = self.config.a2a or A2aSection()
            async with asyncio.timeout(self._hooks.settings.connect_timeout):
                card = await fetch_card(client, self.config.url, section)
            log.info(
                "upstream %s: A2A agent %r, %d skill(s), card %s",
                self.name,
                card.name,
                len(card.tools),
                "signed and verified" if section.card_public_key else ("signed" if card.signed else "unsigned"),
            )
            yield A2aSession(self.name, self.config, card, client, self._hooks)
        finally:
            await client.aclose()


def connector(name: str, config: ServerConfig, hooks: SessionHooks) -> Connector:
    """The `a2a` kind (`upstreams.registry.KINDS`).

    The executor's upstream client, answers bounded at the result limit, the server's egress rules and
    headers on every request, card and messages alike."""
    cutoff = answer_cutoff(hooks.settings.max_result) if hooks.settings.max_result is not None else None

    def make_client(timeout: httpx2.Timeout) -> httpx2.AsyncClient:
        return http_client(hooks.egress, dict(config.headers), timeout, hooks.auth, hooks.on_unauthorized, cutoff)

    return A2aConnector(name, config, hooks, make_client)
