"""Where a `tools/call`'s CPU goes, hop by hop: a deterministic profile (cProfile) of every Bastion
process over N calls on the HTTP echo upstream, with counts that do not depend on the machine's speed.

    PYTHONPATH=$PWD .venv/bin/python bench/hop_profile.py [--calls 2000] [--colocated] [--policy argument]
    PYTHONPATH=$PWD .venv/bin/python bench/hop_profile.py --baseline main   # that ref's services instead

The gateway runs under `bastion up` as in `./run bench` (`gateway_stack.start_gateway`), each service
with `bench/hop_profile_site` on its path, which profiles between two SIGUSR1s; confinement is off
(its files are written outside the services' boxes; no wall acts per call). After a warm-up, 16
clients make `--calls` calls between the two signals. Per process: Python function calls per
`tools/call` (the profiler's count, deterministic up to batching), the JSON and model encodes and
decodes per call, and the functions with the most own time (inflated by the profiler: read them as
shares). `--policy argument` adds a policy that reads the call's arguments (decided per call),
`--policy static` one that does not. `--bytecodes N` then counts the bytecode instructions each
process's main thread executes per area over N more calls, and the functions that execute the most
(SIGUSR2; tracing slows the traced code ~6x, so keep N small: a few hundred); `--ledger` groups them
by the work or guarantee they serve (`bench/cost_ledger.py`). Unlike own time, these
are exact and not inflated by the tracer. `--perf N` then samples each process with `perf record` over
N more calls and prints where its CPU fell by shared object and by function: how much is the
interpreter's own loop (`_PyEval_EvalFrameDefault`) and how much the object operations, allocations,
extensions and kernel work it calls, which instruction counts do not weigh (needs `perf`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost_ledger import ledger
from gateway_stack import KEY, POLICIES, _descendants, _role, export_baseline, launch, start_upstream
from mcp_clients import McpClient, concurrent

SITE = Path(__file__).resolve().parent / "hop_profile_site"
CODECS = (
    "orjson.dumps",
    "orjson.loads",
    "json.dumps",
    "json.loads",
    "model_validate_json",
    "model_dump_json",
    "model_dump",
    "model_validate",
    "to_json",
    "validate_json",
    "is_authorized",
    "sha256",
    "create_task",
    "call_later",
    "call_at",
)
"""Names whose calls per `tools/call` are printed: encodes, decodes, Cedar, digests, tasks, timers."""


def _services(root: int) -> dict[int, str]:
    found = {}
    for pid in _descendants(root):
        role = _role(pid)
        if role in ("ingress", "policy", "executor", "ingress+executor", "audit"):
            found[pid] = role
    return found


async def _load(url: str, calls: int, clients: int, text: str) -> None:
    params = {"name": "echo__echo", "arguments": {"text": text}}

    async def open_client() -> McpClient:
        return await McpClient(url, KEY).open()

    await concurrent(open_client, params, clients, calls // clients)


def _report(path: Path, calls: int, top: int) -> None:
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    total_calls = sum(entry[1] for entry in raw.values())
    total_time = sum(entry[2] for entry in raw.values())
    print(
        f"\n== {path.stem}: {total_calls / calls:,.0f} function calls per tools/call, "
        f"{total_time / calls * 1e6:,.0f} µs own time per call (profiled)"
    )
    counts: dict[str, float] = {}
    for (filename, _line, name), entry in raw.items():
        label = f"{filename}:{name}"
        for codec in CODECS:
            short = codec.rpartition(".")[2]
            if name.endswith(short) and (codec.partition(".")[0] in label or "." not in codec):
                counts[codec] = counts.get(codec, 0) + entry[1] / calls
    print("   per call: " + ", ".join(f"{k} {v:.2f}" for k, v in counts.items() if v >= 0.01))
    ranked = sorted(raw.items(), key=lambda item: -item[1][2])[:top]
    for (filename, line, name), entry in ranked:
        print(f"   {entry[2] / calls * 1e6:7.1f} µs {entry[1] / calls:6.2f}x  {name} ({_short(filename)}:{line})")


def _short(filename: str) -> str:
    """A source file's path as read here: from the checkout, or from inside site-packages."""
    return filename.replace(str(Path.cwd()) + "/", "").split("site-packages/")[-1]


def _signalled_window(services: dict[int, str], signum: int, load: Callable[[], None]) -> None:
    """`load` run between two `signum`s to every service, and what it leaves to the audit service."""
    for pid in services:
        os.kill(pid, signum)
    time.sleep(0.2)
    load()
    time.sleep(2.5)  # the audit batches of these calls reach the audit service
    for pid in services:
        os.kill(pid, signum)
    time.sleep(1.0)


