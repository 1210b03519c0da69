"""tools/call latency and throughput: directly against an upstream, and through Bastion, in one run.

    ./run bench                      # both upstreams and eras; 2000 sequential calls, 16 clients x 250 calls
    ./run bench --upstream http --era modern --calls 600
    ./run bench --calls 500 --json out.json
    ./run bench --baseline main      # before/after in one run: main's services, then this checkout's
    ./run bench --baseline A --baseline B --payload 100000   # three builds, 100 kB echoed per call
    ./run bench --variant BASTION_LEAN_CALLS=false           # a setting off and on, in one run


Same upstream (examples/servers/echo_server.py over streamable HTTP, or over stdio), same client,
same run. The gateway is started with `bastion up` (every service its own process, as in
production) on an embedded NATS. During the concurrent phase it reads the CPU time of every
Bastion process from /proc (µs per call) and nats-server's /varz message counters (messages per
call). To show where the time goes it also measures three shorter gateway paths:
  ping          ingress alone (HTTP, auth, JSON-RPC; no NATS)
  unknown tool  ingress alone, through the tools/call handler and an audit event
  denied call   ingress -> policy -> ingress (one NATS round trip, no executor, no upstream)
The client is a minimal keep-alive HTTP client speaking MCP JSON-RPC (handshake-era session), so
client-side SDK costs do not blur the comparison. For a stdio upstream, "direct" is a minimal
client writing JSON-RPC lines to the server's stdin (concurrent calls pipelined on the one pipe).

With `--baseline REF` (a git commit or branch of this repository) every upstream/era pair runs
twice back to back, the gateway's libraries and services taken from REF (exported to a temporary
folder and put first on PYTHONPATH; `bastion up` itself stays this checkout's, so the baseline gets
the same NATS monitoring) and then from this checkout, and a before/after table closes the run.
The load average is printed with it: on a shared machine, compare only numbers from one run.
This is a script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
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


@dataclass
class Costs:
    """Resources the gateway spent per call during the concurrent phase."""

    cpu_us: dict[str, float]
    """Bastion process (ingress, policy, executor, audit, nats-server, ...) -> CPU µs per call."""
    nats_in: float
    """Messages published into nats-server per call (`/varz` in_msgs)."""
    nats_out: float
    """Messages nats-server delivered per call (`/varz` out_msgs)."""


TEXT = "hello"
"""What every call echoes (`--payload` makes it larger: arguments and result alike)."""
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


class StdioClient:
    """The direct path to a stdio upstream: JSON-RPC lines on its stdin/stdout, requests matched
    to answers by id so concurrent callers can share the one pipe."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future[dict]] = {}
        self.reader: asyncio.Task[None] | None = None

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
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
        await self.request("initialize", init)
        self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self

    def _write(self, message: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            message = json.loads(line)
            future = self.waiting.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(message)

    async def request(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = future
        self._write({"jsonrpc": "2.0", "id": self.next_id, "method": method, **({"params": params} if params else {})})
        return await asyncio.wait_for(future, 30)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


async def sequential(
    client: McpClient | StdioClient, method: str, params: dict | None, calls: int, expect: str
) -> list[float]:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        answer = await client.request(method, params)
        samples.append((time.perf_counter() - start) * 1000)
        if expect not in answer:
            raise SystemExit(f"unexpected answer for {method}: {answer}")
    return samples


async def concurrent(url: str | None, key: str | None, tool: str, clients: int, calls_each: int) -> float:
    """Calls per second of `clients` concurrent callers (url None: one shared stdio upstream)."""
    shared = await StdioClient().open() if url is None else None
    sessions = [shared] * clients if shared else [await McpClient(url or "", key).open() for _ in range(clients)]
    params = {"name": tool, "arguments": {"text": TEXT}}

    async def worker(client: McpClient | StdioClient) -> None:
        for _ in range(calls_each):
            answer = await client.request("tools/call", params)
            if "result" not in answer:
                raise SystemExit(f"call failed under load: {answer}")

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in sessions))
    elapsed = time.perf_counter() - start
    for c in set(sessions):
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
    upstream: dict, workdir: Path, extra_servers: dict | None = None, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`bastion up` with the `echo` upstream (`{"url": ...}` or `{"command": ...}`; plus
    `extra_servers`, reachable by the same key), its NATS monitoring port on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = workdir / "bench.yaml"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {"echo": upstream, **(extra_servers or {})},
                "keys": [
                    {"name": "bench", "key": KEY, "tools": ["echo/*", *(f"{name}/*" for name in extra_servers or {})]},
                    {"name": "denied", "key": DENIED_KEY, "tools": []},
                ],
                "stack": {"data_dir": str(workdir / "data")},
            }
        )
    )
    env = {**os.environ, "BASTION_LOG_LEVEL": "WARNING", "BASTION_NATS_MONITOR": "1", **(extra_env or {})}
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


