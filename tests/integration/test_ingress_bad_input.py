"""Every kind of bad input gets a precise answer with the right code, and the gateway keeps serving."""

from __future__ import annotations

import pytest

from tests.support.gateway import ADMIN_HEADERS, ADMIN_KEY, echo_only_config, gateway_on_own_servers

pytestmark = pytest.mark.integration

AUTH = ADMIN_HEADERS
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bad-input")
    async with gateway_on_own_servers(workdir, echo_only_config(), max_body_bytes=LIMIT) as gw:
        yield gw


async def _still_serving(gateway, http) -> None:
    response = await http.post(
        gateway.url,
        headers=AUTH,
        json={
            "jsonrpc": "2.0",
            "id": 99,
            "method": "tools/call",
            "params": {"name": "echo__echo", "arguments": {"text": "alive"}},
        },
    )
    assert response.status_code == 200 and response.json()["result"]["content"][0]["text"] == "alive"


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        (b"{not json", 400, -32700, "not valid JSON"),
        (b"", 400, -32700, "not valid JSON"),
        (b'"a string"', 400, -32600, "JSON-RPC 2.0 object"),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 400, -32600, "batches are not supported"),
        (b'{"id":1,"method":"ping"}', 400, -32600, "'jsonrpc' must be"),
        (b'{"jsonrpc":"2.0","id":1,"method":5}', 400, -32600, "'method' must be"),
        (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', 400, -32600, "'id' must be"),
        (b'{"jsonrpc":"2.0","id":1}', 400, -32600, "needs 'method'"),
        (b'{"jsonrpc":"2.0","id":1,"method":"no/such"}', 200, -32601, "'no/such'"),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}', 200, -32602, "'params' must be an object"),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}', 200, -32602, "params.name"),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo__echo","arguments":[]}}',
            200,
            -32602,
            "arguments' must be an object",
        ),
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"zzz"}}', 200, -32602, "Unknown tool: 'zzz'"),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo__add","arguments":{"a":1}}}',
            200,
            -32602,  # no protocol version sent: 2025-03-26, before SEP-1303 made this an isError result
            "arguments.b: required, but missing",
        ),
    ],
)
async def test_malformed_requests(gateway, http, body, status, code, says):
    response = await http.post(gateway.url, headers={**AUTH, "Content-Type": "application/json"}, content=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and says in error["message"], error
    await _still_serving(gateway, http)


async def test_notifications_and_client_responses_are_accepted(gateway, http):
    for body in ({"jsonrpc": "2.0", "method": "notifications/initialized"}, {"jsonrpc": "2.0", "id": 7, "result": {}}):
        response = await http.post(gateway.url, headers=AUTH, json=body)
        assert response.status_code == 202 and response.content == b""


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "missing_key"),
        ({"Authorization": "Bearer wrong"}, "invalid_key"),
        ({"Authorization": "Basic abc"}, "malformed_authorization"),
    ],
)
async def test_keys_are_required(gateway, http, headers, error):
    response = await http.post(gateway.url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert response.status_code == 401
    refusal = response.json()["error"]  # a JSON-RPC error: what MCP clients show of an error status
    assert refusal["data"]["kind"] == error and refusal["message"].startswith(error.split("_")[0])
    assert response.headers["www-authenticate"].startswith("Bearer")


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


@pytest.mark.parametrize(
    ("key", "shown"),
    [("bk_not_a_key_of_this_gateway", "invalid key"), (None, "missing key")],
)
async def test_the_official_sdk_shows_why_a_key_was_refused(gateway, key, shown):
    """The SDK shows the JSON-RPC error of an error status; given anything else it says only
    "Server returned an error response", which is all a user with a mistyped key used to read."""
    with pytest.raises(BaseException) as refused:  # the SDK's client wraps it in exception groups
        async with gateway.client(key) as client:
            await client.list_tools()
    messages = [str(leaf) for leaf in _leaves(refused.value)]
    assert any(shown in message for message in messages), messages
    assert not any("Server returned an error response" in message for message in messages)


@pytest.mark.parametrize("valid_first", [True, False])
@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/mcp"), ("GET", "/v1/models"), ("GET", "/admin/v1/keys"), ("GET", "/metrics")]
)
async def test_two_authorization_headers_are_refused_on_every_route(gateway, http, valid_first, method, path):
    """A proxy checking the first `Authorization` and the app reading the last would disagree on who
    calls: a request carrying two is refused, whichever of them is valid, before it is read further."""
    base = gateway.url.removesuffix("/mcp")
    credentials = [("Authorization", f"Bearer {ADMIN_KEY}"), ("Authorization", "Bearer bk_someone_else")]
    headers = [*(credentials if valid_first else credentials[::-1]), ("Accept", "application/json")]
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}' if method == "POST" else None
    response = await http.request(method, base + path, headers=headers, content=body)
    assert response.status_code == 400
    answer = response.json()
    code = answer["error"]["code"] if path.startswith("/v1") else answer["error"]
    assert code == "repeated_authorization"
    assert "more than once" in str(answer)
    await _still_serving(gateway, http)


