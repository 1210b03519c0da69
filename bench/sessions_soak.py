"""Many agents at once: thousands of agent sessions and open server-to-client streams on two ingress
replicas, and what they cost.

    ./run bench --sessions                                   # 5,000 sessions, 1,000 open streams
    ./run bench --sessions --sessions-count 500 --streams 100 --json out.json

The stack of `replicated_stack.py` (a 3-server NATS cluster, every store on 3 servers, Valkey, two
ingress replicas; one replica of the other services), one upstream (tests/support/ledger_server.py).
In turn:

1. baseline: each ingress replica's resident memory (RSS, /proc) and the p99 of a probe (`--probe`
   tools/call on one session, 16 in flight) with nothing else open;
2. `--sessions-count` agent sessions, spread over both replicas (`--open-concurrency` at a time), each
   `initialize`, `notifications/initialized`, `tools/list` and `--calls-each` tools/call, left open;
3. `--streams` of those sessions open `GET /mcp` (the session's stream of server-initiated messages)
   and keep it open; memory per replica and the probe's p99 while all are open;
4. the streams close and every session ends (`DELETE /mcp`); memory and the probe again after
   `--after` seconds.

It prints memory per session per replica ((RSS open - RSS baseline) / the sessions that replica
holds), the p99 of every phase and whether memory returned. Noisy: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the checkout's packages

from bench.replicated_stack import ReplicatedStack, jsonrpc_answer, ledger_config, p99, parse_stack_args, run_in

KEY = "bk_sessions_soak_agent_".ljust(40, "0")
PROTOCOL = "2025-06-18"


def rss_mib(pid: int | None) -> float:
    """Resident memory of process `pid` in MiB (`VmRSS`)."""
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int | None) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir())) if pid is not None else 0


def figures(latencies: list[float]) -> dict[str, Any]:
    if not latencies:
        return {"n": 0}
    return {
        "n": len(latencies),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * p99(latencies), 1),
    }


@dataclass
class Session:
    url: str
    http: httpx.AsyncClient
    id: str = ""
    next_id: int = 0
    errors: list[str] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        own = {"mcp-session-id": self.id, "mcp-protocol-version": PROTOCOL} if self.id else {}
        return {"authorization": f"Bearer {KEY}", "accept": "application/json, text/event-stream", **own}

    async def rpc(self, method: str, params: dict[str, Any] | None = None) -> tuple[float, dict[str, Any]]:
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, **({"params": params} if params else {})}
        began = time.monotonic()
        response = await self.http.post(self.url, json=message, headers=self.headers())
        answer = jsonrpc_answer(response)
        if method == "initialize" and (sid := response.headers.get("mcp-session-id")):
            self.id = sid
        if response.status_code != 200 or "error" in answer or (answer.get("result") or {}).get("isError"):
            self.errors.append(f"{method}: HTTP {response.status_code} {str(answer)[:120]}")
        return time.monotonic() - began, answer

    async def open(self, calls: int, token: str) -> list[float]:
        """initialize, initialized, tools/list and `calls` tools/call: the latency of each request."""
        took = [(await self.rpc("initialize", _init()))[0]]
        await self.http.post(
            self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=self.headers()
        )
        took.append((await self.rpc("tools/list"))[0])
        for i in range(calls):
            args = {"name": "ledger__record", "arguments": {"mark": f"{token}-{i}"}}
            took.append((await self.rpc("tools/call", args))[0])
        return took

    async def end(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self.http.delete(self.url, headers=self.headers())


def _init() -> dict[str, Any]:
    return {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "soak", "version": "1"}}


async def hold_stream(session: Session, opened: asyncio.Event, close: asyncio.Event, http: httpx.AsyncClient) -> str:
    """`GET /mcp` on `session`, held open until `close`; why it ended early, or ""."""
    headers = {**session.headers(), "accept": "text/event-stream"}
    try:
        async with http.stream("GET", session.url, headers=headers) as response:
            if response.status_code != 200:
                opened.set()
                return f"HTTP {response.status_code}"
            reading = asyncio.ensure_future(response.aread())
            opened.set()
            closing = asyncio.ensure_future(close.wait())
            done, _ = await asyncio.wait({reading, closing}, return_when=asyncio.FIRST_COMPLETED)
            reading.cancel()
            closing.cancel()
            return "" if closing in done else "the server ended the stream"
    except httpx.HTTPError as exc:
        opened.set()
        return type(exc).__name__


async def probe(url: str, count: int, concurrency: int, tag: str) -> dict[str, Any]:
    """`count` tools/call on one fresh session, `concurrency` in flight: p50/p99 and errors."""
    async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
        session = Session(url, http)
        await session.open(0, f"{tag}-probe-open")
        latencies: list[float] = []
        numbers = iter(range(count))

        async def worker() -> None:
            for n in numbers:
                args = {"name": "ledger__record", "arguments": {"mark": f"{tag}-probe-{n}"}}
                latencies.append((await session.rpc("tools/call", args))[0])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await session.end()
        return {**figures(latencies), "errors": len(session.errors)}


def memory(stack: ReplicatedStack) -> dict[str, dict[str, float]]:
    return {
        name: {"rss_mib": round(rss_mib(stack.pid(name)), 1), "fds": open_fds(stack.pid(name))}
        for name in stack.children("ingress-")
    }


def config(ledger: Path) -> dict[str, Any]:
    return ledger_config(
        ledger,
        [{"name": "soak", "key": KEY, "tools": ["ledger/*"], "rate_limit": {"requests": 10_000_000, "per": "minute"}}],
    )


async def one_round(args: argparse.Namespace, stack: ReplicatedStack, urls: list[str], n: int) -> dict[str, Any]:
    """Round `n`: the sessions open, the streams open, both close; the figures of each phase."""
    report: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=args.open_concurrency, max_keepalive_connections=args.open_concurrency)
    async with (
        httpx.AsyncClient(timeout=120, limits=limits, trust_env=False) as http,
        httpx.AsyncClient(
            timeout=httpx.Timeout(120, read=None),
            limits=httpx.Limits(max_connections=args.streams + 10),
            trust_env=False,
        ) as streams_http,
    ):
        sessions = [Session(urls[i % len(urls)], http) for i in range(args.sessions_count)]
        gate = asyncio.Semaphore(args.open_concurrency)
        latencies: list[float] = []

        async def open_one(i: int, session: Session) -> None:
            async with gate:
                try:
                    latencies.extend(await session.open(args.calls_each, f"r{n}s{i}"))
                except httpx.HTTPError as exc:
                    session.errors.append(f"open: {type(exc).__name__}")

        began = time.monotonic()
        await asyncio.gather(*(open_one(i, s) for i, s in enumerate(sessions)))
        opened_s = time.monotonic() - began
        errors = [e for s in sessions for e in s.errors]
        report["open"] = {
            "seconds": round(opened_s, 1),
            "requests": figures(latencies),
            "errors": len(errors),
            "error_examples": errors[:5],
            "memory": memory(stack),
        }
        print(f"{args.sessions_count} sessions open: {report['open']}", flush=True)

        close = asyncio.Event()
        with_stream = [s for s in sessions if s.id][: args.streams]
        events = [asyncio.Event() for _ in with_stream]
        holders = [
            asyncio.ensure_future(hold_stream(s, e, close, streams_http))
            for s, e in zip(with_stream, events, strict=True)
        ]
        await asyncio.gather(*(e.wait() for e in events))
        await asyncio.sleep(2)
        early = [h.result() for h in holders if h.done()]
        report["streams_open"] = {
            "opened": len(holders) - len(early),
            "refused_or_ended": len(early),
            "why": sorted(set(early))[:5],
            "memory": memory(stack),
            "probe": await probe(urls[0], args.probe, 16, f"open{n}"),
            "probe_replica2": await probe(urls[1], args.probe, 16, f"open{n}b"),
        }
        print(f"{len(holders)} streams open: {report['streams_open']}", flush=True)

        close.set()
        await asyncio.gather(*holders, return_exceptions=True)
        ended = time.monotonic()

        async def end_one(session: Session) -> None:
            async with gate:  # thousands queued in httpx's pool at once cost it quadratic time
                await session.end()

        await asyncio.gather(*(end_one(s) for s in sessions if s.id))
        report["ended_s"] = round(time.monotonic() - ended, 1)
    await asyncio.sleep(args.after)
    report["after"] = {"memory": memory(stack), "probe": await probe(urls[0], args.probe, 16, f"after{n}")}
    print(f"after closing: {report['after']}", flush=True)
    return report


async def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    replicas = {"ingress": 2, "policy": 1, "executor": 1, "codemode": 1, "audit": 1, "oauth": 1}
    # every open stream holds a connection: room for them, the sessions' requests and the probe
    ingress_env = {"BASTION_MAX_CONNECTIONS": str(args.streams + args.open_concurrency + 500)}
    stack = ReplicatedStack(
        workdir, config(workdir / "ledger.txt"), replicas=replicas, service_env={"ingress": ingress_env}
    )
    print(f"starting: 3 nats-servers, valkey, 2 ingress replicas, one of each other service ({workdir})", flush=True)
    await stack.start()
    report: dict[str, Any] = {"sessions": args.sessions_count, "streams": args.streams}
    try:
        urls = stack.urls
        await probe(urls[0], 200, 16, "warm")  # the first calls open upstream sessions, caches...
        await probe(urls[1], 200, 16, "warm2")
        report["baseline"] = {"memory": memory(stack), "probe": await probe(urls[0], args.probe, 16, "base")}
        print(f"baseline: {report['baseline']}", flush=True)

        report["rounds"] = []
        for n in range(1, args.rounds + 1):
            report["rounds"].append(await one_round(args, stack, urls, n))
        report.update(report["rounds"][0])  # the first round's figures at the top, as before
        report["per_session_kib"] = per_session(report, args.sessions_count)
        return report
    finally:
        await stack.stop()


def per_session(report: dict[str, Any], sessions: int) -> dict[str, Any]:
    """Per replica: memory per session held (sessions alone, then with the streams) and what stayed."""
    out: dict[str, Any] = {}
    for name, base in report["baseline"]["memory"].items():
        held = sessions / 2
        opened = report["open"]["memory"][name]["rss_mib"] - base["rss_mib"]
        streaming = report["streams_open"]["memory"][name]["rss_mib"] - base["rss_mib"]
        out[name] = {
            "sessions_kib_each": round(1024 * opened / held, 2),
            "after_each_round_mib": [
                round(r["after"]["memory"][name]["rss_mib"] - base["rss_mib"], 1) for r in report["rounds"]
            ],
            "sessions_and_streams_mib": round(streaming, 1),
            "after_mib_over_baseline": round(report["after"]["memory"][name]["rss_mib"] - base["rss_mib"], 1),
        }
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions-count", type=int, default=5000, help="agent sessions (default 5,000)")
    parser.add_argument("--streams", type=int, default=1000, help="of them with GET /mcp open (default 1,000)")
    parser.add_argument("--calls-each", type=int, default=2, help="tools/call per session (default 2)")
    parser.add_argument("--open-concurrency", type=int, default=128, help="sessions opening at once")
    parser.add_argument("--probe", type=int, default=400, help="calls of each latency probe")
    parser.add_argument("--rounds", type=int, default=1, help="open and close everything this many times")
    parser.add_argument("--after", type=float, default=15.0, help="seconds after closing before measuring")
    return parse_stack_args(parser, argv)


def main() -> int:
    args = parse_args()
    report = run_in(args.workdir, "bastion-sessions-", lambda workdir: soak(args, workdir))
    print(json.dumps(report["per_session_kib"], indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
