"""The `/mcp` pipeline's steps on the JSON-RPC message, each alone with the next step a recorder.

Parsing, the envelope, field caps, notifications, the request's context, its protocol era and its
session (`services.ingress.mcp_edge`).
"""

from __future__ import annotations

import orjson
import pytest

from libs.common.contracts.messages import CancelCall
from services.ingress.field_limits import FieldLimits
from services.ingress.mcp_edge import (
    BuildContext,
    EndSession,
    Listen,
    ReadMessage,
    ResolveEra,
    TakeNotification,
)
from tests.support.edge_steps import CALLER, ENVELOPE, KEY_ID, MODERN, exchange, request, run, sessions

pytestmark = pytest.mark.unit


def _read(limits: FieldLimits | None = None) -> ReadMessage:
    async def taken(x) -> None:
        raise AssertionError("a request was taken as a notification")

    return ReadMessage(limits or FieldLimits(), taken)


def _posted(body: bytes, *headers: tuple[str, str]):
    """An exchange as `ReadBody` leaves it."""
    x, wire = exchange(*headers)
    x.body = body
    return x, wire


async def test_read_message_refuses_a_body_that_is_not_json():
    x, wire = _posted(b'{"jsonrpc": "2.0", ')
    assert (await run(_read(), x)).count == 0 and wire.json()["error"]["code"] == -32700 and wire.status == 400


async def test_read_message_keeps_integers_beyond_64_bits_exact_and_caps_them():
    x, wire = _posted(b'{"jsonrpc": "2.0", "id": 18446744073709551621, "method": "ping"}')
    assert (await run(_read(), x)).count == 0 and x.message["id"] == 2**64 + 5
    assert wire.json()["error"]["data"] == {"field": "id", "size": 65, "limit": 64, "unit": "bits"}
    assert wire.json()["id"] is None  # an id over its cap is not echoed


@pytest.mark.parametrize(
    ("message", "echoed"),
    [
        ([{"jsonrpc": "2.0"}], None),
        ({"jsonrpc": "1.0", "id": 4, "method": "ping"}, 4),
        ({"jsonrpc": "2.0", "id": True}, None),
        ({"jsonrpc": "2.0", "id": 5, "method": ""}, 5),
        ({"jsonrpc": "2.0", "id": [5], "method": "ping"}, None),
        ({"id": 6, "method": "ping"}, 6),
        ("ping", None),
    ],
)
async def test_read_message_refuses_anything_but_one_json_rpc_message(message, echoed):
    x, wire = _posted(orjson.dumps(message))
    assert (await run(_read(), x)).count == 0 and wire.status == 400
    assert wire.json()["error"]["code"] == -32600 and wire.json()["id"] == echoed


async def test_read_message_names_the_shape_before_the_caps():
    # not JSON-RPC 2.0 and a method over its cap: the shape is what is wrong first
    x, wire = _posted(orjson.dumps({"jsonrpc": "1.0", "id": 1, "method": "m" * 129}))
    assert (await run(_read(), x)).count == 0 and wire.json()["error"]["code"] == -32600


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "m" * 129}, "method"),
        ({"jsonrpc": "2.0", "id": "i" * 257, "method": "ping"}, "id"),
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "n" * 257}}, "params.name"),
        ({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "u" * 8193}}, "params.uri"),
        ({"jsonrpc": "2.0", "id": 1, "method": "c", "params": {"ref": {"name": "n" * 257}}}, "params.ref.name"),
        ({"jsonrpc": "2.0", "id": 1, "method": "c", "params": {"ref": {"uri": "u" * 8193}}}, "params.ref.uri"),
        ({"jsonrpc": "2.0", "id": 1, "method": "c", "params": {"_meta": {"m": "x" * 16384}}}, "params._meta"),
        # the first field over its cap is named, in the order the caps are asked
        ({"jsonrpc": "2.0", "id": 1, "method": "m" * 129, "params": {"name": "n" * 257}}, "method"),
        ({"jsonrpc": "2.0", "id": 1, "method": "c", "params": {"name": "n" * 257, "uri": "u" * 8193}}, "params.name"),
    ],
)
async def test_read_message_caps_each_field(message, field):
    x, wire = _posted(orjson.dumps(message))
    assert (await run(_read(), x)).count == 0 and wire.status == 400
    assert wire.json()["error"]["data"]["field"] == field
    assert wire.json()["id"] == (None if field == "id" else 1)


@pytest.mark.parametrize(
    "params",
    [
        None,
        {"name": "n" * 256, "arguments": {"a": "b" * 100_000}},
        {"uri": "u" * 8192, "ref": "not an object", "_meta": None},
        {"name": 7, "uri": ["u" * 9000], "ref": {"name": None}},
    ],
)
async def test_read_message_passes_a_request_within_its_caps(params):
    message = {"jsonrpc": "2.0", "id": "i" * 256, "method": "m" * 128}
    if params is not None:
        message["params"] = params
    x, _ = _posted(orjson.dumps(message))
    assert (await run(_read(), x)).count == 1 and x.message == message and x.params == params


async def test_read_message_hands_what_is_not_a_request_to_take():
    taken: list[object] = []

    async def take(x) -> None:
        taken.append(x.message)

    notification = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    answer = {"jsonrpc": "2.0", "id": 3, "result": {}}
    for message in (notification, answer):
        x, _ = _posted(orjson.dumps(message))
        assert (await run(ReadMessage(FieldLimits(), take), x)).count == 0
    assert taken == [notification, answer]


