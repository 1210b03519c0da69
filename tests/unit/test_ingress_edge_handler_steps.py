"""The `/mcp` pipeline's steps around the handler, each alone, and the chain that links every step.

Audit, reply, session issue, cancel on disconnect, trace and dispatch (`services.ingress.mcp_edge`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs.common.contracts.messages import AuditEvent
from libs.common.runtime import tracing
from services.ingress.context import RequestContext
from services.ingress.mcp_edge import (
    Audit,
    CancelOnDisconnect,
    Dispatch,
    Exchange,
    IssueSession,
    McpEndpoint,
    Reply,
    Step,
    Trace,
)
from services.ingress.mcp_edge.answers import Answer
from services.ingress.mcp_edge.chain import Check, Gate, Hook, Refusal
from services.ingress.sessions.session_ids import SessionCodec
from services.ingress.web.lost_connections import LOST, call_lost
from tests.support.edge_steps import KEY_ID, Reached, Wire, exchange, request, run

pytestmark = pytest.mark.unit


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


@pytest.mark.parametrize("sse", [False, True])
async def test_reply_ends_a_streamed_answer_with_its_last_event(sse: bool):
    """Once the request streamed (an event before the answer), the answer is the stream's last event,
    whatever the agent asked for at first; the bytes sent are that event's."""

    class Streamed(Step):
        async def __call__(self, x: Exchange) -> None:
            await x.answer.event({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}})
            x.payload = {"jsonrpc": "2.0", "id": 1, "result": {"content": []}}

    x, wire = request({"jsonrpc": "2.0", "id": 1, "method": "tools/call"})
    x.modern, x.answer = False, Answer(wire.send, sse)
    step = Reply()
    step.next = Streamed()
    await step(x)
    starts = [m for m in wire.sent if m["type"] == "http.response.start"]
    bodies = [m["body"] for m in wire.sent if m["type"] == "http.response.body"]
    assert len(starts) == 1 and dict(starts[0]["headers"])[b"content-type"] == b"text/event-stream"
    assert bodies[0].startswith(b"event: message\ndata: ") and b"notifications/progress" in bodies[0]
    assert b'"result"' in bodies[1] and x.sent == len(bodies[1]) and len(bodies) == 2


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


class Wait(Gate):
    """A gate that waits a turn of the loop, then passes the request on or refuses it."""

    __slots__ = ("log", "name", "refuse")

    def __init__(self, name: str, log: list[str], refuse: bool = False) -> None:
        self.name, self.log, self.refuse = name, log, refuse

    async def admit(self, x: Exchange) -> Any:
        await asyncio.sleep(0)
        self.log.append(self.name)
        return Refusal(418, {"error": self.name}) if self.refuse else None


@pytest.mark.parametrize("refuse", [False, True])
async def test_a_gate_runs_in_order_between_the_checks_and_may_end_the_request(refuse: bool):
    """A gate (a step that waits, reading the body) joins the loop of the checks beside it: it runs in
    its place, and its refusal ends the request before any step after it."""
    log: list[str] = []
    last = Reached()
    steps = [Mark("a", log), Wait("g", log, refuse), Mark("b", log), Wait("h", log), Around("c", log), last]
    endpoint = McpEndpoint(steps)
    wire = Wire()
    await endpoint({"type": "http", "method": "POST", "headers": []}, wire.receive, wire.send)
    assert log == (["a", "g"] if refuse else ["a", "g", "b", "h", "c>", "<c"])
    assert last.count == (0 if refuse else 1) and wire.status == (418 if refuse else None)


async def test_a_refusing_check_ends_the_request():
    log: list[str] = []
    last = Reached()
    endpoint = McpEndpoint([Mark("a", log), Mark("b", log, refuse=True), Mark("c", log), last])
    wire = Wire()
    await endpoint({"type": "http", "method": "POST", "headers": []}, wire.receive, wire.send)
    assert log == ["a", "b"] and last.count == 0 and wire.status == 418


class Hooked(Hook):
    """A hook that logs its two halves (and, told to, fails in its `after`)."""

    __slots__ = ("breaks", "log", "name", "seen")

    def __init__(self, name: str, log: list[str], breaks: bool = False) -> None:
        self.name, self.log, self.breaks = name, log, breaks
        self.seen: BaseException | None = None

    def before(self, x: Exchange) -> None:
        self.log.append(f"{self.name}>")

    def after(self, x: Exchange, failed: BaseException | None) -> None:
        self.log.append(f"<{self.name}")
        self.seen = failed
        if self.breaks:
            raise OSError(f"{self.name} broke")


class OnlyAfter(Hook):
    """A hook that acts after the handler only, and only on `tools/call` of the 2026-07-28 era."""

    __slots__ = ("log",)

    methods = frozenset({"tools/call"})
    era = True

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def _late(self) -> None:
        await asyncio.sleep(0)
        self.log.append("<late")

    def after(self, x: Exchange, failed: BaseException | None) -> Any:
        return self._late()


