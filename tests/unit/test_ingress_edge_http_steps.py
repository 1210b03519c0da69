"""The `/mcp` pipeline's HTTP steps, each alone with the next step replaced by a recorder.

Headers, authentication, the method, the body and the answer's form (`services.ingress.mcp_edge`).
"""

from __future__ import annotations

import pytest

from services.ingress.auth.keys import UNAUTHENTICATED
from services.ingress.mcp_edge import (
    Authenticate,
    CheckHeaders,
    ChooseAnswer,
    Exchange,
    ReadBody,
    RouteMethod,
)
from services.ingress.web.hosts import HostGuard
from tests.support.edge_steps import KEY_ID, SECRET, Wire, exchange, keys, run

pytestmark = pytest.mark.unit


async def test_check_headers_refuses_two_authorization_headers():
    x, wire = exchange(("host", "localhost"), ("authorization", "Bearer a"), ("authorization", f"Bearer {SECRET}"))
    reached = await run(CheckHeaders(HostGuard("127.0.0.1", [])), x)
    assert reached.count == 0 and wire.status == 400 and wire.json()["error"] == "repeated_authorization"


@pytest.mark.parametrize(
    "headers",
    [
        [("host", "evil.example")],
        [("host", "localhost"), ("host", "evil.example")],
        [("origin", "http://evil.example")],
    ],
)
async def test_check_headers_refuses_hosts_not_served(headers):
    x, wire = exchange(*headers)
    reached = await run(CheckHeaders(HostGuard("127.0.0.1", [])), x)
    assert reached.count == 0 and wire.status == 403 and wire.json()["error"] == "forbidden_host"


async def test_check_headers_passes_an_allowed_host_again_and_again():
    guard = HostGuard("127.0.0.1", [])
    for _ in range(2):  # the second time from the guard's memory of allowed spellings
        x, wire = exchange(("host", "LocalHost:8420"))
        assert (await run(CheckHeaders(guard), x)).count == 1 and wire.sent == []


@pytest.mark.parametrize(
    ("authorization", "kind"),
    [(None, "missing_key"), ("Bearer nope", "invalid_key"), ("Basic x", "malformed_authorization")],
)
async def test_authenticate_answers_a_json_rpc_error_naming_what_is_wrong(authorization, kind):
    x, wire = exchange(*([("authorization", authorization)] if authorization else []))
    reached = await run(Authenticate(keys()), x)
    error = wire.json()["error"]
    assert reached.count == 0 and wire.status == 401 and wire.json()["id"] is None
    assert error["code"] == UNAUTHENTICATED and error["data"]["kind"] == kind
    assert error["message"].startswith(kind.split("_")[0])  # "missing ...", "invalid ...", "malformed ..."
    challenge = wire.headers[b"www-authenticate"].decode()
    assert challenge.startswith("Bearer ") and ("error=" in challenge) == (authorization is not None)


async def test_authenticate_passes_the_caller_on():
    x, wire = exchange(("authorization", f"Bearer {SECRET}"))
    assert (await run(Authenticate(keys()), x)).count == 1 and x.caller.key_id == KEY_ID and wire.sent == []


def test_headers_are_read_by_name_with_the_last_of_a_repeated_one_kept():
    x, _ = exchange(("accept", "text/event-stream"), ("x-a", "1"), ("x-a", "2"), ("host", "h"))
    assert x.headers == {"accept": "text/event-stream", "x-a": "2", "host": "h"}
    assert exchange()[0].headers == {}


async def test_a_nul_inside_a_header_value_forges_no_other_header():
    # names and values are decoded joined by NUL: one inside a value must not split it into a new pair
    x, wire = exchange(("x-note", f"a\0authorization\0Bearer {SECRET}"))
    assert x.headers == {"x-note": f"a\0authorization\0Bearer {SECRET}"}
    reached = await run(Authenticate(keys()), x)
    assert reached.count == 0 and wire.status == 401


async def test_route_method_sends_delete_and_get_to_their_handlers_and_refuses_the_rest():
    answered: list[str] = []

    async def end(x: Exchange) -> None:
        answered.append("end")

    async def stream(x: Exchange) -> None:
        answered.append("stream")

    for method in ("DELETE", "GET", "POST"):
        x, _ = exchange(method=method)
        assert (await run(RouteMethod(end, stream), x)).count == (method == "POST")
    assert answered == ["end", "stream"]
    for method, stream_kept in (("PUT", True), ("GET", False)):
        x, wire = exchange(method=method)
        await run(RouteMethod(end, stream if stream_kept else None), x)
        assert wire.status == 405 and wire.headers[b"allow"] == b"GET, POST, DELETE"


async def test_read_body_refuses_by_declared_length_before_reading():
    x, wire = exchange(("content-length", "101"), body=b"x" * 101)
    reached = await run(ReadBody(100), x)
    assert reached.count == 0 and wire.status == 413 and wire.incoming  # not read
    assert "101 bytes" in wire.json()["error"]["message"]


async def test_read_body_refuses_while_reading_and_says_nothing_to_a_client_gone():
    chunks = Wire(*({"type": "http.request", "body": b"x" * 60, "more_body": True} for _ in range(2)))
    x, wire = exchange(wire=chunks)
    assert (await run(ReadBody(100), x)).count == 0 and wire.status == 413
    x, wire = exchange(wire=Wire({"type": "http.disconnect"}))
    assert (await run(ReadBody(100), x)).count == 0 and wire.sent == []


@pytest.mark.parametrize(
    ("events", "body"),
    [
        ([{"body": b"ab", "more_body": True}, {"body": b"ab", "more_body": False}], b"abab"),
        ([{"body": b"one"}], b"one"),  # no more_body: the last event
        (
            [{"body": b"a", "more_body": True}, {"more_body": True}, {"body": b"", "more_body": True}, {"body": b"b"}],
            b"ab",
        ),
        (
            [{"body": b"a", "more_body": True}, {"body": b"b", "more_body": True}, {"body": b"c", "more_body": False}],
            b"abc",
        ),
        ([{"more_body": False}], b""),
        ([{"body": b"", "more_body": True}, {"body": b"x" * 100}], b"x" * 100),  # at the limit
    ],
)
async def test_read_body_passes_the_body_on(events, body):
    x, _ = exchange(wire=Wire(*({"type": "http.request", **event} for event in events)))
    assert (await run(ReadBody(100), x)).count == 1 and x.body == body


@pytest.mark.parametrize(
    ("accept", "sse_answer"),
    [("application/json", False), ("application/json, text/event-stream", False), ("text/event-stream", True)],
)
async def test_choose_answer(accept, sse_answer):
    x, _ = exchange(("accept", accept))
    assert (await run(ChooseAnswer(), x)).count == 1 and x.answer._sse is sse_answer
    x, wire = exchange(("accept", "text/html"))
    assert (await run(ChooseAnswer(), x)).count == 0 and wire.status == 406
