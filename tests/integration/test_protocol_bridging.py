"""Protocol bridging: agents and upstreams of every protocol revision Bastion supports, in every
combination, with real SDKs on both sides.

Upstreams: `tests/support/legacy_server.py` run by the newest `mcp` 1.x release of each
handshake-era revision (pinned venvs, `tests/support/legacy_sdk.py`), and by the repo's own mcp 2.3
for 2026-07-28. Each runs over stdio, HTTP+SSE and streamable HTTP, all registered in ONE gateway
stack for the module.

Agents, all over streamable HTTP to /mcp:
  2024-11-05  mcp 1.8.1 client  (the first release with a streamable-HTTP client still spoke
              2024-11-05, so no hand-written JSON-RPC client is needed for the oldest revision)
  2025-03-26  mcp 1.9.4 client
  2025-06-18  mcp 1.23.0 client
  2025-11-25  the repo's mcp 2.3 client, mode="legacy" (initialize + Mcp-Session-Id)
  2026-07-28  the repo's mcp 2.3 client, mode="auto" (server/discover, then per-request _meta)
The 1.x clients run as subprocesses (`tests/support/legacy_client.py`) in their own venvs.

Each agent session runs the requests of every `Check` and hands each check its own answers, so
prompts/get and resources/read become one more `Check` in `CHECKS` once the gateway proxies them
(the fixture server already offers a prompt, a static resource and a resource template).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from cli.stack import EmbeddedNats, EmbeddedValkey
from tests.support.gateway import ADMIN_KEY, Gateway, running_gateway
from tests.support.legacy_sdk import LEGACY_SDKS, legacy_python, run_legacy_client

pytestmark = pytest.mark.integration

SUPPORT = Path(__file__).resolve().parents[1] / "support"
SERVER_SCRIPT = SUPPORT / "legacy_server.py"

VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28")
TRANSPORTS = ("stdio", "sse", "http")
MODERN = "2026-07-28"  # spoken by the repo's own SDK, not by any 1.x release

# The transport each upstream revision uses in the agent × upstream matrix: all three appear, and
# the riskiest pairings are here (a 2024-11-05 server over streamable HTTP, which refuses the
# session-less server/discover probe with HTTP 400 and must be failed over to initialize).
# `test_every_upstream_transport` covers the other pairings.
MATRIX_TRANSPORT = {
    "2024-11-05": "http",
    "2025-03-26": "sse",
    "2025-06-18": "stdio",
    "2025-11-25": "http",
    "2026-07-28": "http",
}

# mcp <= 1.8.1 servers over stdio and SSE drop the connection on the `server/discover` probe that
# auto mode opens with (their closed method list lets the ValidationError escape the session's
# receive loop); the executor then retries with the `initialize` handshake (`Upstream._mode`).
# Nothing is left out of the matrix.
UNREACHABLE: set[tuple[str, str]] = set()
UPSTREAMS = [(v, t) for v in VERSIONS for t in TRANSPORTS if (v, t) not in UNREACHABLE]


def server_name(version: str, transport: str) -> str:
    return f"v{version}-{transport}"  # '-' survives namespacing; '_' would not


def _python(version: str) -> str:
    return sys.executable if version == MODERN else str(legacy_python(version))


# ------------------------------------------------------------------ agents


@dataclass
class AgentRun:
    protocol_version: str
    tools: list[str]
    answers: list[dict[str, Any]]
    """One per request, in order: the result as JSON (camelCase keys) or {"error": {...}}."""


Request = tuple[str, dict[str, Any]]  # (MCP method, params)


async def run_sdk_agent(gateway: Gateway, version: str, requests: list[Request]) -> AgentRun:
    """The repo's own mcp 2.3 client: legacy mode speaks 2025-11-25, auto mode 2026-07-28."""
    mode = "auto" if version == MODERN else "legacy"
    answers: list[dict[str, Any]] = []
    async with gateway.client(ADMIN_KEY, mode=mode) as client:
        tools = [tool.name for tool in (await client.list_tools()).tools]
        for method, params in requests:
            try:
                if method == "prompts/get":
                    result = await client.get_prompt(params["name"], params["arguments"])
                else:
                    result = await client.call_tool(params["name"], params["arguments"])
                answers.append(result.model_dump(mode="json", by_alias=True, exclude_none=True))
            except MCPError as exc:
                answers.append({"error": exc.error.model_dump(mode="json", by_alias=True, exclude_none=True)})
        return AgentRun(client.protocol_version, tools, answers)


async def run_legacy_agent(gateway: Gateway, version: str, requests: list[Request]) -> AgentRun:
    """An mcp 1.x client in its own venv, as a subprocess (see legacy_client.py)."""
    plan = []
    for method, params in requests:
        assert method in ("tools/call", "prompts/get"), method
        plan.append([("prompt:" if method == "prompts/get" else "") + params["name"], params["arguments"]])
    run = await run_legacy_client(version, gateway.url, ADMIN_KEY, plan)
    return AgentRun(run["protocolVersion"], run["tools"], run["calls"])


async def run_agent(gateway: Gateway, version: str, requests: list[Request]) -> AgentRun:
    runner = run_sdk_agent if version in ("2025-11-25", MODERN) else run_legacy_agent
    return await runner(gateway, version, requests)


