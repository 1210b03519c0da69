"""Hostile input at the `/mcp` edge: each request gets a clear answer (never a 5xx), every request
that reached a handler leaves exactly one audit row, and sessions end when they should."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.settings import IngressSettings
from services.ingress.service import IngressService
from services.ingress.sessions.session_state import session_key
from tests.support.gateway import ADMIN_HEADERS, echo_only_config, gateway_on_own_servers, legacy_initialize
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

AUTH = ADMIN_HEADERS
MODERN = "2026-07-28"
MODERN_META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
SESSION_MAX_AGE = 3.0
SECRET = "hardening-test-shared-session-secret"


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hardening")
    async with gateway_on_own_servers(
        workdir, echo_only_config(), session_max_age=SESSION_MAX_AGE, session_secret=SECRET, max_name_chars=300
    ) as gw:
        yield gw


def _audit_rows(gateway) -> int:
    return gateway.services[0].store.count()


async def _rows_settle_at(gateway, expected: int) -> int:
    """Wait until the audit store holds `expected` rows (or more), then return what it holds."""
    deadline = asyncio.get_running_loop().time() + 20
    while await asyncio.to_thread(_audit_rows, gateway) < expected:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert gateway.ingress.trail is not None
    publisher = gateway.ingress.trail.publisher
    await poll_until(lambda: publisher.pending == 0, "the audit publisher to drain", within=10)
    return await asyncio.to_thread(_audit_rows, gateway)


def _call(name: str, arguments: object, request_id: object = 1) -> dict:
    params = {"name": name, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


# ---------------------------------------------------------------------- one call, one row


async def test_a_result_orjson_cannot_encode_is_answered_and_audited(gateway, http):
    before = await asyncio.to_thread(_audit_rows, gateway)
    half = 2**63  # each fits in 64 bits; the sum, which the upstream returns, does not
    response = await http.post(gateway.url, headers=AUTH, json=_call("echo__add", {"a": half, "b": half}))
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["content"][0]["text"] == str(2**64)
    assert result["structuredContent"] == {"result": 2**64}
    assert await _rows_settle_at(gateway, before + 1) == before + 1


async def test_integers_beyond_64_bits_reach_the_upstream_exactly(gateway, http):
    """orjson would read them as floats: the upstream would see 1.8446744073709552e+19."""
    before = await asyncio.to_thread(_audit_rows, gateway)
    huge = 2**64 + 5
    response = await http.post(gateway.url, headers=AUTH, json=_call("echo__add", {"a": huge, "b": 1}))
    assert response.status_code == 200, response.text
    assert response.json()["result"]["structuredContent"] == {"result": huge + 1}
    assert await _rows_settle_at(gateway, before + 1) == before + 1


async def test_deeply_nested_arguments_get_a_clear_error_and_a_row(gateway, http):
    before = await asyncio.to_thread(_audit_rows, gateway)
    nested: object = 1
    for _ in range(600):
        nested = {"x": nested}
    response = await http.post(gateway.url, headers=AUTH, json=_call("echo__echo", {"text": nested}))
    assert response.status_code < 500, response.text
    assert "error" in response.json()
    assert await _rows_settle_at(gateway, before + 1) == before + 1


# ---------------------------------------------------------------------- fields capped on the way in


@pytest.mark.parametrize(
    ("message", "field", "size", "limit"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "m" * 5000}, "method", 5000, 128),
        ({"jsonrpc": "2.0", "id": "i" * 300, "method": "ping"}, "id", 300, 256),
        (_call("n" * 400_000, {}), "params.name", 400_000, 300),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {"name": "p" * 301}},
            "params.name",
            301,
            300,
        ),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "file:///" + "u" * 9000}},
            "params.uri",
            9008,
            8192,
        ),
        (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "completion/complete",
                "params": {"ref": {"type": "ref/prompt", "name": "p" * 500}, "argument": {"name": "a", "value": ""}},
            },
            "params.ref.name",
            500,
            300,
        ),
        (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "echo__echo", "_meta": {"x": "y" * 20_000}},
            },
            "params._meta",
            20_008,
            16_384,
        ),
    ],
)
async def test_oversized_fields_are_refused_naming_field_size_and_limit(gateway, http, message, field, size, limit):
    before = await asyncio.to_thread(_audit_rows, gateway)
    response = await http.post(gateway.url, headers=AUTH, json=message)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["data"] == {"field": field, "size": size, "limit": limit, "unit": error["data"]["unit"]}
    assert field in error["message"] and str(size) in error["message"] and str(limit) in error["message"]
    assert error["code"] == (-32600 if field in ("method", "id") else -32602)
    # refused before any handler: nothing ran, so nothing to audit (and nothing oversized in the audit)
    assert await asyncio.to_thread(_audit_rows, gateway) == before


async def test_an_integer_id_beyond_64_bits_is_refused_not_a_500(gateway, http):
    body = b'{"jsonrpc":"2.0","id":18446744073709551616000,"method":"ping"}'
    response = await http.post(gateway.url, headers={**AUTH, "Content-Type": "application/json"}, content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert response.json()["id"] is None and error["data"] == {"field": "id", "size": 74, "limit": 64, "unit": "bits"}


@pytest.mark.parametrize(
    ("header", "value", "says"),
    [
        ("X-Bastion-Include-Tools", ",".join(f"t{i}" for i in range(65)), "65 items"),
        ("X-Bastion-Include-Servers", "s" * 257, "257 characters"),
    ],
)
async def test_narrowing_headers_are_bounded(gateway, http, header, value, says):
    response = await http.post(
        gateway.url, headers={**AUTH, header: value}, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    )
    assert response.status_code == 400
    assert header in response.json()["error"]["message"] and says in response.json()["error"]["message"]


# ---------------------------------------------------------------------- hosts, listen, sessions


@pytest.mark.parametrize(
    "headers",
    [
        [("Origin", "http://[::1")],
        [("Origin", "null")],
        [("Origin", "http://localhost"), ("Origin", "http://evil.example.com")],
        [("Host", "localhost"), ("Host", "evil.example.com")],
    ],
)
async def test_bad_or_repeated_origins_are_forbidden_not_a_500(gateway, headers):
    names = {name for name, _ in headers}
    head = [(k, v) for k, v in _head(gateway).items() if k not in names] + headers
    status, body = await _raw_post(gateway, head, b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    assert status == 403, body
    assert b"forbidden_host" in body


async def test_subscriptions_listen_with_a_malformed_resource_list_is_a_clear_error(gateway, http):
    for bad, says in ((5, "must be a list"), (["ok", 7], "must be a list"), ([f"r{i}" for i in range(101)], "101")):
        response = await http.post(
            gateway.url,
            headers={**AUTH, "MCP-Protocol-Version": MODERN, "Mcp-Method": "subscriptions/listen"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "subscriptions/listen",
                "params": {"notifications": {"resourceSubscriptions": bad}, "_meta": MODERN_META},
            },
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == -32602 and says in response.json()["error"]["message"]


async def _initialize(http, url: str) -> str:
    response = await http.post(url, headers=AUTH, json=legacy_initialize())
    assert response.status_code == 200
    return response.headers["mcp-session-id"]


async def _ping(http, url: str, session: str) -> int:
    response = await http.post(
        url, headers={**AUTH, "Mcp-Session-Id": session}, json={"jsonrpc": "2.0", "id": 2, "method": "ping"}
    )
    return response.status_code


async def test_delete_ends_the_session_on_every_replica(gateway, http):
    other = IngressService(
        IngressSettings(nats_url=gateway.nats_url, port=0, session_secret=SECRET, session_max_age=SESSION_MAX_AGE)
    )
    await other.start()
    try:
        session = await _initialize(http, gateway.url)
        assert await _ping(http, other.url, session) == 200
        response = await http.delete(gateway.url, headers={**AUTH, "Mcp-Session-Id": session})
        assert response.status_code == 200
        assert await _ping(http, gateway.url, session) == 404
        # the other replica learns it from KV `bastion_sessions`, within moments
        await poll_until(lambda: other.handlers.state.is_ended(session_key(session)), "the end to spread", within=10)
        assert await _ping(http, other.url, session) == 404
        again = await http.delete(other.url, headers={**AUTH, "Mcp-Session-Id": session})
        assert again.status_code == 404
    finally:
        await other.stop()


async def test_delete_ends_the_sessions_open_stream(gateway, http):
    session = await _initialize(http, gateway.url)
    headers = {**AUTH, "Accept": "text/event-stream", "Mcp-Session-Id": session}
    async with http.stream("GET", gateway.url, headers=headers) as stream:
        assert stream.status_code == 200
        chunks = stream.aiter_bytes()
        assert b": bastion" in await anext(chunks)
        assert (await http.delete(gateway.url, headers={**AUTH, "Mcp-Session-Id": session})).status_code == 200
        async with asyncio.timeout(10):  # a hang guard: the stream ends at once
            rest = b"".join([chunk async for chunk in chunks])
    assert b"event:" not in rest


async def test_delete_needs_a_genuine_session_of_this_key(gateway, http):
    assert (await http.delete(gateway.url, headers=AUTH)).status_code == 400
    forged = await http.delete(gateway.url, headers={**AUTH, "Mcp-Session-Id": "bm90LW91cnM.c2lnbmF0dXJl"})
    assert forged.status_code == 404


async def test_sessions_expire_after_their_max_age(gateway, http):
    session = await _initialize(http, gateway.url)
    assert await _ping(http, gateway.url, session) == 200
    deadline = asyncio.get_running_loop().time() + SESSION_MAX_AGE + 10
    while await _ping(http, gateway.url, session) == 200:  # issued_at has one-second resolution
        assert asyncio.get_running_loop().time() < deadline, "the session never expired"
        await asyncio.sleep(0.25)
    assert await _ping(http, gateway.url, session) == 404


# ---------------------------------------------------------------------- raw HTTP


def _head(gateway) -> dict[str, str]:
    port = gateway.ingress.port
    return {
        "Host": f"127.0.0.1:{port}",
        "Authorization": AUTH["Authorization"],
        "Accept": AUTH["Accept"],
        "Content-Type": "application/json",
    }


async def _raw_post(gateway, headers: list[tuple[str, str]], body: bytes) -> tuple[int, bytes]:
    """One POST /mcp written byte for byte (repeated headers and all); the status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.ingress.port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers)
        writer.write(f"POST /mcp HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        writer.write(body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]
