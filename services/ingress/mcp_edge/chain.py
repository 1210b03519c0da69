"""The machinery of the `/mcp` pipeline.

What one request carries past the steps (`Exchange`), what a step is (`Step`, `Check`, `Gate`), and the
ASGI app that links the steps once and runs them (`McpEndpoint`).

Like Starlette's middleware stack: each step holds the next one (`Step.next`, set when the chain is
built, never per request) and either answers the exchange itself or awaits `self.next(x)`; a step
may also act once the steps after it have returned, or around them (`try`/`finally`). A step that
decides without waiting is a `Check`: it returns what answers the request, or None to pass it on; one
that waits without surrounding the rest (reading the body) is a `Gate`. `McpEndpoint` runs consecutive
checks and gates in one loop, so the eighteen steps of a request cost nine coroutines, eight of them
held (and resumed at each wait) while the handler runs. A request allocates its `Exchange` and
nothing else for the chain (a refusal allocates its answer).
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from libs.common.contracts.messages import AuditEvent, Caller
from services.ingress.context import RequestContext
from services.ingress.mcp_edge.answers import Answer, respond

__all__ = ["Check", "Exchange", "Gate", "McpEndpoint", "Receive", "Refusal", "Scope", "Send", "Step", "disconnected"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Exchange:
    """One HTTP request to `/mcp` and what the steps learned of it so far.

    Each attribute below the first five is set by the step named beside it before any later step reads
    it."""

    __slots__ = (
        "answer",
        "audit",
        "body",
        "caller",
        "ctx",
        "extra",
        "headers",
        "message",
        "method",
        "modern",
        "payload",
        "raw_headers",
        "receive",
        "scope",
        "send",
        "sent",
        "sse_ok",
    )

    caller: Caller  # Authenticate
    body: bytes  # ReadBody
    sse_ok: bool  # ChooseAnswer: the agent accepts an SSE answer
    answer: Answer  # ChooseAnswer: how the JSON-RPC answer goes out
    message: dict[str, Any]  # ParseJson, CheckEnvelope: a JSON-RPC object
    method: str  # BuildContext: the JSON-RPC method of a request (not a notification)
    ctx: RequestContext  # BuildContext: what the handler sees of the request
    modern: bool  # ResolveEra: a 2026-07-28 request (no session, envelope in `_meta` and headers)
    payload: dict[str, Any]  # Dispatch: the JSON-RPC answer
    audit: AuditEvent | None  # Audit (None), then Dispatch: the event this request owes
    extra: list[tuple[bytes, bytes]]  # Reply: headers the answer carries besides its content type
    sent: int  # Audit (0), then Reply: bytes of the answer sent

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        self.raw_headers = raw
        self.headers = by_name(raw)
        """By lower-case name; a repeated header keeps its last value (`CheckHeaders` refuses the
        repetitions that matter)."""


def by_name(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers by name, decoded as Latin-1; a repeated name keeps its last value.

    Names and values are joined by NUL and decoded in one call, not two per header (a dozen headers a
    request: 24 decodes, ~2 µs). A NUL inside a name or value (the HTTP parser refuses them, a raw ASGI
    scope might not) would pair the pieces wrongly: the count of pieces shows it, and then each is
    decoded on its own."""
    flat = b"\0".join(itertools.chain.from_iterable(raw)).decode("latin-1").split("\0")
    if len(flat) != 2 * len(raw):
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
    return dict(zip(flat[::2], flat[1::2], strict=True))


class Step(abc.ABC):
    """One stage of the pipeline: answer `x`, or pass it on with `await self.next(x)`."""

    __slots__ = ("next",)

    next: Step
    """The step after this one, set once by `McpEndpoint`."""

    @abc.abstractmethod
    async def __call__(self, x: Exchange) -> None: ...


Answering = Callable[[Exchange], Awaitable[None]]
"""What a `Check` hands the request to instead of the next step: a `Refusal`, or another handler."""


class Check(Step):
    """A step that decides without waiting: `check` returns None to pass the request on, or what answers it instead.

    Alone (in a unit test) it is a step like any other."""

    __slots__ = ()

    @abc.abstractmethod
    def check(self, x: Exchange) -> Answering | None: ...

    async def __call__(self, x: Exchange) -> None:
        if (answer := self.check(x)) is None:
            await self.next(x)
        else:
            await answer(x)


class Gate(Step):
    """A step that may wait but does not surround the steps after it: `admit` returns None to pass the request on.

    Or what answers it instead. `McpEndpoint` runs it in the loop of the checks beside it, so it holds
    no frame while the steps after it run (each frame held is resumed again at each wait below it)."""

    __slots__ = ()

    @abc.abstractmethod
    async def admit(self, x: Exchange) -> Answering | None: ...

    async def __call__(self, x: Exchange) -> None:
        if (answer := await self.admit(x)) is None:
            await self.next(x)
        else:
            await answer(x)


class Refusal:
    """An error answer decided before the handler.

    Plain JSON with `status` (a JSON-RPC error, or `{"error": ..., "message": ...}` below the JSON-RPC
    layer)."""

    __slots__ = ("headers", "payload", "status")

    def __init__(self, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status, self.payload, self.headers = status, payload, headers

    async def __call__(self, x: Exchange) -> None:
        await respond(x.send, self.payload, self.status, False, self.headers)


Decide = Callable[[Exchange], Answering | None]


class _Checks(Step):
    """Consecutive checks and gates of the list, run in one loop: checks, then a gate, then checks...."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        self.runs: tuple[tuple[tuple[Decide, ...], Gate | None], ...] = ()
        """The checks before each gate, and that gate (None after the last checks)."""

    def add(self, step: Check | Gate) -> None:
        runs = self.runs
        checks: tuple[Decide, ...] = ()
        if runs and runs[-1][1] is None:  # the last run has no gate yet: `step` joins it
            runs, checks = runs[:-1], runs[-1][0]
        self.runs = (*runs, (checks, step) if isinstance(step, Gate) else ((*checks, step.check), None))

    async def __call__(self, x: Exchange) -> None:
        for checks, gate in self.runs:
            for check in checks:
                if (answer := check(x)) is not None:
                    await answer(x)
                    return
            if gate is not None and (answer := await gate.admit(x)) is not None:
                await answer(x)
                return
        await self.next(x)


class McpEndpoint:
    """`/mcp` as an ASGI app: `steps`, in order, linked once."""

    def __init__(self, steps: Sequence[Step]) -> None:
        if not steps:
            raise ValueError("the /mcp pipeline needs at least one step")
        self.steps = tuple(steps)
        links: list[Step] = []
        for step in steps:
            if isinstance(step, Check | Gate):
                if not (links and isinstance(links[-1], _Checks)):
                    links.append(_Checks())
                links[-1].add(step)  # type: ignore[attr-defined]  # the last link is a _Checks
            else:
                links.append(step)
        for link, following in itertools.pairwise(links):
            link.next = following
        self._first = links[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._first(Exchange(scope, receive, send))


async def disconnected(receive: Receive) -> None:
    """Returns once the agent has gone away (reading, and dropping, whatever else arrives)."""
    while (await receive())["type"] != "http.disconnect":
        pass
