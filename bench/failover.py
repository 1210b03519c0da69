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
import hashlib
import itertools
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: the checkout's packages

from bench.fault_kinds import KINDS, DelayProxies, Fault, after, pause_member, slow_member, store_away, wait_for
from bench.replicated_stack import ReplicatedStack, jsonrpc_answer, ledger_config, p99, parse_stack_args, run_in
from libs.common.audit.audit_content import to_json
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent

CALL_TIMEOUT = 20.0
"""The gateway's `call_timeout`; a client gives up CALL_TIMEOUT + 10 s after sending (a hang)."""
RETRYABLE = {-32070: "gateway_unavailable", -32071: "gateway_timeout"}
"""JSON-RPC errors docs/reliability.md tells an agent to retry (a call that may have run says so)."""
MIX = ("call", "list", "call", "code", "call", "list", "call", "call", "list", "call")
"""Per ten requests of an agent: six tools/call, three tools/list, one Code Mode run."""


def digest(arguments: dict) -> str:
    """The `arguments_sha256` of an audit row for these arguments."""
    return hashlib.sha256(to_json(arguments).encode()).hexdigest()


def script(token: str) -> str:
    return f'result = ledger.record(mark="{token}")'


@dataclass
class Call:
    kind: str
    """"call" (tools/call of ledger__record), "list" (tools/list) or "code" (Code Mode execute_code)."""
    token: str
    session: int
    started: float
    ended: float = 0.0
    outcome: str = ""
    """"ok", "retryable" (an error an agent retries), "failed" (any other error) or "hung"."""
    detail: str = ""
    replica: int = -1

    @property
    def latency(self) -> float:
        return self.ended - self.started

    @property
    def arguments(self) -> dict | None:
        if self.kind == "list":
            return None
        return {"mark": self.token} if self.kind == "call" else {"code": script(self.token)}


@dataclass
class Agent:
    """One agent session: its key, a session id every replica accepts, a preferred replica."""

    index: int
    urls: list[str]
    key: str
    http: httpx.AsyncClient
    session_id: str = ""
    next_id: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def headers(self) -> dict[str, str]:
        session = {"mcp-session-id": self.session_id, "mcp-protocol-version": "2025-06-18"} if self.session_id else {}
        return {"authorization": f"Bearer {self.key}", "accept": "application/json, text/event-stream", **session}

    async def post(self, message: dict, headers: dict[str, str], deadline: float) -> tuple[int, dict, int]:
        """POST to the preferred replica, or the next one that accepts the connection (a refused
        connection sent nothing); the HTTP status, the JSON-RPC answer and the replica that answered."""
        order = [(self.index + i) % len(self.urls) for i in range(len(self.urls))]
        while True:
            for replica in order:
                try:
                    response = await self.http.post(
                        self.urls[replica],
                        json=message,
                        headers={**self.headers, **headers},
                        timeout=max(0.1, deadline - time.monotonic()),
                    )
                except httpx.ConnectError:
                    continue
                return response.status_code, _answer(response), replica
            if time.monotonic() > deadline:
                raise httpx.ConnectTimeout("no ingress replica accepted a connection")
            await asyncio.sleep(0.1)  # every replica refused: they are restarting

    async def open(self) -> None:
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "failover", "version": "1"}}
        deadline = time.monotonic() + 60
        while True:
            try:
                status, answer, _ = await self.post(self._msg("initialize", init), {}, deadline)
                if status == 200 and "result" in answer:
                    break
                problem = f"HTTP {status} {answer}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            if time.monotonic() > deadline:
                raise SystemExit(f"agent {self.index} could not initialize a session: {problem}")
            await asyncio.sleep(0.2)
        self.session_id = answer["_session"]
        await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, {}, deadline)

    def _msg(self, method: str, params: dict | None = None) -> dict:
        return {"jsonrpc": "2.0", "id": next(self.next_id), "method": method, **({"params": params} if params else {})}

    async def send(self, call: Call) -> None:
        if call.kind == "list":
            message, headers = self._msg("tools/list"), {}
        elif call.kind == "call":
            message = self._msg("tools/call", {"name": "ledger__record", "arguments": call.arguments})
            headers = {}
        else:
            message = self._msg("tools/call", {"name": "execute_code", "arguments": call.arguments})
            headers = {"x-bastion-code-mode": "on"}
        try:
            status, answer, call.replica = await self.post(message, headers, call.started + CALL_TIMEOUT + 10)
        except httpx.TimeoutException:
            call.outcome, call.detail = "hung", "no answer within the call timeout + 10 s"
        except httpx.HTTPError as exc:  # the replica died with the request: it may have run
            call.outcome, call.detail = "retryable", f"connection lost ({type(exc).__name__})"
        else:
            call.outcome, call.detail = _classify(status, answer)
        call.ended = time.monotonic()


