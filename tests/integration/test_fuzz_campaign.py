"""The fuzz campaign, kept in the suite: hypothesis generates JSON-RPC requests over every method
`/mcp` accepts (and some it does not), with hostile bodies and headers, against the whole gateway
(real NATS, Valkey, ClickHouse engine, upstream servers). Fixed budget, derandomized.

Required, as in docs/reliability.md ("Fuzzing"): 0 HTTP 5xx, 0 hangs, 0 service restarts, and
every request that reached an audited handler has exactly one audit row.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from libs.common.runtime.refusals import AUTH_REFUSED_KIND
from tests.support.gateway import (
    ADMIN_HEADERS,
    ADMIN_KEY,
    NOTHING_KEY,
    READONLY_KEY,
    READS_EXAMPLES,
    ROOT,
    default_config,
    gateway_on_own_servers,
    legacy_initialize,
)
from tests.support.ingress_trail import REQUEST_KINDS, settled_trail

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning"),
    # The strategies draw only from Hypothesis; the gateway under test runs on the event loop meanwhile (this
    # campaign runs in a thread) and its retries' jitter uses the global `random`, which Hypothesis notices as
    # a changed random state during a draw. The suite once failed on it under load.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

REQUESTS = 300
"""The budget: requests per run (a few hundred keep the campaign well under a minute)."""
HANG = 30.0
"""Seconds after which a request without an answer counts as a hang (calls time out at 10 s)."""
BOTH = "application/json, text/event-stream"
MODERN = "2026-07-28"
MODERN_META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
METHODS = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "notifications/initialized",
    "notifications/cancelled",
]
AUDITED = [
    "tools/call",
    "prompts/get",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
]
TOOLS = ["echo__echo", "echo__add", "echo__fail", "notes__list_notes", "notes__search", "interactive__greet"]
PROMPTS = ["interactive__greet", "interactive__nope"]
URIS = ["memo://pinned", "memo://notes/7", "memo://nowhere", "file:///etc/passwd"]


def _config() -> dict[str, Any]:
    interactive = str(ROOT / "tests" / "support" / "interactive_server.py")
    return default_config(
        {
            "interactive": {
                "command": sys.executable,
                "args": [interactive],
                "protocol": "legacy",
                "sandbox": READS_EXAMPLES,
            }
        }
    )


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz")
    # refusal windows of a second: the campaign always spans several, so their `auth.refused` rows are
    # always among the rows counted, as they are whenever a campaign outlasts the default window
    options = {"call_timeout": 10.0, "header_timeout": 5.0, "auth_refusal_window": 1.0}
    async with gateway_on_own_servers(workdir, _config(), **options) as gw:
        yield gw


# ---------------------------------------------------------------------- what the fuzzer sends

printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
header_value = printable.map(str.strip)
"""A header value an HTTP client can send: whitespace around it is not part of a field value (RFC 9110),
and the client refuses it before anything reaches the gateway."""
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _dumps(value: Any) -> bytes:
    """The standard library's JSON: integers beyond 64 bits are valid JSON, and fuzzed."""
    return json.dumps(value).encode()


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"x": value}
    return value


