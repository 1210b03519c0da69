"""OpenTelemetry's MCP and GenAI semantic conventions (1.39, the names observability backends chart).

The one place a request becomes span names, span attributes and the labels of the convention metrics.

Three operations are described here: an agent's MCP request at ingress (a SERVER span and
`mcp.server.operation.duration`), the executor's request to an upstream MCP server (a CLIENT span
and `mcp.client.operation.duration`), and the executor's chat completion at an LLM provider (a
CLIENT span, `gen_ai.client.operation.duration`, `gen_ai.client.token.usage`). The histograms are
Prometheus metrics (`metrics.MCP_SERVER_DURATION`, ...: dots become underscores) recorded whether
tracing is on or not; the span attributes only when a span is recorded.

Each attribute costs the SDK about a microsecond to validate and store, so only what the
conventions ask for is set: `jsonrpc.protocol.version` only when it is not `2.0` (never, here), and
no HTTP attributes on the ingress span, whose transport the span itself implies.

Labels stay bounded whatever an agent sends: a method outside `metrics.METHODS` is `other`, a tool
name is a label only once the tool ran (an agent inventing names would otherwise mint a series per
name), an error is our error kind or a standard JSON-RPC code, anything else `_OTHER`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.trace import Span, Status, StatusCode

from libs.common.runtime import metrics

__all__ = [
    "SPEC_VERSION",
    "error_type",
    "llm_finished",
    "llm_started",
    "server_finished",
    "server_started",
    "span_name",
    "upstream_finished",
    "upstream_started",
]

SPEC_VERSION = "1.39.0"
"""The semantic conventions release whose names these are (MCP since 1.38; GenAI `gen_ai.provider.name`)."""

MCP_METHOD_NAME = "mcp.method.name"
MCP_PROTOCOL_VERSION = "mcp.protocol.version"
MCP_SESSION_ID = "mcp.session.id"
MCP_RESOURCE_URI = "mcp.resource.uri"
JSONRPC_REQUEST_ID = "jsonrpc.request.id"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_PROMPT_NAME = "gen_ai.prompt.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
ERROR_TYPE = "error.type"
RPC_RESPONSE_STATUS_CODE = "rpc.response.status_code"
NETWORK_TRANSPORT = "network.transport"
NETWORK_PROTOCOL_NAME = "network.protocol.name"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
MCP_SERVER_OPERATION_DURATION = "mcp.server.operation.duration"
MCP_CLIENT_OPERATION_DURATION = "mcp.client.operation.duration"
GEN_AI_CLIENT_OPERATION_DURATION = "gen_ai.client.operation.duration"

EXECUTE_TOOL = "execute_tool"
CHAT = "chat"
TOOL_ERROR = "tool_error"
"""`error.type` of a `tools/call` whose tool ran and answered `isError: true`."""
OTHER = "_OTHER"

_JSONRPC_CODES = frozenset({-32700, -32600, -32601, -32602, -32603, -32002, -32042})
"""Codes an `error.type` label may name as they are (JSON-RPC's own, MCP's resource-not-found and
URL-elicitation-required); an upstream's own codes are `_OTHER`."""
_NAMED = frozenset({"tools/call", "prompts/get"})
_RAN = frozenset({"ok", "tool_error"})
"""Audit statuses of a request that reached its tool: only then is its name a metric label."""

Attributes = dict[str, str | int | float | bool]


def span_name(method: str, target: str | None) -> str:
    """`{mcp.method.name} {target}`: the tool or prompt name of a call or prompt, else the method."""
    return f"{method} {target}" if target else method


def _target(method: str, params: Any) -> str | None:
    if method in _NAMED and isinstance(params, dict) and type(name := params.get("name")) is str:
        return name
    return None


