"""`era_steps._accepted`, the few lookups that let the usual 2026-07-28 request skip the SDK's
inbound ladder: it never accepts what the ladder refuses (the ladder still words every refusal)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.shared.inbound import InboundModernRoute, classify_inbound_request, encode_header_value

from services.ingress.mcp_edge.era_steps import _accepted

pytestmark = pytest.mark.unit

MODERN = "2026-07-28"
VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"


def _mostly(right: Any, *wrong: Any) -> st.SearchStrategy[Any]:
    """`right` six times in seven or more: most drawn requests get far up the ladder."""
    return st.sampled_from([right, right, right, right, right, right, *wrong])


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    method = draw(st.sampled_from(["tools/call", "prompts/get", "resources/read", "ping", "tools/list"]))
    version = draw(_mostly(MODERN, "2025-11-25", "2099-01-01", 20260728, None))
    meta: dict[str, Any] = {VERSION_KEY: version, CAPABILITIES_KEY: {}}
    if draw(_mostly(False, True)):
        del meta[VERSION_KEY]
    if draw(_mostly(False, True)):
        del meta[CAPABILITIES_KEY]
    params: Any = {"_meta": draw(_mostly(meta, None, [], "x"))}
    name = draw(st.sampled_from(["echo", "srv__tool", "=?base64?ZWNobw==?=", "émoji", "", None, 7]))
    if name is not None:
        params["uri" if method == "resources/read" else "name"] = name
    params = draw(_mostly(params, None, [1]))
    headers = {
        "mcp-protocol-version": draw(_mostly(version if isinstance(version, str) else MODERN, MODERN, "2099-01-01")),
        "mcp-method": draw(_mostly(method, "tools/call", "ping")),
    }
    header_name = draw(_mostly(name if isinstance(name, str) else "echo", "echo", "émoji", "=?base64?ZWNobw==?="))
    headers["mcp-name"] = encode_header_value(header_name) if draw(st.booleans()) else header_name
    for header in ("mcp-protocol-version", "mcp-method", "mcp-name"):
        if draw(_mostly(False, True)):
            del headers[header]
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, headers


@settings(max_examples=500)
@given(requests())
def test_what_the_lookups_accept_the_ladder_accepts(request: tuple[dict[str, Any], dict[str, str]]) -> None:
    message, headers = request
    if _accepted(message, headers):
        assert isinstance(classify_inbound_request(message, headers=headers), InboundModernRoute)


def test_the_usual_request_is_accepted_without_the_ladder() -> None:
    meta = {VERSION_KEY: MODERN, CAPABILITIES_KEY: {}}
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "émoji", "_meta": meta}}
    headers = {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": encode_header_value("émoji")}
    assert _accepted(message, headers)
    assert not _accepted(message, headers | {"mcp-name": "echo"})