# ------------------------------------------------------------------ checks


def _text(answer: dict[str, Any]) -> str:
    assert "error" not in answer, answer
    return "".join(block.get("text", "") for block in answer["content"])


@dataclass(frozen=True)
class Check:
    """Requests one agent sends about one upstream server, and what their answers must be."""

    requests: Callable[[str], list[Request]]
    verify: Callable[[str, list[dict[str, Any]]], None]


def _tool_requests(server: str) -> list[Request]:
    return [
        ("tools/call", {"name": f"{server}__echo", "arguments": {"text": f"héllo {server} ✓"}}),
        ("tools/call", {"name": f"{server}__add", "arguments": {"a": 40, "b": 2}}),
        ("tools/call", {"name": f"{server}__fail", "arguments": {"message": "boom"}}),
    ]


def _tool_verify(server: str, answers: list[dict[str, Any]]) -> None:
    echoed, added, failed = answers
    assert _text(echoed) == f"héllo {server} ✓"
    assert echoed.get("isError", False) is False
    assert _text(added) == "42"
    assert added.get("isError", False) is False
    assert failed["isError"] is True
    assert "boom" in _text(failed)  # the wording around the message differs per SDK release


def _prompt_requests(server: str) -> list[Request]:
    return [("prompts/get", {"name": f"{server}__greet", "arguments": {"name": "Ada"}})]


def _prompt_verify(server: str, answers: list[dict[str, Any]]) -> None:
    (got,) = answers
    assert "error" not in got, got
    assert [m["content"]["text"] for m in got["messages"]] == ["Hello, Ada!"]


CHECKS: list[Check] = [Check(_tool_requests, _tool_verify), Check(_prompt_requests, _prompt_verify)]


async def assert_bridged(gateway: Gateway, agent: str, upstream: str, transport: str) -> None:
    server = server_name(upstream, transport)
    # the upstream really speaks its revision to the executor (no silent upgrade by the SDK)
    status = gateway.ingress.catalog.server_status(server)
    assert status is not None and status.status == "ready"
    assert status.protocol_version == upstream

    per_check = [check.requests(server) for check in CHECKS]
    run = await run_agent(gateway, agent, [request for requests in per_check for request in requests])

    assert run.protocol_version == agent
    assert sorted(name for name in run.tools if name.startswith(f"{server}__")) == [
        f"{server}__add",
        f"{server}__echo",
        f"{server}__fail",
    ]
    answers = iter(run.answers)
    for check, requests in zip(CHECKS, per_check, strict=True):
        check.verify(server, [next(answers) for _ in requests])


# ------------------------------------------------------------------ the stack


def _start_http_upstream(version: str, transport: str, procs: list[subprocess.Popen[str]]) -> dict[str, str]:
    """Start one HTTP upstream and wait for its READY line; returns its config entry."""
    proc = subprocess.Popen(
        [_python(version), str(SERVER_SCRIPT), f"--{transport}", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    procs.append(proc)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line.startswith("READY "), f"{version} {transport} upstream did not start: {line!r}"
    return {"url": line.split()[1], "type": "sse" if transport == "sse" else "http"}


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    workdir = tmp_path_factory.mktemp("bridging")
    with ThreadPoolExecutor(len(LEGACY_SDKS)) as pool:  # first run: the venvs build in parallel
        list(pool.map(legacy_python, LEGACY_SDKS))
    nats = EmbeddedNats(workdir / "nats").start()
    valkey = EmbeddedValkey(workdir / "valkey").start()
    procs: list[subprocess.Popen[str]] = []
    try:
        servers: dict[str, Any] = {}
        remote = [(v, t) for v, t in UPSTREAMS if t != "stdio"]
        with ThreadPoolExecutor(len(remote)) as pool:  # each takes ~1 s to import its SDK: in parallel
            entries = list(pool.map(lambda u: _start_http_upstream(*u, procs), remote))
        for (version, transport), entry in zip(remote, entries, strict=True):
            servers[server_name(version, transport)] = entry
        for version, transport in UPSTREAMS:
            if transport == "stdio":
                servers[server_name(version, transport)] = {"command": _python(version), "args": [str(SERVER_SCRIPT)]}
        raw = {"mcpServers": servers, "keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["*"]}]}
        async with running_gateway(nats.url, valkey.url, workdir, raw) as gw:
            yield gw
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        valkey.stop()
        nats.stop()


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("upstream", VERSIONS)
@pytest.mark.parametrize("agent", VERSIONS)
async def test_agent_and_upstream_of_any_revision_work_together(gateway, agent, upstream):
    await assert_bridged(gateway, agent, upstream, MATRIX_TRANSPORT[upstream])


# The agent side is independent of how the executor reaches an upstream (ingress answers agents
# from its catalog and NATS), so one agent suffices to cover every other transport of every SDK.
@pytest.mark.parametrize(
    ("upstream", "transport"),
    [(v, t) for v, t in UPSTREAMS if t != MATRIX_TRANSPORT[v]],
)
async def test_every_upstream_transport(gateway, upstream, transport):
    await assert_bridged(gateway, MODERN, upstream, transport)
