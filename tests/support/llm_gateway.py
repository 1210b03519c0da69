"""The OpenAI-compatible side under test: the keys, models and scripted providers the `/v1` tests
share, and small helpers around the official `openai` and `anthropic` SDKs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk, ParsedChatCompletionMessage

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, AuditQuery, AuditRows
from libs.common.runtime.sealing import new_key
from libs.common.settings import CodeModeSettings
from libs.common.web.guarded_http import shared_tls
from services.codemode.service import CodeModeService
from tests.support.gateway import ADMIN_KEY, Gateway, default_config, gateway_on_own_servers
from tests.support.llm_provider import ScriptedProvider
from tests.support.polling import poll_until

PROVIDER_KEY = "sk-provider-secret-never-shown-0123456789"
MODEL = "gpt-test"
BROKE_KEY = "bk_test_broke_key_00000000000"
AGENT_KEY = "bk_test_agent_key_00000000000"
SHALLOW_KEY = "bk_test_shallow_agent_key_000"
CODER_KEY = "bk_test_llm_code_mode_key_000"
RUNTIME_KEY = "sk-runtime-provider-secret-9876543210"
CODE_AGENT_KEY = "bk_test_llm_code_agent_key_00"
SQUAD_KEY = "bk_test_llm_squad_member_key_0"
DOCS_MODEL = "gpt-4.1-mini"
"""The model docs/llm.md's examples name."""
DOWN_PASSWORD = "pw-in-the-url-never-shown"
DOWN_TOKEN = "tok-in-the-query-never-shown"
"""Credentials in the unreachable provider's `base_url`, which its errors must not repeat."""
PRICEY = "gpt-pricey"
"""Output at $1000 per million tokens, input free: `max_tokens=5` may cost at most $0.005."""


def llm_config(provider: ScriptedProvider) -> dict[str, Any]:
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
            "down": {
                "base_url": f"http://bastion:{DOWN_PASSWORD}@127.0.0.1:9/v1?api-key={DOWN_TOKEN}",
                "models": ["gpt-down"],
                "retries": 0,
                "failure_threshold": 2,
            },
            # the same server under a short timeout: a stalled answer becomes a timeout
            "slow": {"base_url": provider.base_url, "models": ["gpt-slow"], "timeout": 0.5, "retries": 0},
        }
    }
    return config


OPEN_CLIENTS: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = []
"""SDK clients the running test made, closed with its gateway (an open connection would warn)."""


async def close_sdk_clients() -> None:
    """Close the SDK clients the test made (`OPEN_CLIENTS`)."""
    while OPEN_CLIENTS:
        await OPEN_CLIENTS.pop().close()


@contextlib.asynccontextmanager
async def module_gateway(workdir: Path, config: dict[str, Any], **settings: Any) -> AsyncIterator[Gateway]:
    """A test module's gateway (`gateway_on_own_servers`), once ingress serves the scripted provider's models.

    Provider keys are sealed at rest and the audit journal is under `workdir` unless `settings` say otherwise."""
    settings = {"secrets_key": new_key(), "audit_journal_dir": str(workdir / "journal"), **settings}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BASTION_TEST_PROVIDER_KEY", PROVIDER_KEY)
        async with gateway_on_own_servers(workdir, config, **settings) as gw:
            await poll_until(lambda: MODEL in gw.ingress.models.models, "the provider in the ingress view")
            yield gw


@dataclass(frozen=True)
class StackShape:
    """What a `/v1` test module's gateway runs around the scripted provider and the echo server: a module
    names its own as `STACK` (the `shared_gateway` fixture reads it), else it gets the default."""

    admin: bool = True
    notes: bool = True
    """Whether the notes MCP server is configured (a module whose tests never call it leaves it out)."""
    failure_threshold: int | None = None
    """The scripted provider's breaker threshold, for a module whose tests fail it several times in a row."""
    codemode: CodeModeSettings | None = None
    max_body_bytes: int | None = None


@contextlib.asynccontextmanager
async def shaped_gateway(
    workdir: Path, provider: ScriptedProvider, shape: StackShape, **settings: Any
) -> AsyncIterator[Gateway]:
    """`module_gateway` over `provider` as `shape` says, once the codemode service (if any) lists echo's tools."""
    config = llm_config(provider)
    if not shape.notes:
        del config["mcpServers"]["notes"]
    if shape.failure_threshold is not None:
        config["llm"]["providers"]["scripted"]["failure_threshold"] = shape.failure_threshold
    if shape.max_body_bytes is not None:
        settings["max_body_bytes"] = shape.max_body_bytes
    async with module_gateway(workdir, config, admin=shape.admin, codemode=shape.codemode, **settings) as gw:
        codemode = next((s for s in gw.services if isinstance(s, CodeModeService)), None)
        if codemode is not None:
            await poll_until(lambda: "echo" in {s for s, _ in codemode.catalog.pairs}, "the codemode catalog")
        yield gw