_CLK_TCK = os.sysconf("SC_CLK_TCK")
_ROLES = ("ingress", "policy", "executor", "audit", "codemode", "nats-server", "valkey", "bastion_cli")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _role(pid: int) -> str | None:
    try:
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    if "echo_server" in cmdline:
        return None  # the upstream (stdio: the executor's child) is not the gateway's cost
    return next((role for role in _ROLES if role in cmdline), "other")


def cpu_ticks(root: int) -> dict[str, int]:
    """CPU clock ticks (user + system) used so far by each Bastion process under `root`, by role."""
    ticks: dict[str, int] = {}
    for pid in _descendants(root):
        role = _role(pid)
        if role is None:
            continue
        try:
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[role] = ticks.get(role, 0) + int(fields[11]) + int(fields[12])
    return ticks


def nats_counts(workdir: Path) -> tuple[int, int]:
    """nats-server's (in_msgs, out_msgs) from /varz (its monitoring port is in the ports file)."""
    for ports in (workdir / "data" / "nats" / "ports").glob("*.ports"):
        monitoring = json.loads(ports.read_text()).get("monitoring") or []
        if monitoring:
            varz = httpx.get(f"{monitoring[0]}/varz", timeout=5).json()
            return varz["in_msgs"], varz["out_msgs"]
    return 0, 0


