"""The machinery of the `/mcp` pipeline.

What one request carries past the steps (`Exchange`), what a step is (`Step`, `Check`, `Gate`, `Hook`),
and the ASGI app that links the steps once and runs them (`McpEndpoint`).

Like Starlette's middleware stack: each step holds the next one (`Step.next`, set when the chain is
built, never per request) and either answers the exchange itself or awaits `self.next(x)`; a step
may also act once the steps after it have returned, or around them (`try`/`finally`). A step that
decides without waiting is a `Check`: it returns what answers the request, or None to pass it on; one
that waits without surrounding the rest (reading the body) is a `Gate`; one around the handler that
never waits before it (audit, reply, trace...) is a `Hook`, with a `before` and an `after`.
`McpEndpoint` runs consecutive checks, gates and hooks in one loop, so the fifteen steps of a
request cost two coroutines (that loop, and the handler's step), and a hook's half that it does not
define, or a check or hook for other methods or another era, costs no call. A request allocates its
`Exchange` and nothing else for the chain (a refusal allocates its answer).
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from libs.common.contracts.messages import AuditEvent, Caller
from services.ingress.context import RequestContext
from services.ingress.mcp_edge.answers import Answer, respond

__all__ = [
    "Check",
    "Exchange",
    "Gate",
    "Hook",
    "McpEndpoint",
    "Receive",
    "Refusal",
    "Scope",
    "Send",
    "Step",
    "disconnected",
]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Exchange:
    """One HTTP request to `/mcp` and what the steps learned of it so far.

    Each attribute below the first five is set by the step named beside it (or here) before any later
    step reads it."""

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
        "params",
        "payload",
        "raw_headers",
        "receive",
        "scope",
        "send",
        "sent",
        "span",
        "sse_ok",
        "watch",
    )

    caller: Caller  # Authenticate
    body: bytes  # ReadBody
    sse_ok: bool  # ChooseAnswer: the agent accepts an SSE answer
    answer: Answer  # ChooseAnswer: how the JSON-RPC answer goes out
    message: dict[str, Any]  # ReadMessage: a JSON-RPC object
    params: Any  # ReadMessage: the params of a request (None without), looked up once for every step after
    method: str  # BuildContext: the JSON-RPC method of a request (not a notification)
    ctx: RequestContext  # BuildContext: what the handler sees of the request
    modern: bool  # ResolveEra: a 2026-07-28 request (no session, envelope in `_meta` and headers)
    payload: dict[str, Any]  # Dispatch: the JSON-RPC answer
    audit: AuditEvent | None  # None, then Dispatch: the event this request owes (Audit emits it)
    extra: list[tuple[bytes, bytes]]  # headers the answer carries besides its content type (Reply sends them)
    sent: int  # 0, then Reply: bytes of the answer sent
    span: Any  # Trace: the span's context manager and span, None with tracing off
    watch: Any  # CancelOnDisconnect: what watches the agent leave

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope, self.receive, self.send = scope, receive, send
        self.audit, self.sent, self.extra = None, 0, []
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        self.raw_headers = raw
        # names and values joined by NUL and decoded in one call, not two per header (a dozen headers a
        # request: 24 decodes, ~2 µs), here rather than in a function of their own (a call a request).
        # A NUL inside a name or value (the HTTP parser refuses them, a raw ASGI scope might not) would
        # pair the pieces wrongly: the count of pieces shows it, and then each is decoded on its own.
        flat = b"\0".join(itertools.chain.from_iterable(raw)).decode("latin-1").split("\0")
        self.headers = (
            dict(zip(flat[::2], flat[1::2], strict=True))
            if len(flat) == 2 * len(raw)
            else {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
        )
        """By lower-case name, decoded as Latin-1; a repeated header keeps its last value (`CheckHeaders`
        refuses the repetitions that matter)."""


class Step(abc.ABC):
    """One stage of the pipeline: answer `x`, or pass it on with `await self.next(x)`."""

    __slots__ = ("next",)

    next: Step
    """The step after this one, set once by `McpEndpoint`."""

    methods: frozenset[str] | None = None
    """The methods a check or hook acts on (None: every one)."""
    era: bool | None = None
    """True: only 2026-07-28 requests; False: only handshake-era ones; None: both."""

    def wants(self, method: str | None, modern: bool) -> bool:
        """Whether the step acts on a request of `method` in its era (asked once per method and era)."""
        return (self.methods is None or method in self.methods) and self.era in (None, modern)

    @property
    def selective(self) -> bool:
        """Whether the step names the methods or era it acts on."""
        return self.methods is not None or self.era is not None

    @abc.abstractmethod
    async def __call__(self, x: Exchange) -> None: ...


Answering = Callable[[Exchange], Awaitable[None]]
"""What a `Check` hands the request to instead of the next step: a `Refusal`, or another handler."""


class Check(Step):
    """A step that decides without waiting: `check` returns None to pass the request on, or what answers it instead.

    A check that names its methods or era (`Step.methods`, `Step.era`) needs both known (`BuildContext`,
    `ResolveEra`) and comes after the checks for every request: `McpEndpoint` asks it only of the
    requests it wants, chosen once per method and era, as hooks are. Alone (in a unit test) it is a step
    like any other."""

    __slots__ = ()

    @abc.abstractmethod
    def check(self, x: Exchange) -> Answering | None: ...

    async def __call__(self, x: Exchange) -> None:
        if self.selective and not self.wants(getattr(x, "method", None), getattr(x, "modern", False)):
            await self.next(x)
        elif (answer := self.check(x)) is None:
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


class Hook(Step):
    """A step around the handler that never waits before it: `before` runs ahead of the steps after it.

    `after` once they returned or raised (`failed`: what they raised, or None), and returns None or
    what the endpoint awaits (the answer going out). `McpEndpoint` runs consecutive hooks in the loop
    of the checks before them: `before`s in order, then the step after the last hook, then the
    `after`s in reverse, each also when a later one raised, as nested `try`/`finally` would. A hook
    acts only on the requests `wants` (asked once per method and era, not per request); one that does
    not define `before` or `after` costs nothing there.

    Alone (in a unit test) it is a step like any other."""

    __slots__ = ()

    def before(self, x: Exchange) -> None:
        """What the hook does before the steps after it run."""

    def after(self, x: Exchange, failed: BaseException | None) -> Awaitable[None] | None:
        """What the hook does once they returned (`failed` None) or raised."""
        return None

    async def __call__(self, x: Exchange) -> None:
        if not self.wants(getattr(x, "method", None), getattr(x, "modern", False)):
            await self.next(x)
            return
        self.before(x)
        try:
            await self.next(x)
        except BaseException as error:
            if (pending := self.after(x, error)) is not None:
                await pending
            raise
        if (pending := self.after(x, None)) is not None:
            await pending


Before = Callable[[Exchange], None]
After = Callable[[Exchange, BaseException | None], Awaitable[None] | None]
Plan = tuple[tuple[Decide, ...], tuple[tuple[Before, tuple[After, ...]], ...], tuple[After, ...]]
"""What the checks and hooks that name the requests they act on do to one: the checks it meets, then
each `before` in order, with the `after`s to run should it raise (those of the hooks before it, in
reverse), and every `after` in reverse. A hook's half that it does not define is not there."""