@contextlib.asynccontextmanager
async def closing_clients(gateway: Gateway) -> AsyncIterator[Gateway]:
    """`gateway` for one test, the SDK clients the test made closed after it (an open one would warn)."""
    try:
        yield gateway
    finally:
        await close_sdk_clients()


def sdk_client(gateway: Gateway, key: str = ADMIN_KEY) -> openai.AsyncOpenAI:
    base = gateway.url.removesuffix("/mcp")
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=30)
    OPEN_CLIENTS.append(client)
    return client


def anthropic_client(gateway: Gateway, key: str = ADMIN_KEY, *, bearer: bool = False) -> anthropic.AsyncAnthropic:
    """The `anthropic` SDK as Claude Code is pointed at Bastion: `ANTHROPIC_BASE_URL` the gateway's
    root, the Bastion key as `ANTHROPIC_API_KEY` (which Claude Code sends as `x-api-key`; this SDK's
    own `api_key` goes as a bearer) or, `bearer`, as `ANTHROPIC_AUTH_TOKEN`."""
    base = gateway.url.removesuffix("/mcp")
    credential: dict[str, Any] = {"auth_token": key} if bearer else {"default_headers": {"x-api-key": key}}
    client = anthropic.AsyncAnthropic(base_url=base, max_retries=0, timeout=30, **credential)
    OPEN_CLIENTS.append(client)
    return client


async def execute_call(gateway: Gateway, tool_call: dict[str, Any], key: str = ADMIN_KEY) -> httpx.Response:
    base = gateway.url.removesuffix("/mcp")
    async with httpx.AsyncClient(timeout=30, verify=shared_tls()) as http:
        return await http.post(
            f"{base}/v1/mcp/tool/execute", json=tool_call, headers={"authorization": f"Bearer {key}"}
        )


async def audit_rows(gateway: Gateway, wanted: int) -> list[AuditEvent]:
    """The audit rows of requests, at least `wanted` of them (admin changes, such as the gateway's
    first owner being made, are left out: they are not what these tests count)."""
    nc = await connect(gateway.nats_url, "test-audit")
    try:
        for _ in range(200):
            reply = await nc.request(subjects.AUDIT_QUERY, AuditQuery(limit=100).model_dump_json().encode(), timeout=5)
            rows = [row for row in AuditRows.model_validate_json(reply.data).rows if row.kind != "admin"]
            if len(rows) >= wanted:
                return rows
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    raise AssertionError(f"expected {wanted} audit rows, found {len(rows)}")


_UNCOUNTED = {"admin", "auth.refused"}


async def audit_rows_since(gateway: Gateway, wanted: int, since: float) -> list[AuditEvent]:
    """`audit_rows` of the requests that came in from `since` on (an event's `ts` is when its request
    came in), for a gateway that keeps earlier tests' rows. Refused credentials are left out too: they
    are audited once per window, a row that may come in during a later test."""
    query = AuditQuery(limit=1000).model_dump_json().encode()
    nc = await connect(gateway.nats_url, "test-audit")

    async def rows() -> list[AuditEvent]:
        reply = await nc.request(subjects.AUDIT_QUERY, query, timeout=5)
        found = AuditRows.model_validate_json(reply.data).rows
        found = [row for row in found if row.kind not in _UNCOUNTED and row.ts >= since]
        return found if len(found) >= wanted else []

    try:
        return await poll_until(rows, f"{wanted} audit rows since {since}", every=0.05)
    finally:
        await nc.close()


def tool_names(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools", [])]


async def accumulated(
    stream: openai.AsyncStream[ChatCompletionChunk],
) -> tuple[list[ChatCompletionChunk], ParsedChatCompletionMessage[Any], dict[str, Any] | None]:
    """A stream read as applications read one: every chunk, the message the SDK's own accumulator
    (`ChatCompletionStreamState`) builds from them, and the agent-mode `bastion` object if any."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    chunks, summary = [], None
    async for chunk in stream:
        chunks.append(chunk)
        state.handle_chunk(chunk)
        summary = (chunk.model_extra or {}).get("bastion") or summary
    return chunks, state.get_final_completion().choices[0].message, summary