HOSTILE = {
    "long": "x" * 300_000,
    "deep": _nested(300),
    "deeper": _nested(600),
    "u64+1": 2**64,
    "i64-1": -(2**63) - 1,
    "odd text": "\u0000\ud7ff\U0010ffff",
}
hostile = st.sampled_from(sorted(HOSTILE)).map(HOSTILE.__getitem__)
arguments = st.one_of(
    st.dictionaries(st.sampled_from(["text", "a", "b", "query", "name", "title"]), json_values | hostile, max_size=3),
    json_values,
)
meta = st.one_of(st.none(), st.just(MODERN_META), st.dictionaries(st.text(max_size=20), json_values, max_size=3))
names = st.sampled_from(TOOLS + PROMPTS) | st.text(max_size=80) | hostile
uris = st.sampled_from(URIS) | printable | hostile
refs = st.fixed_dictionaries(
    {"type": st.sampled_from(["ref/prompt", "ref/resource", "ref/nope"])},
    optional={"name": st.sampled_from(PROMPTS) | printable, "uri": st.sampled_from(URIS) | printable},
)
any_params = st.none() | json_values
PARAMS = {
    "initialize": st.fixed_dictionaries(
        {"protocolVersion": st.sampled_from(["2025-06-18", "2024-11-05", MODERN, "1999"]) | json_values},
        optional={"capabilities": json_values, "clientInfo": json_values},
    ),
    "tools/call": st.fixed_dictionaries({"name": names}, optional={"arguments": arguments, "_meta": meta}),
    "prompts/get": st.fixed_dictionaries({"name": names}, optional={"arguments": arguments}),
    "resources/read": st.fixed_dictionaries({"uri": uris}),
    "resources/subscribe": st.fixed_dictionaries({"uri": uris}),
    "resources/unsubscribe": st.fixed_dictionaries({"uri": uris}),
    "completion/complete": st.fixed_dictionaries(
        {"ref": refs | json_values, "argument": st.fixed_dictionaries({"name": printable, "value": printable})}
    ),
    "logging/setLevel": st.fixed_dictionaries({"level": st.sampled_from(["debug", "info", "loud"]) | json_values}),
    "subscriptions/listen": st.fixed_dictionaries(
        {
            "notifications": st.fixed_dictionaries(
                {},
                optional={
                    "toolsListChanged": st.booleans() | json_values,
                    "resourceSubscriptions": st.lists(st.sampled_from(URIS) | printable, max_size=5) | json_values,
                },
            )
            | json_values
        }
    ),
    "notifications/cancelled": st.fixed_dictionaries({"requestId": json_values}),
}
request_ids = st.integers(1, 2**31) | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
odd_ids = st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers(2**64, 2**70) | json_values
wild_messages = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0"]) | json_values},
    optional={
        "id": request_ids | odd_ids,
        "method": st.sampled_from(METHODS) | printable | st.integers(5000, 6000).map(lambda n: "m" * n),
        "params": any_params | st.sampled_from(list(PARAMS.values())).flatmap(lambda strategy: strategy),
        "result": json_values,
    },
)
hostile_headers = st.fixed_dictionaries(
    {},
    optional={
        "origin": st.sampled_from(["null", "http://[::1", "http://localhost", "http://evil.example.com", ""]),
        "x-bastion-include-tools": header_value | st.sampled_from([100, 1000]).map(lambda n: ",".join(["t*"] * n)),
        "x-bastion-include-servers": header_value | st.sampled_from(["echo", "echo,notes", ""]),
        "x-bastion-timeout": st.sampled_from(["0.5", "-1", "nan", "inf", "1e309", "abc", "3"]),
        "mcp-session-id": header_value,
        "x-junk": header_value,
    },
)


