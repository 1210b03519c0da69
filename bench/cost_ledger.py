"""What a `tools/call`'s bytecodes buy: `bench/hop_profile.py --ledger` groups each process's
per-function instruction counts (`--bytecodes N`) by the work or guarantee their code serves.

A function belongs to the first group whose path fragment its file's path contains (read in order:
the more specific first). Instructions, not CPU: in the running stack one costs ~30-40 ns at the
margin (docs/benchmarks.md, "What each guarantee costs"), so a group's share of the instructions is
close to its share of the process's Python CPU; C work (orjson, pydantic-core, sha256, the socket
writes) is one instruction per call and is not in these figures.
"""

from __future__ import annotations

from collections.abc import Mapping

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("audit: events, journal, hash chain, publisher", ("services/ingress/audit_events", "libs/common/audit/")),
    (
        "guardrails and pinned definitions",
        ("services/executor/guardrails/", "services/executor/interceptors/", "services/executor/pinning/"),
    ),
    (
        "metrics and tracing",
        (
            "libs/common/runtime/loop_metrics",
            "libs/common/runtime/semconv",
            "libs/common/runtime/metrics",
            "libs/common/runtime/tracing",
            "prometheus_client/",
            "opentelemetry/",
            "services/ingress/metrics",
            "services/executor/gauges",
        ),
    ),
    ("HTTP server and its limits", ("services/ingress/web/", "uvicorn/", "starlette/")),
    ("authentication", ("services/ingress/auth/",)),
    (
        "MCP protocol: envelope, checks, dispatch",
        (
            "services/ingress/mcp_edge/",
            "services/ingress/handlers",
            "services/ingress/field_limits",
            "services/ingress/tasks/",
            "services/ingress/protocol",
            "services/ingress/context",
            "services/ingress/routed_answers",
            "services/ingress/sessions/",
            "services/ingress/catalog/",
            "services/ingress/modes/",
        ),
    ),
    ("the bus: lane, relay, NATS client, deadlines", ("services/ingress/sending/", "libs/common/bus/", "nats/")),
    ("contracts: messages, results, JSON", ("libs/common/contracts/", "pydantic/", "pydantic_core/")),
    (
        "executor: admission, breakers, attempts, answer",
        (
            "services/executor/call_path/",
            "services/executor/admission",
            "services/executor/service",
            "services/executor/replies",
            "services/executor/breaker",
            "services/executor/resilience",
            "services/executor/answer_limits",
            "services/executor/large_results",
            "services/executor/schema_fastpath",
            "services/executor/argument_rules",
            "services/executor/budgets",
            "services/executor/tools",
        ),
    ),
    ("upstream client: MCP over HTTP/1.1", ("services/executor/upstreams/",)),
    ("audit writer", ("services/audit/",)),
    ("policy service", ("services/policy/",)),
    (
        "MCP SDK and its HTTP client (timers: drift listings, health pings)",
        ("mcp/", "anyio/", "sniffio/", "httpx", "httpcore", "h11/"),
    ),
    ("event loop and standard library", ("/lib/python3", "asyncio/", "uvloop/")),
)
OTHER = "other"


def group_of(where: str) -> str:
    """The group of a function named `path:line(name)`."""
    path = where.partition(":")[0]
    for group, fragments in GROUPS:
        if any(fragment in path for fragment in fragments):
            return group
    return OTHER


def ledger(functions: Mapping[str, float], calls: int) -> list[tuple[str, float, str]]:
    """Per group, most first: its instructions per call and its largest function."""
    totals: dict[str, float] = {}
    largest: dict[str, tuple[float, str]] = {}
    for where, count in functions.items():
        group = group_of(where)
        totals[group] = totals.get(group, 0) + count
        if count > largest.get(group, (0, ""))[0]:
            largest[group] = (count, where)
    rows = [(group, total / calls, largest[group][1]) for group, total in totals.items()]
    return sorted(rows, key=lambda row: -row[1])
