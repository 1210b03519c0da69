"""Spans and metrics in OpenTelemetry's MCP and GenAI semantic conventions, seen from outside: real
`tools/call`s through the whole gateway, the spans the real SDK pipeline exported (its in-memory
exporter), and `/metrics` scraped over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs.common.runtime import tracing
from tests.support.gateway import ADMIN_KEY, READONLY_KEY, default_config, running_gateway
from tests.support.metrics import Series, moved, scrape

pytestmark = pytest.mark.integration

SPEC_VERSION = "1.39.0"
"""The semantic conventions release the names below are copied from (the MCP page, the GenAI spans
page, and the general `error.type`, `rpc.*`, `network.*`, `server.*` registry)."""

SPEC_NAMES = frozenset(
    {
        # MCP spans (docs/gen-ai/mcp.md)
        "mcp.method.name", "mcp.protocol.version", "mcp.session.id", "mcp.resource.uri",
        "jsonrpc.request.id", "jsonrpc.protocol.version", "rpc.response.status_code", "error.type",
        "network.transport", "network.protocol.name", "network.protocol.version",
        "server.address", "server.port", "client.address", "client.port",
        # GenAI execute_tool spans (docs/gen-ai/gen-ai-spans.md)
        "gen_ai.operation.name", "gen_ai.tool.name", "gen_ai.tool.call.id", "gen_ai.prompt.name",
        "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
        # the metrics' names, which we also put on the spans
        "mcp.server.operation.duration", "mcp.client.operation.duration",
    }
)  # fmt: skip
_NAMESPACES = ("mcp.", "gen_ai.", "jsonrpc.", "rpc.", "error.", "network.", "server.", "client.")

QUIET_KEY = "bk_test_quiet_key_00000000000"
"""A key with content logging off: its arguments and results never reach a span."""


def _config() -> dict[str, Any]:
    config = default_config()
    del config["mcpServers"]["notes"]  # no test here calls it, and its process would only cost start-up
    config["keys"].append({"name": "quiet", "key": QUIET_KEY, "tools": ["*"], "content_logging": False})
    return config


def _scope(span: ReadableSpan) -> str:
    assert span.instrumentation_scope is not None
    return span.instrumentation_scope.name


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _by_name(finished: tuple[ReadableSpan, ...], scope: str, name: str) -> list[ReadableSpan]:
    return [s for s in finished if _scope(s) == scope and s.name == name]


async def test_a_tool_call_is_a_server_span_at_ingress_and_a_client_span_to_the_upstream_by_the_conventions(
    nats_url: str, redis_url: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async with running_gateway(nats_url, redis_url, tmp_path, _config(), metrics=True) as gateway:
        assert gateway.ingress.metrics_server is not None
        executor = gateway.services[2]
        urls = (gateway.ingress.metrics_server.url, executor.metrics_server.url)
        before = [await scrape(url) for url in urls]
        spans.clear()
        async with gateway.client(ADMIN_KEY) as client:
            version = client.protocol_version
            assert (await client.call_tool("echo__echo", {"text": "hello"})).content
            assert (await client.call_tool("echo__fail", {"message": "boom"})).is_error
            with pytest.raises(MCPError):  # an agent inventing tool names, one series per name if labelled
                await client.call_tool("echo__madeup_by_an_agent", {})
        async with gateway.client(QUIET_KEY) as client:
            assert (await client.call_tool("echo__echo", {"text": "private"})).content
        async with gateway.client(READONLY_KEY) as client:
            with pytest.raises(MCPError, match="not allowed"):
                await client.call_tool("echo__add", {"a": 1, "b": 2})
        after = [await scrape(url) for url in urls]
    finished = spans.get_finished_spans()
    assert version in KNOWN_PROTOCOL_VERSIONS

    # every convention-namespaced attribute we emit is a name the conventions define
    ours = {name for s in finished if _scope(s) in ("bastion.ingress", "bastion.executor") for name in _attrs(s)}
    assert {n for n in ours if n.startswith(_NAMESPACES)} <= SPEC_NAMES, sorted(ours - SPEC_NAMES)

    echo_server = _by_name(finished, "bastion.ingress", "tools/call echo__echo")
    assert len(echo_server) == 2, sorted({s.name for s in finished})
    loud, quiet = sorted(echo_server, key=lambda s: s.start_time or 0)
    for span in (loud, quiet):
        attributes = _attrs(span)
        assert span.kind.name == "SERVER"
        assert attributes["mcp.method.name"] == "tools/call"
        assert attributes["gen_ai.operation.name"] == "execute_tool"
        assert attributes["gen_ai.tool.name"] == "echo__echo"
        assert attributes["mcp.protocol.version"] == version
        assert "jsonrpc.protocol.version" not in attributes  # the conventions set it only when not 2.0
        assert str(attributes["jsonrpc.request.id"]).isdigit()
        assert attributes["gen_ai.tool.call.id"]
        assert attributes["mcp.server.operation.duration"] > 0
        assert "error.type" not in attributes and span.status.status_code.name != "ERROR"
    # arguments and results are opt-in: on with content logging (the deployment's and the key's), else absent
    assert _attrs(loud)["gen_ai.tool.call.arguments"] == '{"text":"hello"}'
    assert "hello" in str(_attrs(loud)["gen_ai.tool.call.result"])
    assert "gen_ai.tool.call.arguments" not in _attrs(quiet) and "gen_ai.tool.call.result" not in _attrs(quiet)
    assert all("private" not in str(v) for s in finished for v in _attrs(s).values())

    # toward the upstream: a CLIENT span under the executor, named by the upstream's own tool name
    upstream = _by_name(finished, "bastion.executor", "tools/call echo")
    assert len(upstream) == 2 and all(s.kind.name == "CLIENT" for s in upstream)
    client_attrs = _attrs(upstream[0])
    assert client_attrs["gen_ai.operation.name"] == "execute_tool" and client_attrs["gen_ai.tool.name"] == "echo"
    assert client_attrs["network.transport"] == "pipe"  # a stdio server
    assert client_attrs["mcp.protocol.version"] in KNOWN_PROTOCOL_VERSIONS
    assert client_attrs["mcp.client.operation.duration"] > 0

    # failures carry `error.type`: a tool error, a refusal (with its JSON-RPC code), an unknown tool
    (failed,) = _by_name(finished, "bastion.ingress", "tools/call echo__fail")
    assert _attrs(failed)["error.type"] == "tool_error" and failed.status.status_code.name == "ERROR"
    (failed_upstream,) = _by_name(finished, "bastion.executor", "tools/call fail")
    assert _attrs(failed_upstream)["error.type"] == "tool_error"
    (refused,) = _by_name(finished, "bastion.ingress", "tools/call echo__add")
    assert _attrs(refused)["error.type"] == "forbidden" and _attrs(refused)["rpc.response.status_code"].startswith("-")
    (unknown,) = _by_name(finished, "bastion.ingress", "tools/call echo__madeup_by_an_agent")
    assert _attrs(unknown)["error.type"]

    _assert_histograms(before, after, version)


def _assert_histograms(before: list[Series], after: list[Series], version: str) -> None:
    ingress_before, executor_before = before
    ingress_after, executor_after = after
    server = "mcp_server_operation_duration_seconds"
    call = {"mcp_method_name": "tools/call", "mcp_protocol_version": version}
    assert (
        moved(ingress_before, ingress_after, f"{server}_count", **call, gen_ai_tool_name="echo__echo", error_type="")
        == 2
    )
    assert (
        moved(ingress_before, ingress_after, f"{server}_sum", **call, gen_ai_tool_name="echo__echo", error_type="") > 0
    )
    tool_error = {**call, "gen_ai_tool_name": "echo__fail", "error_type": "tool_error"}
    assert moved(ingress_before, ingress_after, f"{server}_bucket", **tool_error, le="+Inf") == 1
    # a refused call names no tool: its name is the agent's word, not a tool that ran
    assert (
        moved(ingress_before, ingress_after, f"{server}_count", **call, gen_ai_tool_name="", error_type="forbidden")
        == 1
    )
    assert not any("madeup" in value for _, labels in ingress_after for _, value in labels)

    # the registry is the process's: earlier tests' calls of `echo` and `fail` (some failed, upstream
    # unavailable) are in it too, so only the series this test moved count
    client = "mcp_client_operation_duration_seconds"

    def moved_series(tool: str) -> list[tuple[str, frozenset[tuple[str, str]]]]:
        return [
            k
            for k in executor_after
            if k[0] == f"{client}_count"
            and ("gen_ai_tool_name", tool) in k[1]
            and executor_after[k] > executor_before.get(k, 0)
        ]

    upstream = moved_series("echo")
    assert upstream and all(("error_type", "") in k[1] and ("mcp_method_name", "tools/call") in k[1] for k in upstream)
    assert sum(executor_after[k] - executor_before.get(k, 0) for k in upstream) == 2
    assert [dict(k[1])["error_type"] for k in moved_series("fail")] == ["tool_error"]


async def test_with_tracing_off_the_histograms_still_count_every_call(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    assert not tracing.enabled()
    async with running_gateway(nats_url, redis_url, tmp_path, _config(), metrics=True) as gateway:
        assert gateway.ingress.metrics_server is not None
        url = gateway.ingress.metrics_server.url
        before = await scrape(url)
        async with gateway.client(ADMIN_KEY) as client:
            version = client.protocol_version
            assert (await client.call_tool("echo__add", {"a": 1, "b": 2})).content
            await client.list_prompts()
        after = await scrape(url)
    server = "mcp_server_operation_duration_seconds_count"
    common = {"mcp_protocol_version": version, "error_type": ""}
    assert moved(before, after, server, mcp_method_name="tools/call", gen_ai_tool_name="echo__add", **common) == 1
    assert moved(before, after, server, mcp_method_name="prompts/list", gen_ai_tool_name="", **common) == 1