def _plan(checks: Sequence[Check], hooks: Sequence[Hook], method: str | None, modern: bool) -> Plan:
    """What `checks` and `hooks` do for a request of `method` (None: one none of them names) in its era."""
    asked = tuple(check.check for check in checks if check.wants(method, modern))
    befores: list[tuple[Before, tuple[After, ...]]] = []
    afters: tuple[After, ...] = ()
    for hook in hooks:
        if hook.wants(method, modern):
            kind = type(hook)
            if kind.before is not Hook.before:
                befores.append((hook.before, afters))
            if kind.after is not Hook.after:
                afters = (hook.after, *afters)
    return asked, tuple(befores), afters


class _Loop(Step):
    """Consecutive checks, gates and hooks of the list, run in one frame.

    Checks, then a gate, then checks..., then the checks for some requests and the hooks around the step
    after them."""

    __slots__ = ("for_some", "plans", "runs")

    def __init__(self) -> None:
        self.runs: tuple[tuple[tuple[Decide, ...], Gate | None], ...] = ()
        """The checks before each gate, and that gate (None after the last checks)."""
        self.for_some: list[Check] = []
        """The checks that name their methods or era, after every other check and gate."""
        self.plans: dict[tuple[str | None, bool], Plan] = {}
        """What those checks and the hooks do, by (method, era); a method none names under None (a bounded map)."""

    def add(self, step: Check | Gate) -> None:
        if isinstance(step, Check) and step.selective:
            self.for_some.append(step)
            return
        if self.for_some:
            raise ValueError(f"{type(step).__name__} follows a check for some requests: those come after the others")
        runs = self.runs
        checks: tuple[Decide, ...] = ()
        if runs and runs[-1][1] is None:  # the last run has no gate yet: `step` joins it
            runs, checks = runs[:-1], runs[-1][0]
        self.runs = (*runs, (checks, step) if isinstance(step, Gate) else ((*checks, step.check), None))

    def plan(self, hooks: Sequence[Hook]) -> None:
        """What the checks for some requests and `hooks` (those after this loop's checks) do, by method and era."""
        steps = (*self.for_some, *hooks)
        named = {None, *itertools.chain.from_iterable(step.methods or () for step in steps)}
        self.plans = {
            (method, modern): _plan(self.for_some, hooks, method, modern)
            for method in named
            for modern in (False, True)
        }

    async def __call__(self, x: Exchange) -> None:
        for checks, gate in self.runs:
            for check in checks:
                if (answer := check(x)) is not None:
                    await answer(x)
                    return
            if gate is not None and (answer := await gate.admit(x)) is not None:
                await answer(x)
                return
        if not (plans := self.plans):
            await self.next(x)
            return
        if (plan := plans.get((x.method, x.modern))) is None:
            plan = plans[None, x.modern]
        checks, befores, afters = plan
        for check in checks:
            if (answer := check(x)) is not None:
                await answer(x)
                return
        failed: BaseException | None = None
        try:
            for before, undo in befores:
                afters = undo  # should it raise, only the hooks before it have something to undo
                before(x)
            afters = plan[2]
            await self.next(x)
        except BaseException as error:
            failed = error
        for after in afters:
            try:
                if (pending := after(x, failed)) is not None:
                    await pending
            except BaseException as error:
                failed = error  # the hooks outside see it, as a `finally` would
        if failed is not None:
            try:
                raise failed
            finally:
                failed = None  # no cycle through this frame's traceback