class Handler(Step):
    __slots__ = ("log", "raises")

    def __init__(self, log: list[str], raises: BaseException | None = None) -> None:
        self.log, self.raises = log, raises

    async def __call__(self, x: Exchange) -> None:
        await asyncio.sleep(0)
        self.log.append("handler")
        if self.raises is not None:
            raise self.raises


def hooked_request(method: str, modern: bool) -> tuple[Exchange, Wire]:
    x, wire = request({"jsonrpc": "2.0", "id": 1, "method": method})
    x.modern = modern
    return x, wire


@pytest.mark.parametrize(("method", "modern", "late"), [("tools/call", True, True), ("tools/call", False, False)])
async def test_hooks_run_in_one_loop_befores_in_order_afters_in_reverse(method: str, modern: bool, late: bool):
    """Hooks after checks run where the checks run: `before`s in order, the step after them, then the
    `after`s in reverse; a hook acts only on the methods and era it names."""
    log: list[str] = []
    endpoint = McpEndpoint([Mark("a", log), Hooked("h1", log), OnlyAfter(log), Hooked("h2", log), Handler(log)])
    x, _ = hooked_request(method, modern)
    await endpoint._first(x)
    assert log == ["a", "h1>", "h2>", "handler", "<h2", *(["<late"] if late else []), "<h1"]


async def test_every_after_runs_when_the_handler_or_a_later_after_fails():
    """As nested `try`/`finally`: the handler's failure reaches each `after` and then the caller; an
    `after` that fails passes its failure to the hooks outside it, which still run."""
    log: list[str] = []
    outer, inner = Hooked("outer", log), Hooked("inner", log, breaks=True)
    endpoint = McpEndpoint([outer, inner, Handler(log, raises=asyncio.CancelledError())])
    x, _ = hooked_request("tools/call", False)
    with pytest.raises(OSError, match="inner broke"):
        await endpoint._first(x)
    assert log == ["outer>", "inner>", "handler", "<inner", "<outer"]
    assert isinstance(inner.seen, asyncio.CancelledError) and isinstance(outer.seen, OSError)


async def test_a_hook_whose_before_fails_is_not_undone_but_those_before_it_are():
    log: list[str] = []

    class Refuses(Hooked):
        __slots__ = ()

        def before(self, x: Exchange) -> None:
            raise ValueError("no")

    endpoint = McpEndpoint([Hooked("h1", log), Refuses("r", log), Handler(log)])
    x, _ = hooked_request("ping", False)
    with pytest.raises(ValueError, match="no"):
        await endpoint._first(x)
    assert log == ["h1>", "<h1"]


class ForListen(Mark):
    """A check that acts only on 2026-07-28 `subscriptions/listen` requests."""

    __slots__ = ()

    methods = frozenset({"subscriptions/listen"})
    era = True


@pytest.mark.parametrize(
    ("method", "modern", "asked"),
    [("subscriptions/listen", True, True), ("subscriptions/listen", False, False), ("tools/call", True, False)],
)
@pytest.mark.parametrize("refuse", [False, True])
async def test_a_check_for_some_requests_is_asked_only_of_those_after_every_other_check(
    method: str, modern: bool, asked: bool, refuse: bool
):
    """A check naming its methods and era is asked where it stands, after the checks for every request
    and before the hooks, and only of the requests it names; its refusal ends the request before them."""
    log: list[str] = []
    endpoint = McpEndpoint([Mark("a", log), ForListen("l", log, refuse), Hooked("h", log), Handler(log)])
    x, wire = hooked_request(method, modern)
    await endpoint._first(x)
    if asked and refuse:
        assert log == ["a", "l"] and wire.status == 418
    else:
        assert log == ["a", *(["l"] if asked else []), "h>", "handler", "<h"]
    alone = ForListen("alone", log, refuse=True)  # alone, it asks itself whether it wants the request
    x, wire = hooked_request(method, modern)
    assert (await run(alone, x)).count == (0 if asked else 1)


async def test_a_check_for_some_requests_without_hooks_after_it_is_asked_all_the_same():
    log: list[str] = []
    endpoint = McpEndpoint([Mark("a", log), ForListen("l", log, refuse=True), Handler(log)])
    x, wire = hooked_request("subscriptions/listen", True)
    await endpoint._first(x)
    assert log == ["a", "l"] and wire.status == 418
    log.clear()
    x, wire = hooked_request("tools/call", True)
    await endpoint._first(x)
    assert log == ["a", "handler"]


@pytest.mark.parametrize("then", [Mark, Wait])
async def test_a_check_for_every_request_after_one_for_some_is_refused_when_the_chain_is_built(then: type):
    with pytest.raises(ValueError, match="follows a check for some requests"):
        McpEndpoint([ForListen("l", []), then("b", []), Handler([])])