def _report_bytecodes(path: Path, calls: int, top: int, grouped: bool) -> None:
    counts = json.loads(path.read_text())
    per_area, per_function = counts["areas"], counts["functions"]
    areas = ", ".join(f"{k.removeprefix('bytecodes_')} {v / calls:,.0f}" for k, v in sorted(per_area.items()) if v)
    process = path.name.removesuffix(".bytecodes.json")
    print(f"\n== {process}: {sum(per_area.values()) / calls:,.0f} bytecodes per tools/call")
    print(f"   per area: {areas}")
    for where, count in sorted(per_function.items(), key=lambda item: -item[1])[:top]:
        print(f"   {count / calls:8,.0f}  {_short(where)}")
    if grouped:
        total = sum(per_area.values()) / calls
        print(f"   what they buy (bench/cost_ledger.py), of {total:,.0f}:")
        for group, count, largest in ledger({_short(k): v for k, v in per_function.items()}, calls):
            print(f"   {count:8,.0f} {count / total:4.0%}  {group}  (most: {largest})")


def _sampled(services: dict[int, str], out: Path, load: Callable[[], None]) -> dict[str, Path]:
    """`load` run with `perf record` sampling each service (every thread, 1,999 Hz); each one's data file."""
    data: dict[str, Path] = {}
    recorders = []
    for pid, role in services.items():
        path = data[f"{role}-{pid}"] = out / f"{role}-{pid}.perf.data"
        command = ["perf", "record", "-F", "1999", "-o", str(path), "-p", str(pid)]
        recorders.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # perf attaches
    load()
    for recorder in recorders:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(60)
    return data


def _report_perf(process: str, data: Path, top: int) -> None:
    """Where `process`'s samples fell: by shared object (the interpreter, the kernel, each extension), then
    by symbol (the interpreter's own loop against the object operations it calls)."""
    print(f"\n== {process}: CPU samples (perf)")
    for sort, rows in (("dso", 12), ("sym", top)):
        report = subprocess.run(
            ["perf", "report", "-i", str(data), "--sort", sort, "--stdio"], capture_output=True, text=True
        ).stdout
        lines = [line for line in report.splitlines() if line.strip() and not line.startswith("#")]
        print(f"   by {'shared object' if sort == 'dso' else 'function'}:")
        for line in lines[:rows]:
            print(f"   {line.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--colocated", action="store_true")
    parser.add_argument("--policy", choices=sorted(POLICIES), default="none")
    parser.add_argument("--baseline", help="a git ref: profile its services instead of this checkout's")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--keep", type=Path, help="copy each process's .prof (and .bytecodes.json) file into this folder"
    )
    parser.add_argument("--bytecodes", type=int, default=0, help="then count bytecodes over this many calls")
    parser.add_argument("--ledger", action="store_true", help="and group them by what they buy (cost_ledger.py)")
    parser.add_argument("--perf", type=int, default=0, help="then sample each process with perf over this many calls")
    args = parser.parse_args()
    upstream, url = start_upstream("http")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profiles"
        out.mkdir()
        env = export_baseline(args.baseline, Path(tmp) / "baseline") if args.baseline else {}
        # this checkout's own code ahead of whatever the interpreter installed (an editable install of
        # another worktree), unless a baseline's is asked for
        own = env.get("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
        env["PYTHONPATH"] = os.pathsep.join([str(SITE), own])
        env |= {"BENCH_PROFILE_DIR": str(out), "BASTION_CONFINE": "false", "BASTION_NATS_MONITOR": "1"}
        keys = [{"name": "bench", "key": KEY, "tools": ["echo/*"]}]
        config: dict = {"mcpServers": {"echo": {"url": url}}, "keys": keys, "stack": {"colocate": args.colocated}}
        if POLICIES[args.policy]:
            config["policies"] = POLICIES[args.policy]
        gateway = launch(config, Path(tmp), env)
        try:
            asyncio.run(_load(gateway.url, 400, args.clients, "hello"))
            services = _services(gateway.proc.pid)
            _signalled_window(
                services, signal.SIGUSR1, lambda: asyncio.run(_load(gateway.url, args.calls, args.clients, "hello"))
            )
            if args.bytecodes:
                _signalled_window(
                    services,
                    signal.SIGUSR2,
                    lambda: asyncio.run(_load(gateway.url, args.bytecodes, args.clients, "hello")),
                )
            if args.perf:
                samples = _sampled(
                    services, out, lambda: asyncio.run(_load(gateway.url, args.perf, args.clients, "hello"))
                )
        finally:
            gateway.stop()
            upstream.terminate()
        print(
            f"build: {args.baseline or 'this checkout'}, {'co-located' if args.colocated else 'separate'}, "
            f"policy: {args.policy}, {args.calls} calls at c={args.clients}; load {os.getloadavg()[0]:.1f}"
        )
        for path in sorted(out.glob("*.prof")):
            _report(path, args.calls, args.top)
        for path in sorted(out.glob("*.bytecodes.json")):
            _report_bytecodes(path, args.bytecodes, args.top, args.ledger)
        if args.perf:
            for process, data in samples.items():
                _report_perf(process, data, args.top)
        if args.keep:
            shutil.copytree(out, args.keep, dirs_exist_ok=True)


if __name__ == "__main__":
    main()
