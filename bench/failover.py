"""The failover benchmark: Bastion scaled out on one machine, under load, losing one part at a time.

    ./run bench --failover                          # 20,000 calls at concurrency 64 (about 15 minutes here)
    ./run bench --failover --calls 2000 --concurrency 16 --settle 3 --json out.json

A 3-server NATS cluster with every stream, bucket and object store on 3 servers, Valkey, and two
replicas of ingress, policy, executor, codemode and audit, each its own process
(`replicated_stack.py`). Agent sessions (one key each) are spread over the ingress replicas; each
sends a mix of `tools/list`, `tools/call` of a tool that writes every call's token to a ledger file
before answering (tests/support/ledger_server.py, neither read-only nor idempotent, so never retried)
and Code Mode runs whose script calls that tool with a token of its own. A connection refused by an
ingress replica goes to the other one, as a load balancer's health check would send it.

While the load runs, in turn: the nats-server leading the audit stream is SIGKILLed (restarted
after `--nats-down` seconds on its ports, with its store), then one replica of ingress, policy,
executor, codemode and audit (the one owning the ClickHouse store: the other takes it over), each
SIGKILLed and restarted by the supervisor, then Valkey (restarted at once, its append-only file
kept). Then (`--faults`, bench/fault_kinds.py): the member ingress-1 is on paused (SIGSTOP) for
`--pause` seconds, the same member answering `--slow-delay` seconds late (bench/delay_proxy.py), and
the audit store refusing every write for as long.

Afterwards it proves, and prints:
- every call answered: a success, or an error docs/reliability.md calls retryable; none unanswered
  within its timeout (the gateway's call timeout plus 10 s);
- no tool executed twice for one call: every token at most once in the ledger;
- ClickHouse holds exactly one row per handled request: every answered tools/call and Code Mode run
  (and the tool call its script made, even when its codemode replica was killed) one row, found by
  its arguments' sha256; none twice; none that no request explains;
- the hash chains and checkpoints verify (`bastion audit verify`);
and per fault: calls and errors while it lasted, p99 latency during it, the time to recover (from
the fault until the last failed call ended), the longest time without a successful call, plus the
leader election and the audit takeover.

The exit code is 1 when a check fails. `--json` writes every figure. This is a benchmark, not a
test: the figures are noisy. tests/e2e/test_failover.py runs a short version in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the checkout's packages

from bench.failover_checks import audit_settled, checks, fault_figures, verdict
from bench.failover_load import CALL_TIMEOUT, Load
from bench.fault_kinds import KINDS, DelayProxies, Fault, after, pause_member, slow_member, store_away, wait_for
from bench.replicated_stack import ReplicatedStack, ledger_config, p99, parse_stack_args, run_in
from libs.common.contracts import subjects
from services.audit.writer import DURABLE


async def run_faults(
    stack: ReplicatedStack, load: Load, args: argparse.Namespace, proxies: DelayProxies | None
) -> list[Fault]:
    """Each fault of `args.faults` in turn, `args.settle` seconds apart once the part is back."""
    warmup, settle = args.calls // 20, args.settle
    faults: list[Fault] = []
    await wait_for(lambda: len(load.results) >= warmup, float("inf"))

    async def nats_leader() -> Fault:
        leader = stack.stream_leader(subjects.AUDIT_STREAM) or "n1"
        name = f"nats{int(leader.removeprefix('n'))}"
        starts = stack.starts(name)
        fault = Fault(f"nats-server {leader} (audit stream leader)", stack.kill(name))
        elected = await wait_for(lambda: stack.stream_leader(subjects.AUDIT_STREAM) not in (None, leader), 60)
        fault.detail["leader_elected_s"] = after(fault, elected)
        fault.back = await wait_for(lambda: stack.starts(name) > starts, 120)
        return fault

    def service(svc: str) -> Callable[[], Awaitable[Fault]]:
        async def inject() -> Fault:
            name = f"{svc}-1"
            if svc == "audit":  # the replica owning the store; the other one stands by
                name = owner(stack)
            starts = stack.starts(name)
            standby = next((n for n in stack.children("audit-") if n != name), "") if svc == "audit" else ""
            taken = stack.log(standby).count("took the store over")
            fault = Fault(f"{svc} replica {name} SIGKILL", stack.kill(name))
            back = wait_for(lambda: stack.starts(name) > starts, 60)
            if not standby:
                fault.back = await back
                return fault
            took = wait_for(lambda: stack.log(standby).count("took the store over") > taken, 60)
            fault.back, took_at = await asyncio.gather(back, took)  # both watched from the kill on
            fault.detail["takeover_s"] = after(fault, took_at)
            return fault

        return inject

    async def valkey() -> Fault:
        starts = stack.starts("valkey")
        fault = Fault("valkey SIGKILL (restarted at once, AOF)", stack.kill("valkey"))
        fault.back = await wait_for(lambda: stack.starts("valkey") > starts, 30)
        return fault

    kinds: dict[str, list[Callable[[], Awaitable[Fault]]]] = {
        "kill": [nats_leader, *(service(s) for s in ("ingress", "policy", "executor", "codemode", "audit")), valkey],
        "pause": [lambda: pause_member(stack, args.pause)],
        "slow": [lambda: slow_member(stack, proxies, args.pause)] if proxies else [],
        "store": [lambda: store_away(stack, args.pause)],
    }
    plan = [inject for kind in args.faults for inject in kinds[kind]]
    for inject in plan:
        fault = await inject()
        if faults:
            faults[-1].ended = fault.injected
        faults.append(fault)
        print(f"  {fault.name}: back after {after(fault, fault.back)}s {fault.detail or ''}", flush=True)
        await asyncio.sleep(settle)
    load.faults_done.set()
    return faults


def owner(stack: ReplicatedStack) -> str:
    """The audit replica holding the store's lock file (it wrote its pid there)."""
    pid = int((stack.data_dir / "clickhouse.owner").read_text().split()[0])
    return next(n for n in stack.children("audit-") if stack.pid(n) == pid)