async def test_take_notification_acknowledges_and_cancels_within_the_session():
    cancelled: list[CancelCall] = []

    async def cancel(message: CancelCall) -> None:
        cancelled.append(message)

    live = sessions()
    session_id = live.codec.issue("2025-06-18", KEY_ID)
    step = ReadMessage(FieldLimits(), TakeNotification(None, cancel, live))
    note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}
    x, wire = _posted(orjson.dumps(note), ("mcp-session-id", session_id))
    x.caller = CALLER
    assert (await run(step, x)).count == 0 and wire.status == 202
    assert cancelled == [CancelCall(key_id=KEY_ID, session=live.find(session_id, KEY_ID).handle, request_id=9)]
    x, wire = _posted(orjson.dumps(note), ("mcp-session-id", "forged"))
    x.caller = CALLER
    assert (await run(step, x)).count == 0 and wire.status == 202 and len(cancelled) == 1
    x, _ = _posted(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
    assert (await run(step, x)).count == 1


# ---------------------------------------------------------------------------------------- context, era, session


async def test_build_context_reads_the_headers():
    message = {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
    x, _ = request(message, ("x-bastion-include-servers", "a, b"), ("x-bastion-timeout", "2.5"))
    assert (await run(BuildContext(FieldLimits()), x)).count == 1
    assert (x.method, x.ctx.request_id, x.ctx.include_servers, x.ctx.include_tools, x.ctx.timeout) == (
        "tools/list",
        3,
        ("a", "b"),
        None,
        2.5,
    )
    x, wire = request(message, ("x-bastion-include-tools", ",".join(["t"] * 65)))
    assert (await run(BuildContext(FieldLimits()), x)).count == 0 and wire.status == 400 and wire.json()["id"] == 3
    x, wire = request(message, ("x-bastion-include-servers", "s" * 1000))
    assert (await run(BuildContext(FieldLimits()), x)).count == 0 and wire.status == 400
    x, _ = request(message, ("x-bastion-include-tools", ""))  # an empty header narrows to nothing
    assert (await run(BuildContext(FieldLimits()), x)).count == 1 and x.ctx.include_tools == ()
    x, _ = request(message, ("x-bastion-code-mode", "on"), ("x-bastion-discovery", "off"), ("x-bastion-timeout", ""))
    assert (await run(BuildContext(FieldLimits()), x)).count == 1
    assert (x.ctx.code_mode, x.ctx.discovery, x.ctx.timeout) == ("on", "off", None)
    x, _ = request(message)  # none of them: nothing narrowed, no override
    assert (await run(BuildContext(FieldLimits()), x)).count == 1
    assert (x.ctx.include_servers, x.ctx.include_tools, x.ctx.timeout, x.ctx.code_mode, x.ctx.discovery) == (
        None,
        None,
        None,
        None,
        None,
    )


async def test_resolve_era_puts_a_session_request_in_its_session():
    live = sessions()
    session_id = live.codec.issue("2025-06-18", KEY_ID, ("sampling",))
    x, _ = request({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, ("mcp-session-id", session_id))
    assert (await run(ResolveEra(live), x)).count == 1 and not x.modern
    assert (x.ctx.version, x.ctx.client, x.ctx.session) == (
        "2025-06-18",
        ("sampling",),
        live.find(session_id, KEY_ID).handle,
    )


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ([("mcp-session-id", "forged")], 404, -32001),
        ([("mcp-protocol-version", "1999-01-01")], 400, -32022),
    ],
)
async def test_resolve_era_refusals(headers, status, code):
    x, wire = request({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, *headers)
    assert (await run(ResolveEra(sessions()), x)).count == 0
    assert wire.status == status and wire.json()["error"]["code"] == code and wire.json()["id"] == 1


async def test_resolve_era_checks_a_modern_request_and_its_repeated_routing_headers():
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": ENVELOPE}}
    routing = [("mcp-protocol-version", MODERN), ("mcp-method", "tools/list")]
    x, _ = request(message, *routing)
    assert (await run(ResolveEra(sessions()), x)).count == 1 and x.modern and x.ctx.version == MODERN
    x, wire = request(message, *routing, ("mcp-method", "tools/list"))
    assert (await run(ResolveEra(sessions()), x)).count == 0 and wire.json()["error"]["code"] == -32020


async def test_end_session_ends_a_live_session_of_the_key_on_every_replica():
    live = sessions()
    session_id = live.codec.issue("2025-06-18", KEY_ID)
    for headers, status in (([], 400), ([("mcp-session-id", "forged")], 404), ([("mcp-session-id", session_id)], 200)):
        x, wire = exchange(*headers, method="DELETE")
        x.caller = CALLER
        await EndSession(live)(x)
        assert wire.status == status
    assert live.find(session_id, KEY_ID) is None  # ended: refused from now on


async def test_listen_takes_only_modern_listen_requests():
    from services.ingress.catalog.aggregated import Catalog
    from services.ingress.sessions.notifications import Notifier

    step = Listen(Notifier(Catalog()), None, lambda events: None, 10)  # type: ignore[arg-type]
    x, _ = request({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen"})
    x.modern = False
    assert (await run(step, x)).count == 1
    x, wire = request({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen"})
    x.modern = True  # and it does not accept SSE
    assert (await run(step, x)).count == 0 and wire.status == 406