async def measure(args: argparse.Namespace, upstream_url: str | None, gateway: Gateway) -> tuple[list[Result], Costs]:
    call = {"name": "echo", "arguments": {"text": TEXT}}
    via = {"name": "echo__echo", "arguments": {"text": TEXT}}
    results = []
    direct = await (StdioClient().open() if upstream_url is None else McpClient(upstream_url).open())
    through = await McpClient(gateway.url, KEY).open()
    denied = await McpClient(gateway.url, DENIED_KEY).open()
    for client, params in ((direct, call), (through, via)):  # warm both paths the same way
        await sequential(client, "tools/call", params, args.warmup, "result")
    # interleave rounds so drift on a noisy machine hits both paths alike
    d_samples: list[float] = []
    g_samples: list[float] = []
    for _ in range(10):
        d_samples += await sequential(direct, "tools/call", call, args.calls // 10, "result")
        g_samples += await sequential(through, "tools/call", via, args.calls // 10, "result")
    d_rate = await concurrent(upstream_url, None, "echo", args.concurrency, args.calls_each)
    ticks, msgs = cpu_ticks(gateway.proc.pid), nats_counts(gateway.workdir)
    g_rate = await concurrent(gateway.url, KEY, "echo__echo", args.concurrency, args.calls_each)
    after_ticks, after_msgs = cpu_ticks(gateway.proc.pid), nats_counts(gateway.workdir)
    n = args.concurrency * args.calls_each
    costs = Costs(
        cpu_us={
            role: (after_ticks[role] - ticks.get(role, 0)) * 1e6 / _CLK_TCK / n
            for role in sorted(after_ticks)
            if after_ticks[role] - ticks.get(role, 0)
        },
        nats_in=(after_msgs[0] - msgs[0]) / n,
        nats_out=(after_msgs[1] - msgs[1]) / n,
    )
    results.append(summarize("direct: tools/call", d_samples, d_rate))
    results.append(summarize("bastion: tools/call", g_samples, g_rate))
    results.append(
        summarize("bastion: ping (ingress only)", await sequential(through, "ping", None, args.calls, "result"))
    )
    unknown = {"name": "nope__nope", "arguments": {}}
    results.append(
        summarize(
            "bastion: unknown tool (ingress only)",
            await sequential(through, "tools/call", unknown, args.calls, "error"),
        )
    )
    results.append(
        summarize(
            "bastion: denied call (ingress+policy)", await sequential(denied, "tools/call", via, args.calls, "error")
        )
    )
    for client in (direct, through, denied):
        await client.close()
    return results, costs


@dataclass
class Gateway:
    proc: subprocess.Popen[str]
    url: str
    workdir: Path


def report(results: list[Result], costs: Costs, upstream: str, era: str, concurrency: int) -> None:
    print(f"\nupstream: {upstream}, client protocol: {era}")
    print(f"{'path':40} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'calls/s @c=' + str(concurrency):>16}")
    for r in results:
        rate = f"{r.calls_per_s:,.0f}" if r.calls_per_s else ""
        print(f"{r.name:40} {r.p50_ms:8.3f} {r.p99_ms:8.3f} {r.mean_ms:8.3f} {rate:>16}")
    direct, gateway = results[0], results[1]
    print(
        f"\noverhead p50 {gateway.p50_ms - direct.p50_ms:+.3f} ms, p99 {gateway.p99_ms - direct.p99_ms:+.3f} ms; "
        f"throughput {100 * (gateway.calls_per_s or 0) / (direct.calls_per_s or 1):.0f}% of direct"
    )
    parts = ", ".join(f"{role} {us:,.0f}" for role, us in sorted(costs.cpu_us.items(), key=lambda kv: -kv[1]))
    print(f"gateway CPU per call at c={concurrency}: {sum(costs.cpu_us.values()):,.0f} µs ({parts})")
    print(f"NATS messages per call: {costs.nats_in:.2f} published, {costs.nats_out:.2f} delivered")


def export_baseline(ref: str, into: Path) -> dict[str, str]:
    """`ref`'s tree exported under `into`, and the environment that makes the gateway's services
    import their code from it: PYTHONPATH with one link per package (pyproject's package-dir), except
    `bastion_cli`, which stays this checkout's."""
    tree = into / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    links = into / "path"
    links.mkdir()
    packages = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in packages.items():
        if package != "bastion_cli":
            (links / package).symlink_to(tree / folder)
    shutil.copytree(ROOT / "cli", links / "bastion_cli")
    return {"PYTHONPATH": str(links)}


def run_one(
    args: argparse.Namespace, upstream_kind: str, era: str, build: str = "this checkout", env: dict | None = None
) -> dict:
    McpClient.era = era
    upstream = None
    if upstream_kind == "http":
        upstream, upstream_url = start_upstream()
        server: dict = {"url": upstream_url}
    else:
        upstream_url = None
        server = {"command": sys.executable, "args": [str(ECHO)]}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            proc, url = start_gateway(server, Path(tmp), extra_env=env)
            try:
                results, costs = asyncio.run(measure(args, upstream_url, Gateway(proc, url, Path(tmp))))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    finally:
        if upstream is not None:
            upstream.terminate()
            upstream.wait(10)
    print(f"\n=== build: {build}")
    report(results, costs, upstream_kind, era, args.concurrency)
    return {
        "build": build,
        "upstream": upstream_kind,
        "era": era,
        "results": [r.__dict__ for r in results],
        "costs": costs.__dict__,
    }


def compare(runs: list[dict]) -> None:
    """One table of every run: added latency, throughput, CPU per call by process, messages per call."""
    roles = sorted(
        {role for run in runs for role in run["costs"]["cpu_us"]}, key=lambda r: _ROLES.index(r) if r in _ROLES else 99
    )
    head = ["upstream/era", "build", "+p50 ms", "+p99 ms", "thru %", "CPU µs", *roles, "msgs in", "msgs out"]
    print("\n" + " | ".join(head))
    for run in runs:
        direct, through = run["results"][0], run["results"][1]
        cpu = run["costs"]["cpu_us"]
        row = [
            f"{run['upstream']}/{run['era']}",
            run["build"],
            f"{through['p50_ms'] - direct['p50_ms']:+.2f}",
            f"{through['p99_ms'] - direct['p99_ms']:+.2f}",
            f"{100 * (through['calls_per_s'] or 0) / (direct['calls_per_s'] or 1):.0f}",
            f"{sum(cpu.values()):,.0f}",
            *(f"{cpu.get(role, 0):,.0f}" for role in roles),
            f"{run['costs']['nats_in']:.2f}",
            f"{run['costs']['nats_out']:.2f}",
        ]
        print(" | ".join(row))
    print("load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls per path")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--calls-each", type=int, default=250, help="calls per client in the concurrent phase")
    parser.add_argument(
        "--era",
        choices=["legacy", "modern", "both"],
        default="both",
        help="protocol the client speaks to both endpoints: 2025-06-18 sessions or 2026-07-28",
    )
    parser.add_argument("--upstream", choices=["http", "stdio", "both"], default="both")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--payload", type=int, default=0, help="echo this many bytes of text per call")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        help="a git ref: run its services too, before this checkout's, in the same run (repeatable)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="also run this checkout with this setting in the services' environment (repeatable)",
    )
    args = parser.parse_args()
    global TEXT
    TEXT = "x" * args.payload if args.payload else TEXT
    eras = ["modern", "legacy"] if args.era == "both" else [args.era]
    kinds = ["http", "stdio"] if args.upstream == "both" else [args.upstream]
    print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        builds: list[tuple[str, dict | None]] = [
            (ref, export_baseline(ref, Path(tmp) / str(n))) for n, ref in enumerate(args.baseline)
        ]
        builds += [(f"this checkout, {v}", dict([v.split("=", 1)])) for v in args.variant]
        builds.append(("this checkout", None))
        runs = [run_one(args, kind, era, build, env) for kind in kinds for era in eras for build, env in builds]
    compare(runs)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