def _answer(response: httpx.Response) -> dict:
    answer = jsonrpc_answer(response)
    if session := response.headers.get("mcp-session-id"):
        answer["_session"] = session
    return answer


def _classify(status: int, answer: dict) -> tuple[str, str]:
    if status in (429, 503):
        return "retryable", f"HTTP {status}"
    if "error" in answer:
        code, message = answer["error"].get("code"), str(answer["error"].get("message", ""))
        return ("retryable" if code in RETRYABLE else "failed"), f"{code} {message[:90]}"
    result = answer.get("result")
    if not isinstance(result, dict):
        return "failed", f"HTTP {status}, no result"
    if result.get("isError"):
        text = " ".join(str(c.get("text", "")) for c in result.get("content", []) if isinstance(c, dict))
        # a script's tool call answered gateway_unavailable/timeout says so in the run's error
        retry = any(str(code) in text or name in text for code, name in RETRYABLE.items())
        return ("retryable" if retry else "failed"), f"isError {text[:90]}"
    return "ok", ""


@dataclass
class Load:
    stack: ReplicatedStack
    keys: list[str]
    concurrency: int
    calls: int
    prefix: str
    results: list[Call] = field(default_factory=list)
    faults_done: asyncio.Event = field(default_factory=asyncio.Event)
    _sequence: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def done(self) -> bool:
        return len(self.results) >= self.calls and self.faults_done.is_set()

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency + len(self.keys), max_keepalive_connections=None)
        async with httpx.AsyncClient(timeout=CALL_TIMEOUT + 10, limits=limits, trust_env=False) as http:
            agents = [Agent(i, self.stack.urls, key, http) for i, key in enumerate(self.keys)]
            await asyncio.gather(*(agent.open() for agent in agents))
            await asyncio.gather(*(self._worker(agents[w % len(agents)]) for w in range(self.concurrency)))

    async def _worker(self, agent: Agent) -> None:
        while not self.done:
            n = next(self._sequence)
            call = Call(MIX[n % len(MIX)], f"{self.prefix}-{n}", agent.index, time.monotonic())
            await agent.send(call)
            self.results.append(call)
            if call.outcome != "ok":
                await asyncio.sleep(0.1)  # an agent backs off a little after a failure


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


def fault_figures(fault: Fault, results: list[Call]) -> dict:
    """A fault's calls are those sent while it was the latest; its errors, those that ended while it
    was (a call cut by the next fault is that fault's); recovery, until its last error ended."""
    phase = [c for c in results if fault.injected <= c.started < fault.ended]
    bad = [c for c in results if c.outcome != "ok" and fault.injected <= c.ended < fault.ended]
    recovery = max((c.ended for c in bad), default=fault.injected) - fault.injected
    window = fault.injected + max(recovery, (fault.back or fault.ended) - fault.injected, 5.0)
    during = [c.latency for c in phase if c.started <= window]
    gaps: dict[str, float | int] = {"longest_gap_s": longest_gap(fault, results)}
    if fault.replica is not None:  # a slow member shows in its replica's latency, hardly in gaps
        its = [c for c in results if c.replica == fault.replica]
        lasting = [c for c in its if fault.injected <= c.started < (fault.back or fault.ended)]
        gaps["longest_gap_its_replica_s"] = longest_gap(fault, its)
        gaps["its_replica_calls"] = len(lasting)
        gaps["its_replica_p50_ms"] = round(1000 * statistics.median([c.latency for c in lasting]), 1) if lasting else 0
    return {
        "fault": fault.name,
        "calls": len(phase),
        "errors": len(bad),
        "errors_by_kind": dict(Counter(c.detail.split(" (")[0][:70] for c in bad).most_common(6)),
        "failed": sum(c.outcome in ("failed", "hung") for c in bad),
        "p99_during_ms": round(1000 * p99(during), 1),
        "recovery_s": round(recovery, 2),
        "back_after_s": after(fault, fault.back),
        **gaps,
        **fault.detail,
    }


def longest_gap(fault: Fault, calls: list[Call]) -> float:
    """The longest time, while the fault was the latest, without a successful call sent after it began."""
    done = sorted(c.ended for c in calls if c.outcome == "ok" and fault.injected <= c.started and c.ended < fault.ended)
    return round(max(b - a for a, b in itertools.pairwise([fault.injected, *done, fault.ended])), 2)


