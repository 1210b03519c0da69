"""What the NATS hop of the separate layout costs per `tools/call`, and where nats-server's CPU goes.

    .venv/bin/python bench/nats_hop.py [--calls 3000] [--strace] [--perf]

`bastion up` with every service its own process (`stack: {colocate: false}`), 16 clients (`--clients`) calling the
HTTP echo upstream after a warm-up. Printed per call: each process's CPU (from /proc), nats-server's
messages in and out (/varz) and what JetStream stored and delivered (/jsz: a stream or consumer touched
per call shows here). `--strace` attaches `strace -f -c` to nats-server, ingress and the executor for
the measured calls and prints their syscalls per call (reads, writes, futex and nanosleep wake-ups);
it slows them, so their CPU is not the plain figure then. `--perf` samples nats-server (`perf record -e
cpu-clock -g`) and splits its CPU between routing messages and the Go runtime's own work (its sysmon
thread, the scheduler parking and polling, reads and writes). docs/architecture.md ("What the NATS hop
costs") has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_stack import KEY, Costs, _descendants, _role, costs_between, launch, snapshot, start_upstream
from hop_profile import _load

TRACED = ("nats-server", "ingress", "executor")
SYSCALLS = ("read", "write", "writev", "epoll_pwait", "futex", "nanosleep", "getpid")
PERF_AREAS = {
    "routing (parse, match, queue the delivery)": "(*client).processInboundClientMsg",
    "read loop (socket reads included)": "(*client).readLoop",
    "write loop (writev to the subscriber)": "(*client).writeLoop",
    "Go sysmon thread (its nanosleeps)": "runtime.sysmon",
    "scheduler parking, netpoll, futex": "runtime.park_m",
    "garbage collection": "runtime.gcBgMarkWorker",
}
"""nats-server's CPU by area: the inclusive share of samples under each function (areas overlap:
routing is inside the read loop)."""


def _jetstream(workdir: Path) -> dict[str, int]:
    """JetStream API calls so far, each stream's last sequence and each consumer's deliveries."""
    for ports in (workdir / "data" / "nats" / "ports").glob("*.ports"):
        monitor = json.loads(ports.read_text()).get("monitoring") or []
        if not monitor:
            continue
        jsz = httpx.get(f"{monitor[0]}/jsz?streams=true&consumers=true", timeout=5).json()
        found = {"api calls": jsz["api"]["total"]}
        for account in jsz.get("account_details", []):
            for stream in account.get("stream_detail", []):
                found[stream["name"]] = stream["state"]["last_seq"]
                for consumer in stream.get("consumer_detail") or []:
                    found[f"{stream['name']}/{consumer['name']}"] = consumer["delivered"]["stream_seq"]
        return found
    return {}


def _strace_counts(path: Path, calls: int) -> dict[str, float]:
    """Syscalls per call from `strace -c`'s table (its `errors` column: a read that found nothing)."""
    counts: dict[str, float] = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1] in SYSCALLS and fields[0][0].isdigit():
            counts[fields[-1]] = int(fields[3]) / calls
            if len(fields) == 6:
                counts[f"{fields[-1]} (nothing there)"] = int(fields[4]) / calls
    return counts


def _perf_split(path: Path) -> dict[str, float]:
    """nats-server's CPU share per `PERF_AREAS` area, from `perf report --children`."""
    report = subprocess.run(
        ["perf", "report", "-i", str(path), "--children", "--sort", "symbol", "--stdio", "-g", "none"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    shares: dict[str, float] = {}
    for area, symbol in PERF_AREAS.items():
        for line in report.splitlines():
            found = re.match(r"\s*([\d.]+)%.*?\] (\S+)", line)  # share, self share, [.] symbol
            if found and found.group(2).endswith(symbol):
                shares[area] = float(found.group(1))
                break
    return shares


def _attach(pids: dict[int, str | None], out: Path, strace: bool, perf: bool) -> list[subprocess.Popen[bytes]]:
    tools = []
    for pid, role in pids.items():
        if strace and role in TRACED:
            argv = ["strace", "-f", "-c", "-o", str(out / f"{role}.strace"), "-p", str(pid)]
            tools.append(subprocess.Popen(argv, stderr=subprocess.DEVNULL))
        if perf and role == "nats-server":
            argv = [
                "perf",
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "2000",
                "-g",
                "-p",
                str(pid),
                "-o",
                str(out / "perf.data"),
            ]
            tools.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0 if tools else 0)  # attached before the first measured call
    return tools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=16, help="calls in flight at once")
    parser.add_argument("--strace", action="store_true")
    parser.add_argument("--perf", action="store_true")
    args = parser.parse_args()
    upstream, url = start_upstream("http")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            keys = [{"name": "bench", "key": KEY, "tools": ["echo/*"]}]
            config = {"mcpServers": {"echo": {"url": url}}, "keys": keys, "stack": {"colocate": False}}
            # the services import this checkout through the interpreter's editable install
            env = {"BASTION_CONFINE": "false", "BASTION_NATS_MONITOR": "1", "PYTHONPATH": ""}
            gateway = launch(config, workdir, env)
            try:
                asyncio.run(_load(gateway.url, 800, 16, "hello"))
                tools = _attach(
                    {pid: _role(pid) for pid in _descendants(gateway.proc.pid)}, workdir, args.strace, args.perf
                )
                before, stored = snapshot(gateway), _jetstream(workdir)
                asyncio.run(_load(gateway.url, args.calls, args.clients, "hello"))
                after, stored_after = snapshot(gateway), _jetstream(workdir)
                for tool in tools:
                    tool.send_signal(2)
                    tool.wait()
                _report(workdir, args, costs_between(before, after, args.calls), stored, stored_after)
            finally:
                gateway.stop()
    finally:
        upstream.terminate()


def _report(
    workdir: Path, args: argparse.Namespace, costs: Costs, stored: dict[str, int], stored_after: dict[str, int]
) -> None:
    calls = args.calls
    cpu = {role: round(us) for role, us in costs.cpu_us.items() if role != "cli"}
    print(f"CPU µs per call{' (traced: slowed)' if args.strace or args.perf else ''}: {cpu}, total {sum(cpu.values())}")
    print(f"NATS messages per call: {costs.nats_in:.2f} in, {costs.nats_out:.2f} out")
    touched = {name: (stored_after[name] - stored.get(name, 0)) / calls for name in stored_after}
    print("JetStream per call: " + ", ".join(f"{name} {n:.3f}" for name, n in touched.items() if n) or "nothing")
    for role in TRACED if args.strace else ():
        counts = _strace_counts(workdir / f"{role}.strace", calls)
        print(f"{role} syscalls per call: " + ", ".join(f"{name} {n:.2f}" for name, n in counts.items()))
    if args.perf:
        for area, share in _perf_split(workdir / "perf.data").items():
            print(f"nats-server {area}: {share:.0f} % of its CPU")


if __name__ == "__main__":
    main()
