"""CPU per tools/call of the gateway's services with content logging and tracing off and on.

    .venv/bin/python bench/bench_observability_cost.py            # 20 batches of 100 calls per mode
    .venv/bin/python bench/bench_observability_cost.py --batches 10 --batch 50

Two `bastion up` stacks (every service its own process) run side by side in front of the same
upstream (examples/servers/echo_server.py over HTTP): one with tracing off, one with tracing on
(every span exported over OTLP/HTTP to a local sink). Each has two keys, one with
`content_logging: false` (arguments and results kept as sizes and sha256) and one with content
logging on. Batches of sequential tools/call requests rotate over the four (stack, key) modes, and
each batch reads the CPU time (user + system, /proc) every service process of its stack used, so
noise from a shared machine hits all modes alike. Audit is always on (every request ends in an audit
row) and so are the Prometheus counters (not switchable): their cost is in every mode. A script,
not a test: docs/observability.md reports a run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_stack import Gateway, launch, start_upstream
from mcp_clients import McpClient, sequential

SERVICES = ("services.ingress", "services.policy", "services.executor", "services.audit")
SHORT = tuple(name.removeprefix("services.") for name in SERVICES)
CONTENT_KEY, DIGEST_KEY = "bk_bench_content_key_0123456789", "bk_bench_digest_key_01234567890"
TICK = os.sysconf("SC_CLK_TCK")


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that accepts every export and keeps nothing; keep-alive like a real
    collector (HTTP/1.0 would make every export open a new connection)."""

    protocol_version = "HTTP/1.1"
    spans_bytes = 0

    def do_POST(self) -> None:  # the stdlib's name
        length = int(self.headers.get("content-length", 0))
        _Sink.spans_bytes += len(self.rfile.read(length))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _children(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == pid]
        found += kids
        frontier += kids
    return found


def service_pids(root: int) -> dict[str, int]:
    pids = {}
    for pid in _children(root):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        for name in SERVICES:
            if f"-m {name}" in cmdline:
                pids[name.removeprefix("services.")] = pid
    return pids


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def start_stack(upstream_url: str, workdir: Path, env: dict[str, str]) -> Gateway:
    """`bastion up` with the `echo` upstream and the two keys; `env` on top of this process's."""
    keys = [
        {"name": "content", "key": CONTENT_KEY, "tools": ["echo/*"]},
        {"name": "digest", "key": DIGEST_KEY, "tools": ["echo/*"], "content_logging": False},
    ]
    return launch({"mcpServers": {"echo": {"url": upstream_url}}, "keys": keys}, workdir, env)


async def measure(
    upstream_url: str, endpoint: str, batches: int, batch: int, warmup: int, ratio: float, control: bool = False
) -> tuple[dict[str, list[float]], dict[str, dict[str, list[float]]]]:
    """CPU ms per call of each mode, one sample per batch: the stack's four services together, and
    each service on its own (to see where a difference comes from)."""
    params = {"name": "echo__echo", "arguments": {"text": "hello " * 20}}
    with tempfile.TemporaryDirectory() as off_dir, tempfile.TemporaryDirectory() as on_dir:
        stacks = {
            "tracing off": start_stack(upstream_url, Path(off_dir), {}),
            # --control: the second stack traces nothing either, so its difference from the first is
            # what two identical stacks differ by on this machine (the noise floor of the comparison)
            "tracing on": start_stack(
                upstream_url,
                Path(on_dir),
                {} if control else {"BASTION_OTLP_ENDPOINT": endpoint, "BASTION_TRACE_SAMPLE_RATIO": str(ratio)},
            ),
        }
        try:
            modes = {}
            for name, stack in stacks.items():
                pids = service_pids(stack.proc.pid)
                if len(pids) != len(SERVICES):
                    raise SystemExit(f"{name}: found {len(pids)} service processes, not {len(SERVICES)}")
                for content, key in (("content off", DIGEST_KEY), ("content on", CONTENT_KEY)):
                    client = await McpClient(stack.url, key).open()
                    await sequential(client, "tools/call", params, warmup, "result")
                    modes[f"{name}, {content}"] = (client, pids)
            samples: dict[str, list[float]] = {mode: [] for mode in modes}
            per_service: dict[str, dict[str, list[float]]] = {mode: {svc: [] for svc in SHORT} for mode in modes}
            for _ in range(batches):
                for mode, (client, pids) in modes.items():
                    await asyncio.sleep(0.3)  # the previous batch's audit insert and span export
                    before = {svc: cpu_seconds(pid) for svc, pid in pids.items()}
                    await sequential(client, "tools/call", params, batch, "result")
                    await asyncio.sleep(0.3)
                    used = {svc: (cpu_seconds(pid) - before[svc]) * 1000 / batch for svc, pid in pids.items()}
                    samples[mode].append(sum(used.values()))
                    for svc, ms in used.items():
                        per_service[mode][svc].append(ms)
            for client, _ in modes.values():
                await client.close()
        finally:
            for stack in stacks.values():
                stack.stop()
    return samples, per_service


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100, help="sequential calls per batch")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--sample-ratio", type=float, default=1.0, help="BASTION_TRACE_SAMPLE_RATIO when tracing is on")
    parser.add_argument("--control", action="store_true", help="A/A run: the second stack has tracing off too")
    args = parser.parse_args()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"
    upstream, upstream_url = start_upstream()
    try:
        samples, per_service = await measure(
            upstream_url, endpoint, args.batches, args.batch, args.warmup, args.sample_ratio, args.control
        )
    finally:
        upstream.terminate()
        upstream.wait(10)
        sink.shutdown()
    print(
        "\ncontrol run: both stacks trace nothing"
        if args.control
        else f"\ntracing on: sample ratio {args.sample_ratio}"
    )
    print(f"{'mode':32}{'CPU ms/call (median)':>22}{'mean':>8}{'vs first':>10}")
    first = None
    for mode, values in samples.items():
        median = statistics.median(values)
        first = first or median
        print(f"{mode:32}{median:22.3f}{statistics.fmean(values):8.3f}{100 * (median - first) / first:+9.1f}%")
    print(f"(OTLP sink received {_Sink.spans_bytes:,} bytes of spans)")
    print(f"\n{'CPU ms/call (median) by service':32}" + "".join(f"{svc:>10}" for svc in SHORT))
    for mode, services in per_service.items():
        print(f"{mode:32}" + "".join(f"{statistics.median(values):10.3f}" for values in services.values()))


if __name__ == "__main__":
    asyncio.run(main())