async def audit_settled(stack: ReplicatedStack, since: float, want: int, within: float) -> list[AuditEvent]:
    """The stored rows once at least `want` are in and two reads 5 s apart agree (or after `within` s)."""
    deadline = time.monotonic() + within
    previous: list[AuditEvent] = []
    while True:
        try:
            rows = await stack.audit_rows(since)
        except Exception as exc:  # the audit service is busy or taking over: try again
            print(f"  audit export: {exc}", flush=True)
            rows = []
        if (len(rows) >= want and len(rows) == len(previous)) or time.monotonic() > deadline:
            return rows
        previous = rows
        await asyncio.sleep(5)


def checks(results: list[Call], ledger: list[str], rows: list[AuditEvent], prefix: str) -> dict:
    """The end-of-run checks (each a count that must be 0, or a verdict)."""
    ran = Counter(ledger)
    handled = [c for c in results if c.kind != "list"]
    by_digest: Counter[str] = Counter()
    anonymous = 0
    for row in rows:
        if row.key_name.startswith(prefix):
            if row.arguments_sha256:
                by_digest[row.arguments_sha256] += 1
            else:
                anonymous += 1  # a call cut by an ingress kill, replayed from its journal without arguments
    expected: dict[str, Call] = {}
    for call in handled:
        expected[digest(call.arguments or {})] = call
        if call.kind == "code":  # the tool call its script made
            expected[digest({"mark": call.token})] = call
    answered = [c for c in handled if not c.detail.startswith("connection lost") and c.outcome != "hung"]
    missing = [c for c in answered if by_digest[digest(c.arguments or {})] != 1]
    inner_missing = [
        c for c in handled if c.kind == "code" and ran[c.token] and not by_digest[digest({"mark": c.token})]
    ]
    cut_ran_unrecorded = [
        c
        for c in handled
        if c.detail.startswith("connection lost") and ran[c.token] and not by_digest[digest(c.arguments or {})]
    ]
    told_failed_but_ran = [c for c in handled if c.outcome == "failed" and ran[c.token]]
    return {
        "calls": len(results),
        "unanswered": sum(c.outcome == "hung" for c in results),
        "failed": sum(c.outcome == "failed" for c in results),
        "retryable": sum(c.outcome == "retryable" for c in results),
        "failed_examples": [c.detail for c in results if c.outcome in ("failed", "hung")][:5],
        "executed_twice": sum(n > 1 for n in ran.values()),
        "executed_unasked": sum(t not in {c.token for c in handled} for t in ran),
        "told_failed_but_ran": len(told_failed_but_ran),
        "rows": sum(by_digest.values()) + anonymous,
        "rows_duplicated": sum(n > 1 for n in by_digest.values()),
        "rows_missing": len(missing),
        "rows_missing_examples": [f"{c.kind} {c.token} {c.outcome} {c.detail}" for c in missing[:5]],
        # a script's tool call that ran has its row even when its codemode replica was killed
        # before the event was published (codemode's audit journal, docs/reliability.md)
        "script_calls_unrecorded": len(inner_missing),
        "script_calls_unrecorded_examples": [
            f"{c.token} run {c.outcome} {c.detail} at {c.ended:.1f}" for c in inner_missing[:5]
        ],
        "rows_unexplained": sum(1 for d in by_digest if d not in expected)
        + max(0, anonymous - sum(c.detail.startswith("connection lost") for c in handled)),
        "rows_anonymous": anonymous,
        "cut_ran_unrecorded": max(0, len(cut_ran_unrecorded) - anonymous),
    }


def verdict(check: dict, chains_ok: bool) -> list[str]:
    """What failed, in words (empty: everything held)."""
    problems = [
        f"{check[name]} {words}"
        for name, words in (
            ("unanswered", "call(s) unanswered within their timeout"),
            ("failed", "call(s) failed with an error that is not retryable"),
            ("executed_twice", "token(s) executed twice"),
            ("executed_unasked", "ledger token(s) no call sent"),
            ("told_failed_but_ran", "call(s) told failed that ran"),
            ("rows_duplicated", "request(s) with two audit rows"),
            ("rows_missing", "handled request(s) without their audit row"),
            ("rows_unexplained", "audit row(s) no request explains"),
            ("cut_ran_unrecorded", "cut call(s) that ran without an audit row"),
            ("script_calls_unrecorded", "tool call(s) of a Code Mode script that ran without an audit row"),
        )
        if check[name]
    ]
    return problems if chains_ok else [*problems, "the hash chains do not verify"]


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
        rows = await audit_settled(stack, began - 60, want, within=args.audit_wait)
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