def config(ledger: Path, keys: list[str], prefix: str) -> dict:
    agents = [
        {
            "name": f"{prefix}-{i}",
            "key": key,
            "tools": ["ledger/*"],
            "rate_limit": {"requests": 1_000_000, "per": "minute"},  # every call counts in Valkey
        }
        for i, key in enumerate(keys)
    ]
    return {**ledger_config(ledger, agents), "gateway": {"call_timeout": CALL_TIMEOUT}}


async def bench(args: argparse.Namespace, workdir: Path) -> dict:
    prefix = "failover"
    keys = [f"bk_failover_agent_{i:03d}_".ljust(40, "0") for i in range(args.sessions)]
    ledger = workdir / "ledger.txt"
    proxies = DelayProxies(workdir / "slow.json", args.slow_delay) if "slow" in args.faults else None
    through = {"ingress-1": proxies.through} if proxies else {}
    stack = ReplicatedStack(workdir, config(ledger, keys, prefix), nats_down=args.nats_down, through=through)
    print(f"starting: 3 nats-servers, valkey, 2 replicas of audit, policy, executor, codemode, ingress ({workdir})")
    began = time.time()
    await stack.start()
    try:
        print(f"load: {args.calls} calls at concurrency {args.concurrency}, {args.sessions} sessions", flush=True)
        load = Load(stack, keys, args.concurrency, args.calls, prefix)
        started = time.monotonic()
        running = asyncio.create_task(load.run())
        faulting = asyncio.create_task(run_faults(stack, load, args, proxies))
        await asyncio.wait({running, faulting}, return_when=asyncio.FIRST_COMPLETED)
        if running.done() and not faulting.done():  # the load gave up (it says why)
            faulting.cancel()
            running.result()
            raise SystemExit("the load ended before the faults")
        faults = faulting.result()
        await running
        finished = time.monotonic()
        faults[-1].ended = finished + 1
        results = load.results
        before = [c for c in results if c.started < faults[0].injected]
        print(f"load done: {len(results)} calls in {finished - started:.0f}s; reading the audit trail", flush=True)
        answered = [c for c in results if c.kind != "list" and not c.detail.startswith("connection lost")]
        want = len(answered) + sum(c.kind == "code" and c.outcome == "ok" for c in answered)  # and their calls
        rows = await audit_settled(
            lambda: stack.audit_rows(began - 60),
            lambda: stack.consumer_backlog(subjects.AUDIT_STREAM, DURABLE),
            want,
            within=args.audit_wait,
        )
        ledger_lines = ledger.read_text().split() if ledger.exists() else []
        check = checks(results, ledger_lines, rows, prefix)
        chains = await stack.verify()
        report = {
            "calls": len(results),
            "concurrency": args.concurrency,
            "sessions": args.sessions,
            "seconds": round(finished - started, 1),
            "calls_per_s": round(len(results) / (finished - started), 1),
            "mix": dict(Counter(c.kind for c in results)),
            "by_replica": dict(Counter(str(c.replica) for c in results)),
            "baseline": {
                "calls": len(before),
                "p50_ms": round(1000 * statistics.median([c.latency for c in before]), 1) if before else None,
                "p99_ms": round(1000 * p99([c.latency for c in before]), 1),
            },
            "faults": [fault_figures(f, results) for f in faults],
            "checks": check,
            "chains": {"ok": chains.ok, "chains": chains.chains, "events": chains.events, "error": chains.error}
            | ({"problem": chains.problem, "detail": chains.detail} if not chains.ok else {}),
        }
        report["problems"] = verdict(check, chains.ok and not chains.error) + [
            f"{f['fault']}: {what} never came"
            for f in report["faults"]
            for what in ("back_after_s", "leader_elected_s", "takeover_s")
            if what in f and f[what] is None
        ]
        report["_calls"] = [asdict(c) for c in results] if args.calls_log else []
        return report
    finally:
        await stack.stop()
        if proxies:
            proxies.stop()


