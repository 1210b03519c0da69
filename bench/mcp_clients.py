"""The benchmarks' MCP clients and timing helpers: minimal on purpose, so client-side SDK costs do not
blur a comparison between a direct path and the gateway.

- `McpClient`: one keep-alive HTTP connection speaking JSON-RPC, as a handshake-era session
  (2025-06-18) or with 2026-07-28 per-request envelopes (`McpClient.era`);
- `StdioClient`: JSON-RPC lines on a stdio server's pipes, answers matched by id, so concurrent
  callers share the one pipe;
- `SseClient`: the HTTP+SSE transport (2024-11-05): requests POSTed to the endpoint the server
  names on its event stream, answers read from that stream and matched by id.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urljoin

import httpx

from services.executor.upstreams.mcp.http1 import HttpPool

__all__ = [
    "ECHO",
    "McpClient",
    "Result",
    "SseClient",
    "StdioClient",
    "concurrent",
    "sequential",
    "summarize",
]

ECHO = Path(__file__).resolve().parent.parent / "examples" / "servers" / "echo_server.py"
MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
_INIT = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}


@dataclass
class Result:
    name: str
    p50_ms: float
    p99_ms: float
    mean_ms: float
    calls_per_s: float | None = None


class Client(Protocol):
    async def request(self, method: str, params: dict | None = None) -> dict: ...

    async def close(self) -> None: ...


class McpClient:
    """One MCP client over one keep-alive HTTP connection: a handshake-era session (2025-06-18),
    or 2026-07-28 per-request envelopes (no session; `_meta` and routing headers on every call).

    `lean` (the default) sends on an llhttp connection (`services.executor.upstreams.mcp.http1`, ~90 µs of CPU per
    call here); `lean = False` on httpx (~950 µs). A load generator that costs as much CPU per call
    as the upstream takes a core's worth from what it measures on a two-core machine: through the
    gateway the client, the upstream and Bastion share the two cores, so the heavier the client, the
    lower "throughput as % of direct" reads, whatever Bastion costs (docs/benchmarks.md)."""

    era = "legacy"
    lean = True

    def __init__(self, url: str, key: str | None = None, timeout: float | None = 30) -> None:
        self.headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if key:
            self.headers["authorization"] = f"Bearer {key}"
        self.url = url
        self.http: HttpPool | httpx.AsyncClient = (
            HttpPool(url, limit=1)
            if self.lean
            else httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=1))
        )
        self.timeout = timeout
        self.next_id = 0

    async def open(self) -> McpClient:
        if self.era == "modern":
            self.headers["mcp-protocol-version"] = MODERN
            return self
        status, headers, body = await self._exchange(self._msg("initialize", _INIT), {})
        if status != 200:
            raise SystemExit(f"initialize: HTTP {status} from {self.url}: {body[:200]!r}")
        session = headers.get("mcp-session-id")
        if session:
            self.headers["mcp-session-id"] = session
        self.headers["mcp-protocol-version"] = "2025-06-18"
        await self._exchange({"jsonrpc": "2.0", "method": "notifications/initialized"}, {})
        return self

    def _msg(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        return {"jsonrpc": "2.0", "id": self.next_id, "method": method, **({"params": params} if params else {})}

    async def _exchange(self, message: dict, headers: dict[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        """POST one JSON-RPC message; the answer's status, headers (lower-case names) and body."""
        body, headers = json.dumps(message).encode(), {**self.headers, **headers}
        async with asyncio.timeout(self.timeout):
            if isinstance(self.http, HttpPool):
                async with self.http.post(body, headers) as response:
                    content = await response.read()
                    status, answer_headers = response.status, response.headers
            else:
                answer = await self.http.post(self.url, content=body, headers=headers)
                content, status, answer_headers = answer.content, answer.status_code, answer.headers
        return status, answer_headers, content

    async def post(self, method: str, params: dict | None = None) -> bytes:
        """The raw answer body (JSON, or an SSE stream of one event)."""
        headers = {}
        if self.era == "modern":
            params = {**(params or {}), "_meta": META}
            headers = {"mcp-method": method, **({"mcp-name": params["name"]} if "name" in params else {})}
        return (await self._exchange(self._msg(method, params), headers))[2]

    async def request(self, method: str, params: dict | None = None) -> dict:
        text = (await self.post(method, params)).decode()
        if text.startswith("event:") or "\ndata: " in text:  # SSE answer
            text = next(line[6:] for line in text.splitlines() if line.startswith("data: "))
        return json.loads(text)

    async def close(self) -> None:
        await (self.http.close() if isinstance(self.http, HttpPool) else self.http.aclose())


