"""The failover benchmark's load (`bench/failover.py`): agent sessions, one key each, spread over the
ingress replicas, sending a mix of `tools/list`, `tools/call` of the ledger tool and Code Mode runs, each
call's outcome classified as docs/reliability.md tells an agent to read it."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from dataclasses import dataclass, field

import httpx

from bench.replicated_stack import ReplicatedStack, jsonrpc_answer
from libs.common.audit.audit_content import to_json

CALL_TIMEOUT = 20.0
"""The gateway's `call_timeout`; a client gives up CALL_TIMEOUT + 10 s after sending (a hang)."""
RETRYABLE = {-32070: "gateway_unavailable", -32071: "gateway_timeout"}
"""JSON-RPC errors docs/reliability.md tells an agent to retry (a call that may have run says so)."""
MIX = ("call", "list", "call", "code", "call", "list", "call", "call", "list", "call")
"""Per ten requests of an agent: six tools/call, three tools/list, one Code Mode run."""


def digest(arguments: dict) -> str:
    """The `arguments_sha256` of an audit row for these arguments."""
    return hashlib.sha256(to_json(arguments).encode()).hexdigest()


def script(token: str) -> str:
    return f'result = ledger.record(mark="{token}")'


@dataclass
class Call:
    kind: str
    """"call" (tools/call of ledger__record), "list" (tools/list) or "code" (Code Mode execute_code)."""
    token: str
    session: int
    started: float
    ended: float = 0.0
    outcome: str = ""
    """"ok", "retryable" (an error an agent retries), "failed" (any other error) or "hung"."""
    detail: str = ""
    replica: int = -1

    @property
    def latency(self) -> float:
        return self.ended - self.started

    @property
    def arguments(self) -> dict | None:
        if self.kind == "list":
            return None
        return {"mark": self.token} if self.kind == "call" else {"code": script(self.token)}


@dataclass
class Agent:
    """One agent session: its key, a session id every replica accepts, a preferred replica."""

    index: int
    urls: list[str]
    key: str
    http: httpx.AsyncClient
    session_id: str = ""
    next_id: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def headers(self) -> dict[str, str]:
        session = {"mcp-session-id": self.session_id, "mcp-protocol-version": "2025-06-18"} if self.session_id else {}
        return {"authorization": f"Bearer {self.key}", "accept": "application/json, text/event-stream", **session}

    async def post(self, message: dict, headers: dict[str, str], deadline: float) -> tuple[int, dict, int]:
        """POST to the preferred replica, or the next one that accepts the connection (a refused
        connection sent nothing); the HTTP status, the JSON-RPC answer and the replica that answered."""
        order = [(self.index + i) % len(self.urls) for i in range(len(self.urls))]
        while True:
            for replica in order:
                try:
                    response = await self.http.post(
                        self.urls[replica],
                        json=message,
                        headers={**self.headers, **headers},
                        timeout=max(0.1, deadline - time.monotonic()),
                    )
                except httpx.ConnectError:
                    continue
                return response.status_code, _answer(response), replica
            if time.monotonic() > deadline:
                raise httpx.ConnectTimeout("no ingress replica accepted a connection")
            await asyncio.sleep(0.1)  # every replica refused: they are restarting

    async def open(self) -> None:
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "failover", "version": "1"}}
        deadline = time.monotonic() + 60
        while True:
            try:
                status, answer, _ = await self.post(self._msg("initialize", init), {}, deadline)
                if status == 200 and "result" in answer:
                    break
                problem = f"HTTP {status} {answer}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            if time.monotonic() > deadline:
                raise SystemExit(f"agent {self.index} could not initialize a session: {problem}")
            await asyncio.sleep(0.2)
        self.session_id = answer["_session"]
        await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, {}, deadline)

    def _msg(self, method: str, params: dict | None = None) -> dict:
        return {"jsonrpc": "2.0", "id": next(self.next_id), "method": method, **({"params": params} if params else {})}

    async def send(self, call: Call) -> None:
        if call.kind == "list":
            message, headers = self._msg("tools/list"), {}
        elif call.kind == "call":
            message = self._msg("tools/call", {"name": "ledger__record", "arguments": call.arguments})
            headers = {}
        else:
            message = self._msg("tools/call", {"name": "execute_code", "arguments": call.arguments})
            headers = {"x-bastion-code-mode": "on"}
        try:
            status, answer, call.replica = await self.post(message, headers, call.started + CALL_TIMEOUT + 10)
        except httpx.TimeoutException:
            call.outcome, call.detail = "hung", "no answer within the call timeout + 10 s"
        except httpx.HTTPError as exc:  # the replica died with the request: it may have run
            call.outcome, call.detail = "retryable", f"connection lost ({type(exc).__name__})"
        else:
            call.outcome, call.detail = _classify(status, answer)
        call.ended = time.monotonic()


def _answer(response: httpx.Response) -> dict:
    answer = jsonrpc_answer(response)
    if session := response.headers.get("mcp-session-id"):
        answer["_session"] = session
    return answer


def _classify(status: int, answer: dict) -> tuple[str, str]:
    if status in (429, 503):
        return "retryable", f"HTTP {status}"
    if "error" in answer:
        code, message = answer["error"].get("code"), str(answer["error"].get("message", ""))
        return ("retryable" if code in RETRYABLE else "failed"), f"{code} {message[:90]}"
    result = answer.get("result")
    if not isinstance(result, dict):
        return "failed", f"HTTP {status}, no result"
    if result.get("isError"):
        text = " ".join(str(c.get("text", "")) for c in result.get("content", []) if isinstance(c, dict))
        # a script's tool call answered gateway_unavailable/timeout says so in the run's error
        retry = any(str(code) in text or name in text for code, name in RETRYABLE.items())
        return ("retryable" if retry else "failed"), f"isError {text[:90]}"
    return "ok", ""


@dataclass
class Load:
    stack: ReplicatedStack
    keys: list[str]
    concurrency: int
    calls: int
    prefix: str
    results: list[Call] = field(default_factory=list)
    faults_done: asyncio.Event = field(default_factory=asyncio.Event)
    _sequence: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def done(self) -> bool:
        return len(self.results) >= self.calls and self.faults_done.is_set()

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency + len(self.keys), max_keepalive_connections=None)
        async with httpx.AsyncClient(timeout=CALL_TIMEOUT + 10, limits=limits, trust_env=False) as http:
            agents = [Agent(i, self.stack.urls, key, http) for i, key in enumerate(self.keys)]
            await asyncio.gather(*(agent.open() for agent in agents))
            await asyncio.gather(*(self._worker(agents[w % len(agents)]) for w in range(self.concurrency)))

    async def _worker(self, agent: Agent) -> None:
        while not self.done:
            n = next(self._sequence)
            call = Call(MIX[n % len(MIX)], f"{self.prefix}-{n}", agent.index, time.monotonic())
            await agent.send(call)
            self.results.append(call)
            if call.outcome != "ok":
                await asyncio.sleep(0.1)  # an agent backs off a little after a failure