async def test_oversized_bodies_are_refused_before_parsing(gateway, http):
    big = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * LIMIT + b'"}}'
    response = await http.post(gateway.url, headers=AUTH, content=big)
    assert response.status_code == 413
    assert str(LIMIT) in response.json()["error"]["message"]

    async def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(4):
            yield b"a" * (LIMIT // 2)

    response = await http.post(gateway.url, headers=AUTH, content=chunks())
    assert response.status_code == 413
    await _still_serving(gateway, http)


async def test_accept_header_and_response_modes(gateway, http):
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    response = await http.post(gateway.url, headers={**AUTH, "Accept": "text/html"}, json=ping)
    assert response.status_code == 406
    response = await http.post(gateway.url, headers={**AUTH, "Accept": "text/event-stream"}, json=ping)
    assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
    assert response.text.startswith("event: message\ndata: ") and '"result":{}' in response.text


async def test_protocol_versions_and_sessions(gateway, http):
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    response = await http.post(gateway.url, headers=AUTH, json=init)
    assert response.json()["result"]["protocolVersion"] == "2025-03-26"
    session = response.headers["mcp-session-id"]
    ok = await http.post(
        gateway.url, headers={**AUTH, "Mcp-Session-Id": session}, json={"jsonrpc": "2.0", "id": 2, "method": "ping"}
    )
    assert ok.status_code == 200
    forged = await http.post(
        gateway.url,
        headers={**AUTH, "Mcp-Session-Id": session[:-3] + "AAA"},
        json={"jsonrpc": "2.0", "id": 3, "method": "ping"},
    )
    assert forged.status_code == 404 and "Session not found" in forged.json()["error"]["message"]
    unknown = await http.post(
        gateway.url,
        headers={**AUTH, "MCP-Protocol-Version": "1999-01-01"},
        json={"jsonrpc": "2.0", "id": 4, "method": "ping"},
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == -32022
    assert "2026-07-28" in unknown.json()["error"]["data"]["supported"]
    for version in ("2024-11-05", "2025-06-18", "2025-11-25", "2031-01-01"):
        init["params"]["protocolVersion"] = version
        negotiated = (await http.post(gateway.url, headers=AUTH, json=init)).json()["result"]["protocolVersion"]
        assert negotiated == (version if version != "2031-01-01" else "2025-11-25")
    response = await http.delete(gateway.url, headers={**AUTH, "Mcp-Session-Id": session})
    assert response.status_code == 200
    response = await http.get(gateway.url, headers={**AUTH, "Accept": "text/event-stream"})
    assert response.status_code == 400 and response.json()["error"] == "missing_session"
    response = await http.get(gateway.url, headers={**AUTH, "Accept": "application/json", "Mcp-Session-Id": session})
    assert response.status_code == 406
    response = await http.get(
        gateway.url, headers={**AUTH, "Accept": "text/event-stream", "Mcp-Session-Id": "forged.x"}
    )
    assert response.status_code == 404
    response = await http.put(gateway.url, headers=AUTH)
    assert response.status_code == 405 and "POST" in response.headers["allow"]


async def test_modern_requests_are_validated_by_the_sdk_ladder(gateway, http):
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    headers = {**AUTH, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"}
    response = await http.post(
        gateway.url,
        headers=headers,
        json={"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}},
    )
    result = response.json()["result"]
    assert result["supportedVersions"] == ["2026-07-28"] and result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "bastion"
    mismatch = await http.post(
        gateway.url,
        headers={**headers, "Mcp-Method": "tools/list"},
        json={"jsonrpc": "2.0", "id": 2, "method": "server/discover", "params": {"_meta": meta}},
    )
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == -32020
    no_meta = await http.post(
        gateway.url, headers=headers, json={"jsonrpc": "2.0", "id": 3, "method": "server/discover"}
    )
    assert no_meta.status_code == 400 and no_meta.json()["error"]["code"] == -32602


async def test_dns_rebinding_is_refused(gateway, http):
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    response = await http.post(gateway.url, headers={**AUTH, "Host": "evil.example.com"}, json=ping)
    assert response.status_code == 403 and response.json()["error"] == "forbidden_host"
    response = await http.post(gateway.url, headers={**AUTH, "Origin": "http://evil.example.com"}, json=ping)
    assert response.status_code == 403
    await _still_serving(gateway, http)