def show(report: dict) -> None:
    print(
        f"\n{report['calls']:,} calls ({report['mix']}) at concurrency {report['concurrency']} over "
        f"{report['sessions']} sessions in {report['seconds']}s ({report['calls_per_s']} calls/s); "
        f"by ingress replica {report['by_replica']}"
    )
    base = report["baseline"]
    print(f"before the faults: {base['calls']} calls, p50 {base['p50_ms']} ms, p99 {base['p99_ms']} ms\n")
    print(f"{'fault':44} {'calls':>6} {'errors':>6} {'failed':>6} {'p99 ms':>8} {'recovery s':>10}  notes")
    for f in report["faults"]:
        shown = ("leader_elected_s", "takeover_s", "back_after_s", "longest_gap_s", "longest_gap_its_replica_s")
        shown += ("its_replica_calls", "its_replica_p50_ms")
        notes = {k: v for k, v in f.items() if k in shown or k in ("ingress_left_member_s", "audit_batches_retried")}
        print(
            f"{f['fault']:44} {f['calls']:>6} {f['errors']:>6} {f['failed']:>6} {f['p99_during_ms']:>8} "
            f"{f['recovery_s']:>10}  {notes} {f['errors_by_kind'] or ''}"
        )
    check = report["checks"]
    print(f"\nchecks: {json.dumps(check)}")
    print(f"hash chains: {report['chains']}")
    print("\nALL CHECKS HELD" if not report["problems"] else "\nPROBLEMS: " + "; ".join(report["problems"]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000, help="calls in all, at least (default 20,000)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument("--sessions", type=int, default=16, help="agent sessions, one key each (default 16)")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds between a part's return and the next fault")
    parser.add_argument("--nats-down", type=float, default=10.0, help="seconds the killed nats-server stays down")
    parser.add_argument(
        "--faults",
        type=lambda text: [k for k in text.split(",") if k],
        default=list(KINDS),
        help=f"which faults, in this order (comma-separated, of {','.join(KINDS)}; default all; bench/fault_kinds.py)",
    )
    parser.add_argument("--pause", type=float, default=30.0, help="seconds a member is paused or slow, the store away")
    parser.add_argument("--slow-delay", type=float, default=2.0, help="seconds the slow member holds each byte")
    parser.add_argument("--audit-wait", type=float, default=300.0, help="seconds to wait for the audit rows")
    parser.add_argument("--calls-log", help="write every call (JSON lines) to this file")
    return parse_stack_args(parser, argv)


def main() -> int:
    args = parse_args()
    report = run_in(args.workdir, "bastion-failover-", lambda workdir: bench(args, workdir))
    if calls := report.pop("_calls"):
        Path(args.calls_log).write_text("\n".join(json.dumps(c) for c in calls))
    show(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
