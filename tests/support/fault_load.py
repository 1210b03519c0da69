"""Bounded load for fault tests: a few agents calling one non-idempotent tool in a loop.

Every call carries its own token (the ledger upstream records the tokens of the calls that ran),
and every outcome is kept: answered (a JSON-RPC result or error) or cut (no answer: connection
refused, reset, or the client's own timeout). The load stops when told to, or at `max_answered`
answered calls or `max_calls` in all.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from libs.common.web.guarded_http import shared_tls

__all__ = ["CallResult", "Load"]


@dataclass(frozen=True)
class CallResult:
    token: str
    started: float
    """`time.monotonic()` when the request was sent."""
    ended: float
    outcome: str
    """"ok", "error" (a JSON-RPC error or an isError result) or "cut" (no answer at all)."""
    code: int | None = None
    message: str = ""

    @property
    def answered(self) -> bool:
        return self.outcome != "cut"

    def seen_as(self) -> str:
        """What the agent saw, in a few words (for the fault table)."""
        if self.outcome == "ok":
            return "ok"
        if self.outcome == "cut":
            return f"no answer ({self.message})"
        return f"{self.code} {self.message.split(';')[0][:60]}"


@dataclass
class Load:
    url: str
    key: str
    prefix: str
    tool: str = "ledger__record"
    workers: int = 3
    max_answered: int = 800
    """Stays under the audit query's limit of 1000 rows, so every row of this load can be counted."""
    max_calls: int = 4000
    """Answered or not: while ingress restarts, every call is refused at once."""
    timeout: float = 30.0
    results: list[CallResult] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _sequence: itertools.count[int] = field(default_factory=itertools.count)

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient(
            headers=headers, timeout=self.timeout, trust_env=False, verify=shared_tls()
        ) as http:
            await asyncio.gather(*(self._agent(http) for _ in range(self.workers)))

    def stop(self) -> None:
        self._stop.set()

    async def _agent(self, http: httpx.AsyncClient) -> None:
        while not self._stop.is_set() and not self.exhausted and (n := next(self._sequence)) < self.max_calls:
            token = f"{self.prefix}-{n}"
            body = {
                "jsonrpc": "2.0",
                "id": n,
                "method": "tools/call",
                "params": {"name": self.tool, "arguments": {"mark": token}},
            }
            started = time.monotonic()
            try:
                response = await http.post(self.url, json=body)
                answer = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                result = CallResult(token, started, time.monotonic(), "cut", message=type(exc).__name__)
            else:
                result = _answered(token, started, answer)
            self.results.append(result)
            self._changed.set()
            if result.outcome != "ok":
                await asyncio.sleep(0.1)  # an agent backs off a little after a failure, as SDK clients do

    async def wait_for_ok(self, started_after: float, count: int, within: float) -> float:
        """The end time of the `count`-th ok call sent after `started_after`; fails after `within` s."""
        deadline = time.monotonic() + within
        while True:
            oks = sorted(r.ended for r in self.results if r.outcome == "ok" and r.started >= started_after)
            if len(oks) >= count:
                return oks[count - 1]
            if self._stop.is_set() or self.exhausted or len(self.results) >= self.max_calls:
                raise AssertionError(f"the load ended before {count} ok call(s): {self.summary()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {count} ok call(s) within {within}s: {self.summary()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue

    @property
    def exhausted(self) -> bool:
        return sum(r.answered for r in self.results) >= self.max_answered

    def summary(self) -> dict[str, int]:
        return dict(Counter(r.seen_as() for r in self.results))


def _answered(token: str, started: float, answer: dict) -> CallResult:
    ended = time.monotonic()
    if "error" in answer:
        error = answer["error"]
        return CallResult(token, started, ended, "error", error.get("code"), error.get("message", ""))
    result = answer.get("result") or {}
    if result.get("isError"):
        text = " ".join(c.get("text", "") for c in result.get("content", []))
        return CallResult(token, started, ended, "error", None, text)
    return CallResult(token, started, ended, "ok")
