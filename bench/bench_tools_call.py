"""tools/call latency and throughput: directly against an upstream, and through Bastion, in one run.

    ./run bench                      # defaults: 2000 sequential calls, 16 clients x 250 calls
    ./run bench --calls 500 --json out.json

Same upstream (examples/servers/echo_server.py over streamable HTTP), same client, same run. The
gateway is started with `bastion up` (every service its own process, as in production) on an
embedded NATS. To show where the time goes it also measures three shorter gateway paths:
  ping          ingress alone (HTTP, auth, JSON-RPC; no NATS)
  unknown tool  ingress alone, through the tools/call handler and an audit event
  denied call   ingress -> policy -> ingress (one NATS round trip, no executor, no upstream)
The client is a minimal keep-alive HTTP client speaking MCP JSON-RPC (handshake-era session), so
client-side SDK costs do not blur the comparison. This is a script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ECHO = ROOT / "examples" / "servers" / "echo_server.py"
KEY, DENIED_KEY = "bk_bench_allowed_key_0123456789", "bk_bench_denied_key_0123456789"


@dataclass
class Result:
    name: str
    p50_ms: float
    p99_ms: float
    mean_ms: float
    calls_per_s: float | None = None


MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


class McpClient:
    """One MCP client over one keep-alive HTTP connection: a handshake-era session (2025-06-18),
    or 2026-07-28 per-request envelopes (no session; `_meta` and routing headers on every call)."""

    era = "legacy"

    def __init__(self, url: str, key: str | None = None) -> None:
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        self.url = url
        self.http = httpx.AsyncClient(headers=headers, timeout=30, limits=httpx.Limits(max_connections=1))
        self.next_id = 0

    async def open(self) -> McpClient:
        if self.era == "modern":
            self.http.headers["mcp-protocol-version"] = MODERN
            return self
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
        response = await self.http.post(self.url, json=self._msg("initialize", init))
        response.raise_for_status()
        session = response.headers.get("mcp-session-id")
        if session:
            self.http.headers["mcp-session-id"] = session
        self.http.headers["mcp-protocol-version"] = "2025-06-18"
        await self.http.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self

    def _msg(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        return {"jsonrpc": "2.0", "id": self.next_id, "method": method, **({"params": params} if params else {})}

    async def request(self, method: str, params: dict | None = None) -> dict:
        headers = None
        if self.era == "modern":
            params = {**(params or {}), "_meta": META}
            headers = {"mcp-method": method, **({"mcp-name": params["name"]} if "name" in params else {})}
        response = await self.http.post(self.url, json=self._msg(method, params), headers=headers)
        text = response.text
        if text.startswith("event:") or "\ndata: " in text:  # SSE answer
            text = next(line[6:] for line in text.splitlines() if line.startswith("data: "))
        return json.loads(text)

    async def close(self) -> None:
        await self.http.aclose()


async def sequential(client: McpClient, method: str, params: dict | None, calls: int, expect: str) -> list[float]:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        answer = await client.request(method, params)
        samples.append((time.perf_counter() - start) * 1000)
        if expect not in answer:
            raise SystemExit(f"unexpected answer for {method}: {answer}")
    return samples


async def concurrent(url: str, key: str | None, tool: str, clients: int, calls_each: int) -> float:
    sessions = [await McpClient(url, key).open() for _ in range(clients)]
    params = {"name": tool, "arguments": {"text": "hello"}}

    async def worker(client: McpClient) -> None:
        for _ in range(calls_each):
            answer = await client.request("tools/call", params)
            if "result" not in answer:
                raise SystemExit(f"call failed under load: {answer}")

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in sessions))
    elapsed = time.perf_counter() - start
    for c in sessions:
        await c.close()
    return clients * calls_each / elapsed


def summarize(name: str, samples: list[float], rate: float | None = None) -> Result:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Result(name, statistics.median(ordered), p99, statistics.fmean(ordered), rate)


def start_upstream() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ECHO), "--http", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        raise SystemExit(f"upstream did not start: {line!r}")
    return proc, line.split()[1]


def start_gateway(
    upstream_url: str, workdir: Path, extra_servers: dict | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`bastion up` with the `echo` upstream (plus `extra_servers`, reachable by the same key)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = workdir / "bench.yaml"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {"echo": {"url": upstream_url}, **(extra_servers or {})},
                "keys": [
                    {"name": "bench", "key": KEY, "tools": ["echo/*", *(f"{name}/*" for name in extra_servers or {})]},
                    {"name": "denied", "key": DENIED_KEY, "tools": []},
                ],
                "stack": {"data_dir": str(workdir / "data")},
            }
        )
    )
    env = {**os.environ, "BASTION_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bastion_cli", "up", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=workdir,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{base}/healthz", timeout=1)
            if health.status_code == 200 and health.json().get("tools", 0) > 0:
                return proc, f"{base}/mcp"
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit("bastion up exited; run it by hand to see why")
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    raise SystemExit("the gateway did not become ready within 60s")


async def measure(args: argparse.Namespace, upstream_url: str, gateway_url: str) -> list[Result]:
    call = {"name": "echo", "arguments": {"text": "hello"}}
    via = {"name": "echo__echo", "arguments": {"text": "hello"}}
    results = []
    direct = await McpClient(upstream_url).open()
    gateway = await McpClient(gateway_url, KEY).open()
    denied = await McpClient(gateway_url, DENIED_KEY).open()
    for client, params in ((direct, call), (gateway, via)):  # warm both paths the same way
        await sequential(client, "tools/call", params, args.warmup, "result")
    # interleave rounds so drift on a noisy machine hits both paths alike
    d_samples: list[float] = []
    g_samples: list[float] = []
    for _ in range(10):
        d_samples += await sequential(direct, "tools/call", call, args.calls // 10, "result")
        g_samples += await sequential(gateway, "tools/call", via, args.calls // 10, "result")
    d_rate = await concurrent(upstream_url, None, "echo", args.concurrency, args.calls_each)
    g_rate = await concurrent(gateway_url, KEY, "echo__echo", args.concurrency, args.calls_each)
    results.append(summarize("direct: tools/call", d_samples, d_rate))
    results.append(summarize("bastion: tools/call", g_samples, g_rate))
    results.append(
        summarize("bastion: ping (ingress only)", await sequential(gateway, "ping", None, args.calls, "result"))
    )
    unknown = {"name": "nope__nope", "arguments": {}}
    results.append(
        summarize(
            "bastion: unknown tool (ingress only)",
            await sequential(gateway, "tools/call", unknown, args.calls, "error"),
        )
    )
    results.append(
        summarize(
            "bastion: denied call (ingress+policy)", await sequential(denied, "tools/call", via, args.calls, "error")
        )
    )
    for client in (direct, gateway, denied):
        await client.close()
    return results


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\nclient protocol: {args.era}")
    print(f"{'path':40} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'calls/s @c=' + str(args.concurrency):>16}")
    for r in results:
        rate = f"{r.calls_per_s:,.0f}" if r.calls_per_s else ""
        print(f"{r.name:40} {r.p50_ms:8.3f} {r.p99_ms:8.3f} {r.mean_ms:8.3f} {rate:>16}")
    direct, gateway = results[0], results[1]
    print(
        f"\noverhead p50 {gateway.p50_ms - direct.p50_ms:+.3f} ms, p99 {gateway.p99_ms - direct.p99_ms:+.3f} ms; "
        f"throughput {100 * (gateway.calls_per_s or 0) / (direct.calls_per_s or 1):.0f}% of direct"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per path")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--calls-each", type=int, default=250, help="calls per client in the concurrent phase")
    parser.add_argument(
        "--era",
        choices=["legacy", "modern"],
        default="modern",
        help="protocol the client speaks to both endpoints: 2025-06-18 sessions or 2026-07-28",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    McpClient.era = args.era
    upstream, upstream_url = start_upstream()
    with tempfile.TemporaryDirectory() as tmp:
        gateway, gateway_url = start_gateway(upstream_url, Path(tmp))
        try:
            results = asyncio.run(measure(args, upstream_url, gateway_url))
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(30)
            upstream.terminate()
            upstream.wait(10)
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))


if __name__ == "__main__":
    main()
