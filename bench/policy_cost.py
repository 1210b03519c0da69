"""What a Cedar policy costs the whole stack per `tools/call`: stacks side by side, batches alternated.

    .venv/bin/python bench/policy_cost.py                  # co-located, 12 rounds of 1,600 calls at c=16
    .venv/bin/python bench/policy_cost.py --separate --rounds 8 --calls 1200
    .venv/bin/python bench/policy_cost.py --modes none,argument --baseline REF   # that ref's services
    .venv/bin/python bench/policy_cost.py --modes none@REF,none@REF,none      # two builds, and a control

Four `bastion up` stacks in front of one HTTP echo upstream (`gateway_stack.POLICIES`): no policy; no
policy again, the control (what two identical stacks differ by on this machine: the noise floor); a
static policy (not on the call's arguments: decided once per key and tool); and an argument policy
(`context.arguments.text == "forbidden"`: decided on every call, by the executor). None forbids the
benchmark's calls. Each round runs one batch of `--calls` calls at c=`--clients` on every stack, in
an order rotated round by round, and charges each batch the CPU (user + system, /proc) every process
of its stack used from the batch's start until `--settle` seconds after its end, so the audit
writer's insert of the batch's events (every 2 s) falls inside the batch that caused it. The
stacks' idle timers in that window cost all of them alike, and cancel out of the differences.

The targets: an argument-conditioned policy adds <= 100 µs of whole-stack CPU per call, a
static one nothing measurable. This is a script, not a test: no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_stack import (
    KEY,
    POLICIES,
    Gateway,
    costs_between,
    export_baseline,
    snapshot,
    start_gateway,
    start_upstream,
)
from mcp_clients import McpClient

PARAMS = {"name": "echo__echo", "arguments": {"text": "hello"}}
NAMES = {"none": "no policy", "static": "static policy", "argument": "argument policy"}


async def _batch(clients: list[McpClient], gateway: Gateway, calls: int, settle: float) -> dict[str, float]:
    """CPU µs per call and role of `calls` calls shared by `clients`, and of the `settle` seconds after them."""

    async def worker(client: McpClient) -> None:
        for _ in range(calls // len(clients)):
            answer = await client.request("tools/call", PARAMS)
            if "result" not in answer:
                raise SystemExit(f"call failed under load: {answer}")

    before = snapshot(gateway)
    await asyncio.gather(*(worker(client) for client in clients))
    await asyncio.sleep(settle)
    return costs_between(before, snapshot(gateway), calls // len(clients) * len(clients)).cpu_us


async def measure(stacks: dict[str, Gateway], args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Each stack's CPU µs per call and role, one sample per round; the sessions are opened once, before the rounds."""
    names = list(stacks)
    sessions = {name: [await McpClient(stacks[name].url, KEY).open() for _ in range(args.clients)] for name in names}
    for name in names:  # warm every path: grants, pinned definitions, the policy's compile
        await _batch(sessions[name], stacks[name], 25 * args.clients, 0)
    await asyncio.sleep(args.settle)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    try:
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                samples[name].append(await _batch(sessions[name], stacks[name], args.calls, args.settle))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        for clients in sessions.values():
            for client in clients:
                await client.close()
    return samples


def report(samples: dict[str, list[dict[str, float]]], calls: int, layout: str) -> None:
    per_call = {name: [sum(s.values()) for s in rounds] for name, rounds in samples.items()}
    medians = {name: statistics.median(values) for name, values in per_call.items()}
    first = next(iter(medians.values()))
    print(f"\n{layout}, {len(next(iter(per_call.values())))} rounds of {calls} calls; whole-stack CPU µs per call")
    print(f"{'stack':36}{'median':>10}{'vs first':>10}   rounds")
    for name, values in per_call.items():
        shown = " ".join(f"{v:,.0f}" for v in values)
        print(f"{name:36}{medians[name]:10,.0f}{medians[name] - first:+10,.0f}   {shown}")
    roles = sorted({role for rounds in samples.values() for s in rounds for role in s})
    print(f"\n{'median µs per call by process':36}" + "".join(f"{role[:16]:>18}" for role in roles))
    for name, costs in samples.items():
        cells = [statistics.median(s.get(role, 0) for s in costs) for role in roles]
        print(f"{name:36}" + "".join(f"{cell:18,.0f}" for cell in cells))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=1600, help="calls per batch")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--settle", type=float, default=2.5, help="seconds after a batch still charged to it")
    parser.add_argument("--separate", action="store_true", help="every service its own process")
    parser.add_argument("--baseline", help="a git ref: every stack runs that ref's services instead of this checkout's")
    parser.add_argument(
        "--modes",
        default="none,none,static,argument",
        help="a stack per `POLICIES` key, in this order (a repeat: a control); `KEY@REF`: that ref's services",
    )
    args = parser.parse_args()
    upstream, url = start_upstream("http")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        stacks: dict[str, Gateway] = {}
        builds: dict[str, dict[str, str]] = {}
        try:
            for index, mode in enumerate(args.modes.split(",")):
                policy, _, ref = mode.partition("@")
                ref = ref or args.baseline or ""
                if ref not in builds:
                    builds[ref] = export_baseline(ref, Path(tmp) / f"build-{len(builds)}") if ref else {}
                name = NAMES[policy] + (f" @{ref}" if ref else "")
                name += " (control)" if name in stacks else ""
                workdir = Path(tmp) / str(index)
                workdir.mkdir()
                stacks[name] = start_gateway(
                    {"echo": {"url": url}},
                    workdir,
                    builds[ref],
                    stack={"colocate": not args.separate},
                    policies=POLICIES[policy],
                )
            samples = await measure(stacks, args)
        finally:
            for gateway in stacks.values():
                gateway.stop()
            upstream.terminate()
            upstream.wait(10)
    report(samples, args.calls, f"{args.baseline or 'this checkout'}, {'separate' if args.separate else 'co-located'}")
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
