"""tools/call latency and throughput: directly against an upstream, and through Bastion, in one run.

    ./run bench                      # both upstreams and eras; 2000 sequential calls, 16 clients x 250 calls
    ./run bench --upstream http --era modern --calls 600
    ./run bench --calls 500 --json out.json
    ./run bench --baseline main      # before/after in one run: main's services, then this checkout's
    ./run bench --baseline A --baseline B --payload 100000   # three builds, 100 kB echoed per call
    ./run bench --baseline 9b0d56c@390e463                   # old main's services under a later `bastion up`
    ./run bench --variant BASTION_LEAN_CALLS=false           # a setting off and on, in one run
    ./run bench --colocated                                  # also ingress+executor as one process (baselines too)
    ./run bench --colocated --no-separate --variant BASTION_CONFINE=false   # what the walls cost, co-located
    ./run bench --colocated --variant BENCH_PYTHON=/other/venv/bin/python   # this checkout on another interpreter
    ./run bench --client httpx                               # the load generator of runs before 2026-11-24
    ./run bench --baseline main --rounds 3                   # alternate the builds 3 times; medians too
    ./run bench --policy argument                            # a Cedar policy reading the arguments on echo


Same upstream (examples/servers/echo_server.py over streamable HTTP, stdio, or HTTP+SSE with
`--upstream sse`), same client, same run. The gateway is started with `bastion up` (every service its own process, as in
production) on an embedded NATS. During the concurrent phase it reads the CPU time of every
Bastion process from /proc (µs per call) and nats-server's /varz message counters (messages per
call). To show where the time goes it also measures three shorter gateway paths:
  ping          ingress alone (HTTP, auth, JSON-RPC; no NATS)
  unknown tool  ingress alone, through the tools/call handler and an audit event
  denied call   ingress -> policy -> ingress (one NATS round trip, no executor, no upstream)
The client is a minimal keep-alive HTTP client speaking MCP JSON-RPC (a handshake-era session or
2026-07-28 envelopes), so client-side SDK costs do not blur the comparison; it sends on llhttp
(~90 µs of CPU per call) because on two cores the load generator shares the CPU with what it measures
(`--client httpx`, ~950 µs per call, reproduces the runs before 2026-11-24). For a stdio upstream, "direct" is a minimal
client writing JSON-RPC lines to the server's stdin (concurrent calls pipelined on the one pipe);
for an SSE upstream, a minimal client POSTing to the endpoint its event stream names
(`mcp_clients.py`).

With `--baseline REF` (a git commit or branch of this repository) every upstream/era pair runs
twice back to back, the gateway taken from REF (exported to a temporary folder and put first on
PYTHONPATH) and then from this checkout, and a before/after table closes the run.
`--baseline REF@CLI_REF` runs REF's services under CLI_REF's `bastion up`: for a REF whose own
`bastion up` serves no NATS monitoring (e.g. `--baseline 9b0d56c@390e463`).
The load average is printed with it: on a shared machine, compare only numbers from one run.
This is a script, not a test: numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_stack import (
    DENIED_KEY,
    KEY,
    POLICIES,
    ROLES,
    Costs,
    Gateway,
    costs_between,
    export_baseline,
    process_ticks,
    snapshot,
    start_gateway,
    start_upstream,
    ticks_to_us,
)
from mcp_clients import (
    ECHO,
    Client,
    McpClient,
    Result,
    SseClient,
    StdioClient,
    concurrent,
    print_results,
    sequential,
    summarize,
)


def direct_client(kind: str, url: str | None) -> Client:
    """An unopened client of the upstream itself."""
    if kind == "stdio":
        return StdioClient()
    assert url is not None
    return SseClient(url) if kind == "sse" else McpClient(url)


async def measure(
    args: argparse.Namespace, text: str, kind: str, url: str | None, gateway: Gateway, upstream_pid: int | None
) -> tuple[list[Result], Costs]:
    call = {"name": "echo", "arguments": {"text": text}}
    via = {"name": "echo__echo", "arguments": {"text": text}}
    results = []
    direct = await direct_client(kind, url).open()  # type: ignore[attr-defined]
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
    # a stdio server has one pipe: concurrent direct callers share it, pipelined
    shared = await StdioClient().open() if kind == "stdio" else None

    async def open_direct() -> Client:
        return shared or await direct_client(kind, url).open()  # type: ignore[attr-defined]

    async def open_through() -> Client:
        return await McpClient(gateway.url, KEY).open()

    d_rate = await concurrent(open_direct, call, args.concurrency, args.calls_each)
    before = snapshot(gateway)
    upstream_before = process_ticks(upstream_pid) if upstream_pid else 0
    g_rate = await concurrent(open_through, via, args.concurrency, args.calls_each)
    calls = args.concurrency * args.calls_each
    costs = costs_between(before, snapshot(gateway), calls)
    if upstream_pid:
        costs.upstream_us = ticks_to_us(process_ticks(upstream_pid) - upstream_before, calls)
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


def interpreter() -> str:
    """This script's CPython, and whether it runs through a shared libpython.

    The interpreter's build moves the services' CPU per call: a source build without PGO and LTO, its
    code in a shared library (pyenv's default), costs ~10 % more in the co-located process than a
    distribution's or the official image's (docs/benchmarks.md), so the figures say which they ran on."""
    shared = any("libpython" in line for line in Path("/proc/self/maps").read_text().splitlines())
    return f"CPython {sys.version.split()[0]} at {sys.executable}, libpython {'shared' if shared else 'linked in'}"


def report(results: list[Result], costs: Costs, upstream: str, era: str, concurrency: int) -> None:
    print(f"\nupstream: {upstream}, client protocol: {era}")
    print_results(results, "path", 40, rate=f"calls/s @c={concurrency}")
    direct, gateway = results[0], results[1]
    print(
        f"\noverhead p50 {gateway.p50_ms - direct.p50_ms:+.3f} ms, p99 {gateway.p99_ms - direct.p99_ms:+.3f} ms; "
        f"throughput {100 * (gateway.calls_per_s or 0) / (direct.calls_per_s or 1):.0f}% of direct"
    )
    parts = ", ".join(f"{role} {us:,.0f}" for role, us in sorted(costs.cpu_us.items(), key=lambda kv: -kv[1]))
    print(f"gateway CPU per call at c={concurrency}: {sum(costs.cpu_us.values()):,.0f} µs ({parts})")
    if costs.upstream_us:
        print(
            f"the upstream's own CPU per call: {costs.upstream_us:,.0f} µs; "
            f"the gateway spends {sum(costs.cpu_us.values()) / costs.upstream_us:.2f}x that"
        )
    print(f"NATS messages per call: {costs.nats_in:.2f} published, {costs.nats_out:.2f} delivered")


def run_one(
    args: argparse.Namespace,
    text: str,
    kind: str,
    era: str,
    build: str = "this checkout",
    env: dict | None = None,
    stack: dict | None = None,
) -> dict:
    McpClient.era = era
    upstream = None
    if kind == "stdio":
        url = None
        server: dict = {"command": sys.executable, "args": [str(ECHO)]}
    else:
        upstream, url = start_upstream(kind)
        server = {"url": url, **({"type": "sse"} if kind == "sse" else {})}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            policies = POLICIES[args.policy]
            gateway = start_gateway({"echo": server}, Path(tmp), extra_env=env, stack=stack, policies=policies)
            try:
                pid = upstream.pid if upstream is not None else None
                results, costs = asyncio.run(measure(args, text, kind, url, gateway, pid))
            finally:
                gateway.stop()
    finally:
        if upstream is not None:
            upstream.terminate()
            upstream.wait(10)
    print(f"\n=== build: {build}")
    report(results, costs, kind, era, args.concurrency)
    return {
        "build": build,
        "upstream": kind,
        "era": era,
        "results": [r.__dict__ for r in results],
        "costs": costs.__dict__,
    }


def columns(roles: list[str]) -> list[tuple[str, str]]:
    """The table's figure columns: (heading, format of its value)."""
    return [
        ("+p50 ms", "{:+.2f}"),
        ("+p99 ms", "{:+.2f}"),
        ("thru %", "{:.0f}"),
        ("CPU µs", "{:,.0f}"),
        *((role, "{:,.0f}") for role in roles),
        ("msgs in", "{:.2f}"),
        ("msgs out", "{:.2f}"),
        ("x upstream", "{:.2f}x"),
    ]


def figures(run: dict, roles: list[str]) -> list[float]:
    """A run's figures in `columns` order; the multiple of the upstream's CPU is NaN for a stdio
    upstream (a child of the executor, not measured apart)."""
    direct, through = run["results"][0], run["results"][1]
    cpu = run["costs"]["cpu_us"]
    upstream_us = run["costs"].get("upstream_us")
    return [
        through["p50_ms"] - direct["p50_ms"],
        through["p99_ms"] - direct["p99_ms"],
        100 * (through["calls_per_s"] or 0) / (direct["calls_per_s"] or 1),
        sum(cpu.values()),
        *(cpu.get(role, 0) for role in roles),
        run["costs"]["nats_in"],
        run["costs"]["nats_out"],
        sum(cpu.values()) / upstream_us if upstream_us else math.nan,
    ]


def compare(runs: list[dict]) -> None:
    """One table of every run: added latency, throughput, CPU per call by process, messages per call;
    with several rounds, then the median of each build's rounds."""
    roles = sorted(
        {role for run in runs for role in run["costs"]["cpu_us"]}, key=lambda r: ROLES.index(r) if r in ROLES else 99
    )
    formats = [fmt for _, fmt in columns(roles)]
    head = " | ".join(["upstream/era", "build", *(heading for heading, _ in columns(roles))])

    def line(where: str, build: str, values: list[float]) -> str:
        shown = ("-" if math.isnan(v) else fmt.format(v) for fmt, v in zip(formats, values, strict=True))
        return " | ".join([where, build, *shown])

    print("\n" + head)
    groups: dict[tuple[str, str], list[list[float]]] = {}
    for run in runs:
        where, values = f"{run['upstream']}/{run['era']}", figures(run, roles)
        groups.setdefault((where, run["build"]), []).append(values)
        print(line(where, run["build"], values))
    if any(len(rounds) > 1 for rounds in groups.values()):
        print("\nmedian of the rounds\n" + head)
        for (where, build), rounds in groups.items():
            print(line(where, build, [statistics.median(v) for v in zip(*rounds, strict=True)]))
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
    parser.add_argument(
        "--upstream", choices=["http", "stdio", "sse", "both"], default="both", help="both: http and stdio"
    )
    parser.add_argument(
        "--client",
        choices=["lean", "httpx"],
        default="lean",
        help="the HTTP load generator: an llhttp connection (~90 µs of CPU per call) or httpx (~950 µs, "
        "the client of runs before 2026-11-24); both paths always get the same one",
    )
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
        help="also run this checkout with this setting in the services' environment (repeatable; several"
        " settings at once separated by spaces: 'BASTION_PINNING=false BASTION_GUARDRAILS={\"defaults\":false}')",
    )
    parser.add_argument(
        "--colocated",
        action="store_true",
        help="also run this checkout (and each baseline) with ingress and the executor in one process (stack.colocate)",
    )
    parser.add_argument(
        "--no-separate",
        action="store_true",
        help="with --colocated: run the co-located builds only (every build, baselines and variants too)",
    )
    parser.add_argument(
        "--policy",
        choices=sorted(POLICIES),
        default="none",
        help="a Cedar policy on the echo tool: none, static (decided once per key and tool) or argument"
        " (reads the call's arguments: decided per call)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every build this many times, alternating, and report each build's median too "
        "(on a shared machine, drift between runs is as large as the differences measured)",
    )
    args = parser.parse_args()
    if args.no_separate and not args.colocated:
        parser.error("--no-separate leaves nothing to run without --colocated")
    McpClient.lean = args.client == "lean"
    text = "x" * args.payload if args.payload else "hello"
    eras = ["modern", "legacy"] if args.era == "both" else [args.era]
    kinds = ["http", "stdio"] if args.upstream == "both" else [args.upstream]
    print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"HTTP client: {args.client}")
    print(f"interpreter (every build a variant's BENCH_PYTHON does not name another for): {interpreter()}")
    with tempfile.TemporaryDirectory() as tmp:
        baselines = [(ref, export_baseline(ref, Path(tmp) / str(n))) for n, ref in enumerate(args.baseline)]
        builds: list[tuple[str, dict | None, dict | None]] = [(ref, env, None) for ref, env in baselines]
        if args.colocated:  # a co-located figure compares with the baseline's own co-located stack
            builds += [(f"{ref}, co-located", env, {"colocate": True}) for ref, env in baselines]
        variants = [(v, dict(part.split("=", 1) for part in v.split())) for v in args.variant]
        builds += [(f"this checkout, {v}", env, None) for v, env in variants]
        if args.colocated:  # and each variant's co-located stack: what a setting costs in that layout
            builds += [(f"this checkout, co-located, {v}", env, {"colocate": True}) for v, env in variants]
            builds.append(("this checkout, co-located", None, {"colocate": True}))
        builds.append(("this checkout", None, None))
        if args.no_separate:  # the co-located builds alone
            builds = [build for build in builds if build[2] is not None]
        runs = [
            run_one(args, text, kind, era, build, env, stack)
            for kind in kinds
            for era in eras
            for _ in range(args.rounds)
            for build, env, stack in builds
        ]
    compare(runs)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