@st.composite
def fuzzed_requests(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes]:
    """(HTTP method, headers, body). Most are well-formed enough to reach a handler, with hostile
    values inside; the rest are malformed at every layer in turn."""
    auth = draw(st.sampled_from([ADMIN_KEY] * 6 + [READONLY_KEY, NOTHING_KEY, "nope"]))
    headers = {
        "authorization": f"Bearer {auth}",
        "accept": draw(
            st.sampled_from(["application/json, text/event-stream"] * 4 + ["application/json", "text/html"])
        ),
        "content-type": "application/json",
    }
    era = draw(st.sampled_from(["session", "session", "modern", "none"]))
    method = draw(st.sampled_from(METHODS + AUDITED * 2))
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if not method.startswith("notifications/"):
        message["id"] = draw(request_ids)
    params = draw(PARAMS.get(method, any_params))
    if era == "session":
        headers["mcp-session-id"] = "SESSION"
    elif era == "modern":
        headers |= {"mcp-protocol-version": MODERN, "mcp-method": method}
        if draw(st.booleans()) and isinstance(params, dict):
            params = {**params, "_meta": MODERN_META}
        elif params is None or draw(st.booleans()):
            params = {"_meta": MODERN_META}
    if params is not None:
        message["params"] = params
    shape = draw(st.sampled_from(["as is"] * 6 + ["wild", "batch", "bytes"]))
    if shape == "wild":
        message = draw(wild_messages)
    body = {
        "as is": lambda: _dumps(message),
        "wild": lambda: _dumps(message),
        "batch": lambda: _dumps([message, message]),
        "bytes": lambda: draw(st.binary(max_size=200)),
    }[shape]()
    if draw(st.integers(0, 4)) == 0:
        headers |= draw(hostile_headers)
    http_method = draw(st.sampled_from(["POST"] * 12 + ["GET", "DELETE", "PUT"]))
    return http_method, headers, body


# ---------------------------------------------------------------------- the campaign


def _campaign(url: str, sessions: tuple[str, str], outcomes: collections.Counter[str]) -> None:
    """Runs in a worker thread (hypothesis is synchronous); the gateway keeps serving on the loop."""

    @settings(
        max_examples=REQUESTS,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(request=fuzzed_requests())
    def one_request(request: tuple[str, dict[str, str], bytes]) -> None:
        method, headers, body = request
        if headers.get("mcp-session-id") == "SESSION":  # a DELETE ends its own session, not the shared one
            headers = {**headers, "mcp-session-id": sessions[method == "DELETE"]}
        try:
            with client.stream(method, url, headers=headers, content=body) as r:
                if r.headers.get("content-type", "").startswith("text/event-stream"):
                    next(r.iter_bytes(), b"")  # a stream's first event is enough; leaving ends it
                else:
                    r.read()
                status = r.status_code
        except httpx2.TimeoutException:
            outcomes["hang"] += 1
            raise AssertionError(f"no answer within {HANG}s to {method} {body[:200]!r} with {headers}") from None
        outcomes[f"HTTP {status}"] += 1
        assert status < 500, f"HTTP {status} for {method} {body[:300]!r} with {headers}"

    with httpx2.Client(timeout=HANG) as client:
        one_request()


async def test_fuzzed_requests_get_answers_not_errors_and_every_handled_request_is_audited(gateway):
    ingress = gateway.ingress
    async with httpx2.AsyncClient(timeout=30) as http:
        auth = ADMIN_HEADERS
        init = legacy_initialize(request_id=0, client="fuzz")
        sessions = tuple(
            [(await http.post(gateway.url, headers=auth, json=init)).headers["mcp-session-id"] for _ in "ab"]
        )
        upstream_pid = await _echo_pid(http, gateway.url, auth)

        outcomes: collections.Counter[str] = collections.Counter()
        await asyncio.to_thread(_campaign, gateway.url, sessions, outcomes)

        # still serving, nothing restarted: the same upstream process answers through the same services
        assert ingress._http is not None and not ingress._http.task.done()
        assert await _echo_pid(http, gateway.url, auth) == upstream_pid
    assert sum(outcomes.values()) == REQUESTS
    rows = await settled_trail(gateway, refused=outcomes["HTTP 401"])
    handled = sum(row.kind in REQUEST_KINDS for row in rows)
    windows = sum(row.kind == AUTH_REFUSED_KIND for row in rows)
    print(
        f"\nfuzz: {REQUESTS} requests, {dict(sorted(outcomes.items()))}; {handled} request rows"
        f" (2 of them the liveness calls), {windows} auth.refused rows"
    )


async def _echo_pid(http: httpx2.AsyncClient, url: str, auth: dict[str, str]) -> int:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo__stats", "arguments": {}}}
    response = await http.post(url, headers=auth, json=call)
    return response.json()["result"]["structuredContent"]["pid"]