def server_started(
    method: str, params: Any, version: str, request_id: Any, session: str | None
) -> tuple[str, Attributes]:
    """The name and opening attributes of the SERVER span of an agent's request at ingress.

    `session` is our digest of the `Mcp-Session-Id` (`session_state.session_key`), never the id itself:
    the id is bearer-like and traces are read by more people than hold keys."""
    attributes: Attributes = {
        MCP_METHOD_NAME: method,
        MCP_PROTOCOL_VERSION: version,
        NETWORK_TRANSPORT: "tcp",
    }
    if type(request_id) is str or type(request_id) is int:
        attributes[JSONRPC_REQUEST_ID] = str(request_id)
    if session is not None:
        attributes[MCP_SESSION_ID] = session
    target = _target(method, params)
    if target is not None:
        if method == "tools/call":
            attributes[GEN_AI_OPERATION_NAME] = EXECUTE_TOOL
            attributes[GEN_AI_TOOL_NAME] = target
        else:
            attributes[GEN_AI_PROMPT_NAME] = target
    elif method.startswith("resources/") and isinstance(params, dict) and type(uri := params.get("uri")) is str:
        attributes[MCP_RESOURCE_URI] = uri
    return span_name(method, target), attributes


def error_type(payload: Mapping[str, Any], error_kind: str | None, status: str | None) -> str | None:
    """`error.type` of an answer: our error kind, `tool_error`, a JSON-RPC code, or None when it succeeded."""
    if error_kind:
        return error_kind
    if status == TOOL_ERROR:
        return TOOL_ERROR
    error = payload.get("error")
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    return str(code) if code in _JSONRPC_CODES else OTHER


def server_finished(
    span: Span | None,
    method: str,
    params: Any,
    version: str,
    payload: Mapping[str, Any],
    audit: Any,
    seconds: float,
    call_id: str | None = None,
) -> None:
    """Record `mcp.server.operation.duration` of an answered request, and its outcome on `span`.

    `audit` is the request's `AuditEvent` (or None): its `arguments` and `result` are set only when
    content logging is on for the deployment and the key, cut to the audit size limit, so the opt-in
    `gen_ai.tool.call.arguments` / `.result` follow the same switches."""
    error_kind = status = None
    if audit is not None:
        error_kind, status = audit.error_kind, audit.status
    error = error_type(payload, error_kind, status)
    tool = _target(method, params) if method == "tools/call" and status in _RAN else None
    _observe(metrics.MCP_SERVER_DURATION, method, tool, error, version, seconds)
    if span is None or not span.is_recording():
        return
    attributes: Attributes = {MCP_SERVER_OPERATION_DURATION: seconds}
    if error is not None:
        attributes[ERROR_TYPE] = error
    answer = payload.get("error")
    if isinstance(answer, dict) and type(code := answer.get("code")) is int:
        attributes[RPC_RESPONSE_STATUS_CODE] = str(code)
    if call_id is not None and method == "tools/call":
        attributes[GEN_AI_TOOL_CALL_ID] = call_id
    if audit is not None and method == "tools/call":
        if audit.arguments is not None:
            attributes[GEN_AI_TOOL_CALL_ARGUMENTS] = audit.arguments
        if audit.result is not None:
            attributes[GEN_AI_TOOL_CALL_RESULT] = audit.result
    span.set_attributes(attributes)
    if error is not None:
        span.set_status(_error_status(error))


@functools.lru_cache(maxsize=256)
def _endpoint(transport: str, url: str | None) -> tuple[tuple[str, str | int], ...]:
    """The network attributes of an upstream: stdio is a pipe, the rest HTTP over TCP to its host."""
    if transport == "stdio" or url is None:
        return ((NETWORK_TRANSPORT, "pipe"),)
    parts = urlsplit(url)
    found: list[tuple[str, str | int]] = [(NETWORK_TRANSPORT, "tcp"), (NETWORK_PROTOCOL_NAME, "http")]
    if parts.hostname:
        found.append((SERVER_ADDRESS, parts.hostname))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    found.append((SERVER_PORT, port))
    return tuple(found)


