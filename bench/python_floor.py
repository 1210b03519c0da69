"""What a forwarding MCP proxy costs in Python with nothing but forwarding, beside Bastion, in one run.

    .venv/bin/python bench/python_floor.py                    # direct, the floor proxy, Bastion co-located
    .venv/bin/python bench/python_floor.py --rounds 3 --calls-each 200
    .venv/bin/python bench/python_floor.py --separate --bytecodes 400  # Bastion's both layouts; the floor's bytecodes
    .venv/bin/python bench/python_floor.py --server granian-rsgi   # the floor proxy's HTTP served by granian
    .venv/bin/python bench/python_floor.py --also granian-rsgi     # both servers' floor proxies, side by side

The floor proxy is the least a Python gateway does per `tools/call`, built from the parts Bastion's
hot path uses: uvicorn with httptools on uvloop serving a raw ASGI app, which reads the body, parses
it (orjson), checks the bearer key against a set, strips the tool's server prefix, serialises the
message again and POSTs it to the upstream on Bastion's own llhttp keep-alive pool
(`services.executor.upstreams.mcp.http1.HttpPool`), then answers with the upstream's status, type and
body. No policy, audit, guardrails, pinning, limits, metrics, tracing or NATS: what is left of
Bastion's CPU per call above this floor is what its guarantees and its architecture cost.

`--server granian-rsgi` / `granian-asgi` serve the same proxy with granian (a Rust HTTP server from
PyPI, embedded in the same uvloop loop) instead of uvicorn: what a compiled HTTP edge would save a
Python gateway. granian is not a dependency of Bastion; the option needs it installed
(`pip install granian`).

CPU per call is read from /proc (every thread of the proxy process; for Bastion every process of
`bastion up`, as `./run bench` reads it), over `--clients` x `--calls-each` concurrent calls; the
added p50 from `--calls` sequential calls, interleaved with direct ones. Rounds alternate the paths
and medians close the run. A script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import http_servers
from gateway_stack import KEY, cpu_ticks, process_ticks, start_gateway, start_server, start_upstream, ticks_to_us
from mcp_clients import Client, McpClient, concurrent, sequential

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(__file__).resolve().parent / "hop_profile_site"
PREFIX = "echo__"
CALL = {"name": "echo", "arguments": {"text": "hello"}}
"""The call, as the upstream names its tool."""
VIA = {"name": f"{PREFIX}echo", "arguments": {"text": "hello"}}
"""The same call through a proxy or Bastion."""
_PASSED = tuple(
    (name, name.encode()) for name in ("accept", "content-type", "mcp-protocol-version", "mcp-session-id", "mcp-method")
)
_UNAUTHORIZED = b'{"error":"unauthorized"}'
Headers = list[tuple[bytes, bytes]]


class FloorProxy:
    """The floor proxy: every POST forwarded to `upstream`, as a raw ASGI app (`asgi`) or granian's RSGI
    callable (`rsgi`)."""

    def __init__(self, upstream: str, keys: frozenset[str]) -> None:
        from services.executor.upstreams.mcp.http1 import HttpPool

        self.pool = HttpPool(upstream, limit=64)
        self.bearers = frozenset(f"Bearer {k}".encode() for k in keys)

    async def forward(self, headers: Mapping[bytes, bytes], body: bytes) -> tuple[int, Headers, bytes]:
        """`body` renamed and POSTed upstream with the MCP headers: the answer's status, headers and body."""
        message = orjson.loads(body)
        params = message.get("params")
        if isinstance(params, dict) and str(params.get("name", "")).startswith(PREFIX):
            params["name"] = params["name"][len(PREFIX) :]
        passed = {name: headers[raw].decode() for name, raw in _PASSED if raw in headers}
        if b"mcp-name" in headers and isinstance(params, dict):
            passed["mcp-name"] = str(params.get("name", ""))
        async with self.pool.post(orjson.dumps(message), passed) as response:
            answer = await response.read()
            out = [(b"content-type", response.headers.get("content-type", "application/json").encode())]
            if session := response.headers.get("mcp-session-id"):  # a handshake-era session: the client keeps it
                out.append((b"mcp-session-id", session.encode()))
            return response.status, out, answer

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        if headers.get(b"authorization") not in self.bearers:
            status, out, answer = 401, [(b"content-type", b"application/json")], _UNAUTHORIZED
        else:
            status, out, answer = await self.forward(headers, await http_servers.read_body(receive))
        out.append((b"content-length", str(len(answer)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": answer})

    async def rsgi(self, scope: Any, protocol: Any) -> None:
        headers = {k.encode(): v.encode() for k, v in scope.headers.items()}
        if headers.get(b"authorization") not in self.bearers:
            protocol.response_bytes(401, [("content-type", "application/json")], _UNAUTHORIZED)
            return
        status, out, answer = await self.forward(headers, await protocol())
        protocol.response_bytes(status, [(k.decode(), v.decode()) for k, v in out], answer)


def serve(upstream: str, server: str) -> None:
    """Serve the floor proxy on a free port; print `READY <url>` once it listens."""
    proxy = FloorProxy(upstream, frozenset({KEY}))
    http_servers.serve(
        server, proxy.asgi, proxy.rsgi, 0, lambda port: print(f"READY http://127.0.0.1:{port}/mcp", flush=True)
    )


class _Modern(McpClient):
    era = "modern"


def _opener(url: str) -> Callable[[], Awaitable[Client]]:
    """What opens one more client of `url` (for `concurrent`)."""

    async def open_client() -> Client:
        return await _Modern(url, KEY).open()

    return open_client


def _tree_ticks(root: int) -> int:
    """CPU clock ticks of every Bastion process under `root` (`bastion up`), as `./run bench` sums them."""
    return sum(cpu_ticks(root).values())


Ticks = Callable[[], int]
"""CPU clock ticks a path's own processes have used so far."""


async def one_round(
    args: argparse.Namespace, paths: dict[str, tuple[str, Ticks]], number: int
) -> dict[str, dict[str, float]]:
    """Each path's added p50 (ms, against direct calls interleaved with it) and CPU per call (µs), the
    paths after the direct one taken in an order rotated by the round's `number` (drift hits each alike)."""
    out: dict[str, dict[str, float]] = {}
    direct_url = paths["direct"][0]
    direct: Client = await _Modern(direct_url).open()
    others = [name for name in paths if name != "direct"]
    turn = number % max(1, len(others))
    for name in ["direct", *others[turn:], *others[:turn]]:
        url, ticks = paths[name]
        params = CALL if name == "direct" else VIA
        client: Client = await _Modern(url, KEY).open()
        await sequential(client, "tools/call", params, 50, "result")
        d, g = [], []
        for _ in range(5):
            d += await sequential(direct, "tools/call", CALL, args.calls // 5, "result")
            g += await sequential(client, "tools/call", params, args.calls // 5, "result")
        await client.close()
        before = ticks()
        rate = await concurrent(_opener(url), params, args.clients, args.calls_each)
        cpu = ticks_to_us(ticks() - before, args.clients * args.calls_each)
        out[name] = {"added_p50": statistics.median(g) - statistics.median(d), "cpu": cpu, "rate": rate}
    await direct.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--server", default="uvicorn", choices=("uvicorn", "granian-rsgi", "granian-asgi"))
    parser.add_argument("--also", action="append", default=[], help="another --server for the floor proxy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per path per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--calls-each", type=int, default=150)
    parser.add_argument("--no-bastion", action="store_true", help="the floor proxies only")
    parser.add_argument("--separate", action="store_true", help="also Bastion with every service its own process")
    parser.add_argument("--bytecodes", type=int, default=0, help="then count each floor proxy's bytecodes over N calls")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.server)
        return
    servers = [args.server, *args.also]
    if any(s.startswith("granian") for s in servers) and importlib.util.find_spec("granian") is None:
        raise SystemExit("granian is not installed here (not a Bastion dependency): pip install granian")
    workdir = tempfile.TemporaryDirectory(prefix="bastion-floor-")
    upstream, url = start_upstream("http")
    procs: list[subprocess.Popen[str]] = [upstream]
    paths: dict[str, tuple[str, Ticks]] = {"direct": (url, lambda: process_ticks(upstream.pid))}
    env_argv = [str(Path(__file__).resolve()), "--serve", url]
    counted = Path(workdir.name) / "bytecodes"
    counted.mkdir()
    # the floor proxies count their instructions on SIGUSR2, as `hop_profile.py` has Bastion's count
    path = [str(SITE), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    site = {"PYTHONPATH": os.pathsep.join(path), "BENCH_PROFILE_DIR": str(counted)}
    floors: dict[str, tuple[str, int]] = {}  # name -> URL, pid
    for server in servers:
        proc, proxy_url = start_server(*env_argv, "--server", server, env={**os.environ, **site})
        procs.append(proc)
        floors[f"floor proxy ({server})"] = (proxy_url, proc.pid)
        paths[f"floor proxy ({server})"] = (proxy_url, functools.partial(process_ticks, proc.pid))
    gateways = []
    try:
        layouts = [] if args.no_bastion else ["co-located", *(["separate"] if args.separate else [])]
        for layout in layouts:
            state = Path(workdir.name) / layout
            state.mkdir()
            gateway = start_gateway({"echo": {"url": url}}, state, stack={"colocate": layout == "co-located"})
            gateways.append(gateway)
            paths[f"bastion {layout}"] = (gateway.url, functools.partial(_tree_ticks, gateway.proc.pid))
        rounds: list[dict[str, dict[str, float]]] = []
        for number in range(args.rounds):
            measured = asyncio.run(one_round(args, paths, number))
            rounds.append(measured)
            print(f"round {number + 1}, load {os.getloadavg()[0]:.1f}: " + _line(measured), flush=True)
        _table(rounds, args)
        if args.bytecodes:
            _count_bytecodes(args, floors, counted)
    finally:
        for gateway in gateways:
            gateway.stop()
        for proc in procs:
            proc.terminate()
        workdir.cleanup()


def _count_bytecodes(args: argparse.Namespace, floors: dict[str, tuple[str, int]], out: Path) -> None:
    """Each floor proxy's bytecode instructions per call over `--bytecodes` calls at `--clients`."""
    print(f"\nbytecodes per call on the proxy's loop thread, over {args.bytecodes} calls (bytecode_counts.py)")
    for name, (url, pid) in floors.items():
        os.kill(pid, signal.SIGUSR2)
        time.sleep(0.2)
        asyncio.run(concurrent(_opener(url), VIA, args.clients, args.bytecodes // args.clients))
        os.kill(pid, signal.SIGUSR2)
        written = out / f"other-{pid}.bytecodes.json"
        for _ in range(100):
            if written.exists():
                break
            time.sleep(0.1)
        areas = json.loads(written.read_text())["areas"]
        parts = ", ".join(f"{k.removeprefix('bytecodes_')} {v / args.bytecodes:,.0f}" for k, v in areas.items() if v)
        print(f"{name:34} {sum(areas.values()) / args.bytecodes:8,.0f}  ({parts})")


def _line(measured: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{k} {v['cpu']:.0f} µs, +{v['added_p50']:.2f} ms, {v['rate']:.0f}/s" for k, v in measured.items())


def _table(rounds: list[dict[str, dict[str, float]]], args: argparse.Namespace) -> None:
    print(f"\nmedians of {len(rounds)} rounds; {args.clients} clients x {args.calls_each} calls for CPU and throughput")
    print(f"{'path':34} {'CPU µs/call':>12} {'added p50 ms':>13} {'calls/s':>9} {'vs direct':>10}")
    direct_rate = statistics.median(r["direct"]["rate"] for r in rounds)
    for name in ["direct", *sorted(n for n in rounds[0] if n != "direct")]:
        cpu = statistics.median(r[name]["cpu"] for r in rounds)
        added = statistics.median(r[name]["added_p50"] for r in rounds)
        rate = statistics.median(r[name]["rate"] for r in rounds)
        print(f"{name:34} {cpu:12,.0f} {added:13.2f} {rate:9,.0f} {rate / direct_rate:10.0%}")


if __name__ == "__main__":
    main()
