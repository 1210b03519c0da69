"""`tools/list` of a large catalog through Bastion: 1,343 tools from 56 servers.

    .venv/bin/python bench/bench_tools_list.py                  # 300 lists per phase
    .venv/bin/python bench/bench_tools_list.py --calls 100 --baseline 390e463
    .venv/bin/python bench/bench_tools_list.py --calls 100 --baseline main --rounds 3   # alternating; medians too

The catalog is built deterministically from the 16 real tool dumps of tests/data/tool-schemas/code-mode-set.txt (516
tools): server n is a renamed copy of dump n mod 16 (`github-legacy-2`, ...), and every copy keeps
the same share of its dump's tools (largest remainders, ties by name), so the 56 servers list
exactly 1,343 tools (`catalog`). One process serves them all over streamable HTTP
(bench/code_mode/upstreams.py), `bastion up` aggregates them, and one key may use every tool.

Three phases, sequential requests on one keep-alive connection (2025-06-18 session):
  cached   the key's answer is cached in ingress (`handlers.tools_list`): encoding and sending it
  fresh    each request under another cache entry (its X-Bastion-Include-Servers is `*` plus a
           pattern no server has, so the same 1,343 tools), after 0.55 s idle: policy filters the
           1,343 (server, tool) pairs for the key over NATS, then the same. (Before ingress kept
           answers policy gave from an up-to-date view, this phase re-asked the same entry once its
           0.5 s TTL had passed; both ask policy after an idle half second.)
  fresh b2b  the same, back to back: the fresh path without the idle before each request
Latency is from the request to the last byte of the answer, read by a raw HTTP/1.1 client (`RawPost`:
an HTTP library's own parsing of 1.7 MB costs more than the gateway does); one answer is parsed
once, to check it lists every tool. `--baseline REF` runs REF's services too, first.
This is a script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_stack import KEY, export_baseline, start_gateway, start_server
from mcp_clients import McpClient, Result, summarize
from tool_dumps import CODE_MODE_SET, dump_files

ROOT = Path(__file__).resolve().parent.parent
UPSTREAMS = ROOT / "bench" / "code_mode" / "upstreams.py"
SERVERS, TOOLS = 56, 1343
_FRESH_AFTER = 0.55
"""Seconds idle before each `fresh` list (past the 0.5 s a possibly stale answer lives)."""


def catalog(servers: int = SERVERS, tools: int = TOOLS) -> dict[str, dict]:
    """Server name -> its `tools/list` result: renamed copies of the dumps, `tools` tools in all."""
    dumps = [(path.stem, json.loads(path.read_text())["tools"]) for path in dump_files(CODE_MODE_SET)]
    copies = [
        (f"{stem}-{n // len(dumps)}", listed) for n, (stem, listed) in enumerate(dumps * -(-servers // len(dumps)))
    ]
    copies = copies[:servers]
    total = sum(len(listed) for _, listed in copies)
    if total < tools:
        raise SystemExit(f"{servers} copies of the dumps hold {total} tools, fewer than {tools}")
    exact = [len(listed) * tools / total for _, listed in copies]
    keep = [int(share) for share in exact]
    by_remainder = sorted(range(len(copies)), key=lambda i: (keep[i] - exact[i], copies[i][0]))
    for i in by_remainder[: tools - sum(keep)]:
        keep[i] += 1
    return {name: {"tools": listed[:count]} for (name, listed), count in zip(copies, keep, strict=True)}


class RawPost:
    """One keep-alive HTTP/1.1 connection that POSTs a fixed request and reads the answer's bytes."""

    def __init__(self, url: str, headers: dict[str, str], body: bytes) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        lines = [f"POST {parts.path} HTTP/1.1", f"host: {parts.netloc}", f"content-length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items() if name != "content-length"]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self._url, self._headers, self._body = url, headers, body

    def with_headers(self, more: dict[str, str]) -> RawPost:
        """The same connection, sending the request with `more` headers."""
        self.request = RawPost(self._url, self._headers | more, self._body).request
        return self

    async def open(self) -> RawPost:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        return self

    async def post(self) -> bytes:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        return await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def measure(url: str, calls: int) -> list[Result]:
    client = await McpClient(url, KEY).open()
    answer = await client.request("tools/list")
    listed = len(answer["result"]["tools"])
    if listed != TOOLS:
        raise SystemExit(f"tools/list answered {listed} tools, not {TOOLS}")
    headers = {k: v for k, v in client.headers.items() if k.lower() not in ("host", "accept-encoding")}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    raw = await RawPost(url, headers | {"accept": "application/json"}, body).open()
    size = len(await raw.post())
    results = []
    for p, (phase, pause) in enumerate((("cached", 0.0), ("fresh", _FRESH_AFTER), ("fresh b2b", 0.0))):
        samples = []
        for n in range(calls):
            if pause:
                await asyncio.sleep(pause)
            if phase != "cached":  # another cache entry, the same 1,343 tools (`*`, and a pattern matching none)
                raw = raw.with_headers({"x-bastion-include-servers": f"*,no-such-server-{p}-{n}"})
            start = time.perf_counter()
            await raw.post()
            samples.append((time.perf_counter() - start) * 1000)
        results.append(summarize(f"tools/list {phase} ({size:,} bytes)", samples))
    await raw.close()
    await client.close()
    return results


def run_one(calls: int, build: str, env: dict[str, str] | None) -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        schemas = Path(tmp) / "schemas"
        schemas.mkdir()
        for name, listing in catalog().items():
            (schemas / f"{name}.json").write_text(json.dumps(listing))
        upstream, base = start_server(str(UPSTREAMS), "--schemas", str(schemas), "--port", "0")
        try:
            servers = {name: {"url": f"{base}/{name}/mcp"} for name in catalog()}
            workdir = Path(tmp) / "gateway"
            workdir.mkdir()
            gateway = start_gateway(servers, workdir, extra_env=env, tools=TOOLS)
            try:
                results = asyncio.run(measure(gateway.url, calls))
            finally:
                gateway.stop()
        finally:
            upstream.terminate()
            upstream.wait(10)
    print(f"\n=== build: {build}")
    show(results)
    return results


def show(results: list[Result]) -> None:
    for r in results:
        print(f"{r.name:40} p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  mean {r.mean_ms:7.2f} ms")


def median_result(same: tuple[Result, ...]) -> Result:
    """One phase's figures as the median over rounds."""
    return Result(
        same[0].name,
        *(statistics.median(getattr(r, f) for r in same) for f in ("p50_ms", "p99_ms", "mean_ms")),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="lists per phase")
    parser.add_argument("--baseline", action="append", default=[], help="a git ref run first (repeatable)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run the builds this many times, alternating; medians too"
    )
    args = parser.parse_args()
    print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        builds: list[tuple[str, dict[str, str] | None]] = [
            (ref, export_baseline(ref, Path(tmp) / str(n))) for n, ref in enumerate(args.baseline)
        ]
        builds.append(("this checkout", None))
        rounds: dict[str, list[list[Result]]] = {}
        for _ in range(args.rounds):
            for build, env in builds:
                rounds.setdefault(build, []).append(run_one(args.calls, build, env))
    if args.rounds > 1:
        for build, runs in rounds.items():
            print(f"\n=== build: {build}, median of {args.rounds} rounds")
            show([median_result(same) for same in zip(*runs, strict=True)])
    print("load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