class _Matched(ABC):
    """Answers matched to requests by id, for transports whose answers arrive on a stream of their own."""

    def __init__(self) -> None:
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future[dict]] = {}
        self.reader: asyncio.Task[None] | None = None

    def _answered(self, message: dict) -> None:
        future = self.waiting.pop(message.get("id"), None)  # type: ignore[arg-type]
        if future is not None and not future.done():
            future.set_result(message)

    @abstractmethod
    async def _send(self, message: dict) -> None:
        """Write one JSON-RPC message to the server (a line on stdin, a POST to the SSE endpoint)."""

    async def request(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = future
        await self._send(
            {"jsonrpc": "2.0", "id": self.next_id, "method": method, **({"params": params} if params else {})}
        )
        return await asyncio.wait_for(future, 30)

    async def _handshake(self) -> None:
        await self.request("initialize", _INIT)
        await self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})


class StdioClient(_Matched):
    """The direct path to a stdio upstream: JSON-RPC lines on its stdin/stdout, requests matched
    to answers by id so concurrent callers can share the one pipe."""

    def __init__(self) -> None:
        super().__init__()
        self.proc: asyncio.subprocess.Process | None = None

    async def open(self) -> StdioClient:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ECHO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            limit=2**24,
        )
        self.reader = asyncio.create_task(self._read())
        await self._handshake()
        return self

    async def _send(self, message: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self._answered(json.loads(line))

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


class SseClient(_Matched):
    """The direct path to an HTTP+SSE upstream: one event stream (GET), requests POSTed to the
    endpoint it names, answers read off the stream and matched by id."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30, read=None))
        self.endpoint: asyncio.Future[str] | None = None

    async def open(self) -> SseClient:
        self.endpoint = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read())
        await asyncio.wait_for(asyncio.shield(self.endpoint), 10)
        await self._handshake()
        return self

    async def _send(self, message: dict) -> None:
        assert self.endpoint is not None
        response = await self.http.post(self.endpoint.result(), json=message)
        response.raise_for_status()

    async def _read(self) -> None:
        assert self.endpoint is not None
        async with self.http.stream("GET", self.url, headers={"accept": "text/event-stream"}) as response:
            event, data = "", []
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif not line and data:
                    text = "\n".join(data)
                    if event == "endpoint":
                        self.endpoint.set_result(urljoin(self.url, text))
                    else:
                        self._answered(json.loads(text))
                    event, data = "", []

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        await self.http.aclose()


async def sequential(client: Client, method: str, params: dict | None, calls: int, expect: str) -> list[float]:
    """Milliseconds of `calls` requests made one after the other; each answer must hold `expect`."""
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        answer = await client.request(method, params)
        samples.append((time.perf_counter() - start) * 1000)
        if expect not in answer:
            raise SystemExit(f"unexpected answer for {method}: {answer}")
    return samples


async def concurrent(
    open_client: Callable[[], Awaitable[Client]], params: dict, clients: int, calls_each: int
) -> float:
    """Calls per second of `clients` concurrent callers, each with what `open_client()` gives (which
    may be one shared client: a stdio server has one pipe)."""
    sessions = [await open_client() for _ in range(clients)]

    async def worker(client: Client) -> None:
        for _ in range(calls_each):
            answer = await client.request("tools/call", params)
            if "result" not in answer:
                raise SystemExit(f"call failed under load: {answer}")

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in sessions))
    elapsed = time.perf_counter() - start
    for c in {id(c): c for c in sessions}.values():
        await c.close()
    return clients * calls_each / elapsed


def print_results(results: list[Result], first: str, width: int, digits: int = 3, rate: str | None = None) -> None:
    """The latency table of `results`: `first` heads the names' column; p50, p99 and mean in ms, and the
    calls per second under the heading `rate` when given."""
    rate_head = f" {rate:>16}" if rate is not None else ""
    print(f"{first:{width}} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}{rate_head}")
    for r in results:
        calls = f" {f'{r.calls_per_s:,.0f}' if r.calls_per_s else '':>16}" if rate is not None else ""
        print(f"{r.name:{width}} {r.p50_ms:8.{digits}f} {r.p99_ms:8.{digits}f} {r.mean_ms:8.{digits}f}{calls}")


def summarize(name: str, samples: list[float], rate: float | None = None) -> Result:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Result(name, statistics.median(ordered), p99, statistics.fmean(ordered), rate)
