"""Each step of the `/mcp` pipeline alone (`services.ingress.mcp_edge`): what it answers, and what it
passes on, with the next step replaced by a recorder; then the chain that links them."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs.common.contracts.messages import AuditEvent, Caller, CancelCall, KeyRecord
from libs.common.runtime import tracing
from services.ingress.auth.keys import UNAUTHENTICATED, KeyDirectory
from services.ingress.context import RequestContext
from services.ingress.field_limits import FieldLimits
from services.ingress.mcp_edge import (
    Audit,
    Authenticate,
    BuildContext,
    CancelOnDisconnect,
    CapFields,
    CheckEnvelope,
    CheckHeaders,
    ChooseAnswer,
    Dispatch,
    EndSession,
    Exchange,
    IssueSession,
    Listen,
    McpEndpoint,
    ParseJson,
    ReadBody,
    Reply,
    ResolveEra,
    RouteMethod,
    Step,
    TakeNotification,
    Trace,
)
from services.ingress.mcp_edge.answers import Answer
from services.ingress.mcp_edge.chain import Check, Refusal
from services.ingress.sessions.session_ids import LiveSessions, SessionCodec
from services.ingress.sessions.session_state import SessionState
from services.ingress.web.hosts import HostGuard
from services.ingress.web.lost_connections import LOST, call_lost

pytestmark = pytest.mark.unit

SECRET = "bk_edge_steps_secret"
KEY_ID = hashlib.sha256(SECRET.encode()).hexdigest()
CALLER = Caller(key_id=KEY_ID, key_name="dev")
MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


class Wire:
    """The ASGI side of one request: what the client sends, and what the step sent back."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.incoming = list(messages) or [{"type": "http.request", "body": b"", "more_body": False}]
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.Event().wait()  # nothing more until the test ends
        raise AssertionError

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return dict(start["headers"])

    def json(self) -> Any:
        return orjson.loads(b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body"))


class Reached(Step):
    """The rest of the pipeline: records that the request got this far."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, x: Exchange) -> None:
        self.count += 1


def exchange(
    *headers: tuple[str, str], method: str = "POST", body: bytes = b"", wire: Wire | None = None
) -> tuple[Exchange, Wire]:
    wire = wire or Wire({"type": "http.request", "body": body, "more_body": False})
    scope = {
        "type": "http",
        "method": method,
        "path": "/mcp",
        "headers": [(k.encode(), v.encode()) for k, v in headers],
    }
    return Exchange(scope, wire.receive, wire.send), wire


def request(message: dict[str, Any], *headers: tuple[str, str]) -> tuple[Exchange, Wire]:
    """An exchange as the steps before `BuildContext` leave it."""
    x, wire = exchange(*headers)
    x.caller, x.message, x.body, x.sse_ok = CALLER, message, orjson.dumps(message), False
    x.answer = Answer(wire.send, False)
    if "method" in message and "id" in message:
        x.method = message["method"]
        x.ctx = RequestContext(caller=CALLER, version="2025-03-26", request_id=message["id"])
    return x, wire


async def run(step: Step, x: Exchange) -> Reached:
    reached = step.next = Reached()
    await step(x)
    return reached


def keys() -> KeyDirectory:
    directory = KeyDirectory()
    directory.put(KEY_ID, KeyRecord(id=KEY_ID, name="dev").model_dump_json().encode())
    return directory


def sessions() -> LiveSessions:
    return LiveSessions(SessionCodec(b"edge-steps-secret-of-some-length"), SessionState())


# ---------------------------------------------------------------------------------------- HTTP


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


async def test_read_body_passes_the_body_on():
    x, _ = exchange(wire=Wire(*({"type": "http.request", "body": b"ab", "more_body": more} for more in (True, False))))
    assert (await run(ReadBody(100), x)).count == 1 and x.body == b"abab"


@pytest.mark.parametrize(
    ("accept", "sse_answer"),
    [("application/json", False), ("application/json, text/event-stream", False), ("text/event-stream", True)],
)
async def test_choose_answer(accept, sse_answer):
    x, _ = exchange(("accept", accept))
    assert (await run(ChooseAnswer(), x)).count == 1 and x.answer._sse is sse_answer
    x, wire = exchange(("accept", "text/html"))
    assert (await run(ChooseAnswer(), x)).count == 0 and wire.status == 406


# ---------------------------------------------------------------------------------------- JSON-RPC


async def test_parse_json():
    x, wire = exchange()
    x.body = b'{"jsonrpc": "2.0", '
    assert (await run(ParseJson(), x)).count == 0 and wire.json()["error"]["code"] == -32700 and wire.status == 400
    x, _ = exchange()
    x.body = b'{"id": 18446744073709551621}'
    assert (await run(ParseJson(), x)).count == 1 and x.message == {"id": 2**64 + 5}


@pytest.mark.parametrize(
    ("message", "echoed"),
    [
        ([{"jsonrpc": "2.0"}], None),
        ({"jsonrpc": "1.0", "id": 4, "method": "ping"}, 4),
        ({"jsonrpc": "2.0", "id": True}, None),
    ],
)
async def test_check_envelope(message, echoed):
    x, wire = exchange()
    x.message = message
    assert (await run(CheckEnvelope(), x)).count == 0 and wire.status == 400
    assert wire.json()["error"]["code"] == -32600 and wire.json()["id"] == echoed


async def test_cap_fields():
    x, wire = request({"jsonrpc": "2.0", "id": 1, "method": "m" * 129})
    assert (await run(CapFields(FieldLimits()), x)).count == 0 and wire.json()["error"]["data"]["field"] == "method"
    x, _ = request({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert (await run(CapFields(FieldLimits()), x)).count == 1


async def test_take_notification_acknowledges_and_cancels_within_the_session():
    cancelled: list[CancelCall] = []

    async def cancel(message: CancelCall) -> None:
        cancelled.append(message)

    live = sessions()
    session_id = live.codec.issue("2025-06-18", KEY_ID)
    step = TakeNotification(None, cancel, live)
    note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}
    x, wire = request(note, ("mcp-session-id", session_id))
    assert (await run(step, x)).count == 0 and wire.status == 202
    assert cancelled == [CancelCall(key_id=KEY_ID, session=live.find(session_id, KEY_ID).handle, request_id=9)]
    x, wire = request(note, ("mcp-session-id", "forged"))
    assert (await run(step, x)).count == 0 and wire.status == 202 and len(cancelled) == 1
    x, _ = request({"jsonrpc": "2.0", "id": 1, "method": "ping"})
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


# ---------------------------------------------------------------------------------------- around the handler


def event() -> AuditEvent:
    return AuditEvent(key_id=KEY_ID, key_name="dev", name="t", status="ok", latency_ms=1.0)


class Failing(Step):
    async def __call__(self, x: Exchange) -> None:
        x.audit = event()
        raise OSError("the client went away mid-answer")


async def test_audit_emits_the_one_event_owed_whatever_happens_after():
    emitted: list[AuditEvent] = []
    audit = Audit(emitted.append)
    audit.next = Failing()
    x, _ = exchange()
    with pytest.raises(OSError):
        await audit(x)
    assert len(emitted) == 1 and emitted[0].response_bytes == 0
    x, _ = exchange()
    assert (await run(audit, x)).count == 1 and len(emitted) == 1  # nothing owed, nothing emitted


@pytest.mark.parametrize(("modern", "code", "status"), [(True, -32601, 404), (False, -32601, 200), (True, -32052, 200)])
async def test_reply_status_by_era_and_retry_after(modern, code, status):
    class Answered(Step):
        async def __call__(self, x: Exchange) -> None:
            x.payload = {
                "jsonrpc": "2.0",
                "id": 1,
                "error": {"code": code, "message": "m", "data": {"retry_after": 1.2}},
            }

    x, wire = request({"jsonrpc": "2.0", "id": 1, "method": "tools/call"})
    x.modern = modern
    step = Reply()
    step.next = Answered()
    await step(x)
    assert wire.status == status and wire.headers[b"retry-after"] == b"2" and x.sent > 0


@pytest.mark.parametrize(("modern", "issued"), [(False, True), (True, False)])
async def test_issue_session_for_a_handshake_era_initialize(modern, issued):
    codec = SessionCodec(b"edge-steps-secret-of-some-length")

    class Initialized(Step):
        async def __call__(self, x: Exchange) -> None:
            x.payload = {"jsonrpc": "2.0", "id": 1, "result": {}}

    params = {"capabilities": {"elicitation": {}}}
    x, _ = request({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
    x.modern, x.extra = modern, []
    step = IssueSession(codec)
    step.next = Initialized()
    await step(x)
    assert bool(x.extra) is issued
    if issued:
        session = codec.verify(x.extra[0][1].decode(), KEY_ID)
        assert session is not None and session.client == ("elicitation",)


async def test_cancel_on_disconnect_abandons_the_call_of_a_modern_request():
    abandoned: list[str] = []
    release, told = asyncio.Event(), asyncio.Event()

    async def abandon(call_id: str) -> None:
        abandoned.append(call_id)
        told.set()

    class Running(Step):
        async def __call__(self, x: Exchange) -> None:
            x.ctx.call_id = "call-1"
            await release.wait()

    x, _ = request({"jsonrpc": "2.0", "id": 1, "method": "tools/call"})
    x.receive = Wire({"type": "http.disconnect"}).receive
    x.modern = True
    step = CancelOnDisconnect(abandon)
    step.next = Running()
    task = asyncio.create_task(step(x))
    await told.wait()  # while the call still runs
    release.set()
    await task
    assert abandoned == ["call-1"]


async def test_cancel_on_disconnect_is_told_by_ingress_s_own_server_without_a_watching_task():
    """Served by ingress's protocol (`http_limits`), the scope carries the connection's callbacks:
    a connection lost while the call runs abandons it; one lost after the step ended does not."""
    abandoned: list[str] = []
    release, running = asyncio.Event(), asyncio.Event()

    async def abandon(call_id: str) -> None:
        abandoned.append(call_id)

    class Running(Step):
        async def __call__(self, x: Exchange) -> None:
            x.ctx.call_id = "call-1"
            running.set()
            await release.wait()

    async def receive() -> dict[str, Any]:
        raise AssertionError("nothing reads the request to watch it")

    for lost_while_running in (True, False):
        abandoned.clear()
        release.clear()
        running.clear()
        x, _ = request({"jsonrpc": "2.0", "id": 1, "method": "tools/call"})
        callbacks: set[Any] = set()
        x.scope["extensions"] = {LOST: callbacks}
        x.receive, x.modern = receive, True
        step = CancelOnDisconnect(abandon)
        step.next = Running()
        task = asyncio.create_task(step(x))
        await running.wait()
        assert len(callbacks) == 1
        if lost_while_running:
            call_lost(callbacks)
            await asyncio.sleep(0)  # the abandon runs as its own task
            assert abandoned == ["call-1"]
        release.set()
        await task
        assert not callbacks
        call_lost(callbacks)
        await asyncio.sleep(0)
        assert abandoned == (["call-1"] if lost_while_running else [])


async def test_trace_passes_on():
    x, _ = request({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert (await run(Trace(), x)).count == 1
    assert x.ctx.trace_id is None  # tracing off: no span, no trace id


async def test_trace_names_the_requests_trace_when_tracing_is_on():
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    exporter = InMemorySpanExporter()
    assert tracing.configure("test", processor=SimpleSpanProcessor(exporter))
    try:
        x, _ = request(
            {"jsonrpc": "2.0", "id": 1, "method": "ping"}, ("traceparent", f"00-{trace}-00f067aa0ba902b7-01")
        )
        assert (await run(Trace(), x)).count == 1
    finally:
        tracing.reset()
    assert x.ctx.trace_id == trace
    (span,) = exporter.get_finished_spans()
    # named and described by the OpenTelemetry MCP conventions (`tests/integration/test_semconv.py`)
    assert (span.name, span.kind.name) == ("ping", "SERVER")
    assert (span.attributes or {})["mcp.method.name"] == "ping"


async def test_dispatch_owes_an_event_for_a_cancelled_audited_request():
    class Handlers:
        async def dispatch(self, ctx: RequestContext, method: str, params: Any) -> Any:
            raise asyncio.CancelledError

        def interrupted(self, ctx: RequestContext, method: str, params: Any) -> AuditEvent:
            return event()

    x, _ = request({"jsonrpc": "2.0", "id": 1, "method": "tools/call"})
    with pytest.raises(asyncio.CancelledError):
        await Dispatch(Handlers())(x)  # type: ignore[arg-type]
    assert x.audit is not None


# ---------------------------------------------------------------------------------------- the chain


class Mark(Check):
    __slots__ = ("log", "name", "refuse")

    def __init__(self, name: str, log: list[str], refuse: bool = False) -> None:
        self.name, self.log, self.refuse = name, log, refuse

    def check(self, x: Exchange) -> Any:
        self.log.append(self.name)
        return Refusal(418, {"error": self.name}) if self.refuse else None


class Around(Step):
    __slots__ = ("log", "name")

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def __call__(self, x: Exchange) -> None:
        self.log.append(f"{self.name}>")
        await self.next(x)
        self.log.append(f"<{self.name}")


async def test_the_endpoint_runs_the_steps_in_order_checks_and_all():
    log: list[str] = []
    last = Reached()
    endpoint = McpEndpoint([Mark("a", log), Mark("b", log), Around("c", log), Mark("d", log), last])
    wire = Wire()
    await endpoint({"type": "http", "method": "POST", "headers": []}, wire.receive, wire.send)
    assert log == ["a", "b", "c>", "d", "<c"] and last.count == 1
    assert len(endpoint.steps) == 5  # as listed; linked once, consecutive checks in one loop


async def test_a_refusing_check_ends_the_request():
    log: list[str] = []
    last = Reached()
    endpoint = McpEndpoint([Mark("a", log), Mark("b", log, refuse=True), Mark("c", log), last])
    wire = Wire()
    await endpoint({"type": "http", "method": "POST", "headers": []}, wire.receive, wire.send)
    assert log == ["a", "b"] and last.count == 0 and wire.status == 418