def upstream_started(
    method: str, tool: str | None, request_id: str, version: str | None, transport: str, url: str | None
) -> tuple[str, Attributes]:
    """The name and opening attributes of the executor's CLIENT span toward an upstream server.

    `tool` is the upstream's own name of the tool (the executor checked it is one it lists)."""
    attributes: Attributes = {
        MCP_METHOD_NAME: method,
        JSONRPC_REQUEST_ID: request_id,
        **dict(_endpoint(transport, url)),
    }
    if version is not None:
        attributes[MCP_PROTOCOL_VERSION] = version
    if tool is not None:
        attributes[GEN_AI_OPERATION_NAME] = EXECUTE_TOOL
        attributes[GEN_AI_TOOL_NAME] = tool
        attributes[GEN_AI_TOOL_CALL_ID] = request_id
    return span_name(method, tool), attributes


def upstream_finished(
    span: Span | None,
    method: str,
    tool: str | None,
    version: str | None,
    error_kind: str | None,
    tool_error: bool,
    code: int | None,
    seconds: float,
) -> None:
    """Record `mcp.client.operation.duration` of one request to an upstream, and its outcome on `span`."""
    error = error_kind or (TOOL_ERROR if tool_error else None)
    _observe(metrics.MCP_CLIENT_DURATION, method, tool, error, version or "", seconds)
    if span is None or not span.is_recording():
        return
    attributes: Attributes = {MCP_CLIENT_OPERATION_DURATION: seconds}
    if error is not None:
        attributes[ERROR_TYPE] = error
        span.set_status(_error_status(error))
    if code is not None:
        attributes[RPC_RESPONSE_STATUS_CODE] = str(code)
    span.set_attributes(attributes)


def llm_started(provider: str, model: str, url: str) -> tuple[str, Attributes]:
    """The name and opening attributes of the executor's CLIENT span of a chat completion."""
    attributes: Attributes = {
        GEN_AI_OPERATION_NAME: CHAT,
        GEN_AI_PROVIDER_NAME: provider,
        GEN_AI_REQUEST_MODEL: model,
        **dict(_endpoint("http", url)),
    }
    return f"{CHAT} {model}", attributes


def llm_finished(
    span: Span | None,
    provider: str,
    model: str,
    error_kind: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    finish_reason: str | None,
    seconds: float,
) -> None:
    """Record `gen_ai.client.operation.duration` and `gen_ai.client.token.usage` of one chat completion.

    (Provider and model are configured names: bounded labels), and its outcome on `span`."""
    error = error_kind or ""
    metrics.child(metrics.GEN_AI_DURATION, CHAT, provider, model, error).observe(seconds)
    if input_tokens is not None:
        metrics.child(metrics.GEN_AI_TOKENS, CHAT, provider, model, "input").observe(input_tokens)
    if output_tokens is not None:
        metrics.child(metrics.GEN_AI_TOKENS, CHAT, provider, model, "output").observe(output_tokens)
    if span is None or not span.is_recording():
        return
    attributes: Attributes = {GEN_AI_CLIENT_OPERATION_DURATION: seconds}
    if error_kind:
        attributes[ERROR_TYPE] = error_kind
        span.set_status(_error_status(error_kind))
    if input_tokens is not None:
        attributes[GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
    if output_tokens is not None:
        attributes[GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
    span.set_attributes(attributes)
    if finish_reason:
        span.set_attribute(GEN_AI_RESPONSE_FINISH_REASONS, [finish_reason])


def _observe(histogram: Any, method: str, tool: str | None, error: str | None, version: str, seconds: float) -> None:
    if method not in metrics.METHODS:
        method = "other"
    key = (histogram, method, tool or "", error or "", version)
    # read the children's cache here first: on every call, one function call less than `metrics.child`
    child = metrics.CHILDREN.get(key) or metrics.child(histogram, *key[1:])
    child.observe(seconds)


def _error_status(error: str) -> Status:
    return Status(StatusCode.ERROR, error)