class McpEndpoint:
    """`/mcp` as an ASGI app: `steps`, in order, linked once."""

    def __init__(self, steps: Sequence[Step]) -> None:
        if not steps:
            raise ValueError("the /mcp pipeline needs at least one step")
        self.steps = tuple(steps)
        links: list[Step] = []
        hooks: list[Hook] = []
        for step in steps:
            if isinstance(step, Check | Gate | Hook):
                if not (links and isinstance(links[-1], _Loop)) or (hooks and not isinstance(step, Hook)):
                    self._hook(links, hooks)
                    links.append(_Loop())
                if isinstance(step, Hook):
                    hooks.append(step)
                else:
                    links[-1].add(step)  # type: ignore[attr-defined]  # the last link is a _Loop
            else:
                self._hook(links, hooks)
                links.append(step)
        self._hook(links, hooks)
        for link, following in itertools.pairwise(links):
            link.next = following
        self._first = links[0]

    @staticmethod
    def _hook(links: list[Step], hooks: list[Hook]) -> None:
        """Hand the hooks gathered so far to the loop they follow, to plan with its checks for some requests."""
        if links and isinstance(loop := links[-1], _Loop) and (hooks or loop.for_some):
            loop.plan(hooks)
            hooks.clear()

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # the first link's coroutine itself, not one more frame around it
        return self._first(Exchange(scope, receive, send))


async def disconnected(receive: Receive) -> None:
    """Returns once the agent has gone away (reading, and dropping, whatever else arrives)."""
    while (await receive())["type"] != "http.disconnect":
        pass
