"""The Prometheus metrics two or more Bastion services share (`docs/observability.md` lists them all).

Requests and their latency (`observe`), the OpenTelemetry MCP and GenAI histograms (`semconv`),
credentials refused (`refusals`), gauges read at scrape time (`StateCollector`) and the `/metrics`
endpoint (`serve`). A metric only one service updates lives in that service
(`services/<svc>/metrics.py`), except the executor's guardrail and pinning metrics, which are still here
until the executor's restructuring moves them.

The metrics live in prometheus-client's process-wide registry, so services run side by side in one
process (the in-process test gateway) share them; the `service` label tells whose a sample is.
Counters and histograms are updated where the work happens (one label lookup and an add: well
under a microsecond); anything that is state rather than an event (upstream health, breaker state,
messages waiting in a NATS subscription) is read only when scraped, by a collector, so it costs
the request path nothing.

Policy, executor, audit, codemode and oauth serve `/metrics` on their own port (`BASTION_METRICS_PORT`,
`serve`); ingress serves it on its own port behind the admin token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from libs.common.runtime.loop_metrics import LoopHistogram

__all__ = [
    "AUTH_REFUSED",
    "GEN_AI_DURATION",
    "GEN_AI_TOKENS",
    "GUARDRAIL_DECISIONS",
    "LATENCY_BUCKETS",
    "MCP_CLIENT_DURATION",
    "MCP_SERVER_DURATION",
    "METHODS",
    "PIN_DRIFT",
    "PIN_QUARANTINED",
    "REQUESTS",
    "REQUEST_SECONDS",
    "MetricsServer",
    "Sample",
    "StateCollector",
    "child",
    "observe",
    "serve",
    "subscription_lag",
]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
"""Seconds: the gateway's own overhead is sub-millisecond, upstream calls take up to the call timeout."""

_REQUEST_LABELS = ("service", "method", "outcome")
REQUEST_SECONDS = LoopHistogram(
    "bastion_request_seconds",
    "Time from receiving a request to answering it, by service, MCP method and outcome.",
    _REQUEST_LABELS,
    buckets=LATENCY_BUCKETS,
)


class _RequestCounts(Collector):
    """`bastion_requests_total`, read from `REQUEST_SECONDS`'s counts when scraped.

    Each request's one observation (`observe`) counts it: a counter updated beside the histogram
    would hold the histogram's `_count` again, at two more calls and a lock per request."""

    _NAME, _HELP = (
        "bastion_requests",
        "Requests handled, by service, MCP method and outcome (ok, tool_error, or the gateway error kind).",
    )

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._NAME, self._HELP, labels=_REQUEST_LABELS)

    def collect(self) -> Iterator[CounterMetricFamily]:
        counts: dict[tuple[str, ...], float] = {}
        created: dict[tuple[str, ...], float] = {}
        for metric in REQUEST_SECONDS.collect():
            for sample in metric.samples:
                if sample.name.endswith("_count"):
                    counts[tuple(sample.labels[n] for n in _REQUEST_LABELS)] = sample.value
                elif sample.name.endswith("_created"):
                    created[tuple(sample.labels[n] for n in _REQUEST_LABELS)] = sample.value
        family = CounterMetricFamily(self._NAME, self._HELP, labels=_REQUEST_LABELS)
        for labels, value in counts.items():
            family.add_metric(labels, value, created=created.get(labels))
        yield family


REQUESTS = _RequestCounts()
REGISTRY.register(REQUESTS)
_MCP_LABELS = ["mcp_method_name", "gen_ai_tool_name", "error_type", "mcp_protocol_version"]
MCP_SERVER_DURATION = LoopHistogram(
    "mcp_server_operation_duration_seconds",
    "OpenTelemetry `mcp.server.operation.duration`: an agent's MCP request at ingress, from its context "
    "being built to its answer (`libs.common.runtime.semconv`).",
    _MCP_LABELS,
    buckets=LATENCY_BUCKETS,
)
MCP_CLIENT_DURATION = LoopHistogram(
    "mcp_client_operation_duration_seconds",
    "OpenTelemetry `mcp.client.operation.duration`: one request the executor sent an upstream MCP server.",
    _MCP_LABELS,
    buckets=LATENCY_BUCKETS,
)
_GEN_AI_LABELS = ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"]
GEN_AI_DURATION = LoopHistogram(
    "gen_ai_client_operation_duration_seconds",
    "OpenTelemetry `gen_ai.client.operation.duration`: one chat completion the executor asked of an LLM provider.",
    [*_GEN_AI_LABELS, "error_type"],
    buckets=LATENCY_BUCKETS,
)
GEN_AI_TOKENS = LoopHistogram(
    "gen_ai_client_token_usage",
    "OpenTelemetry `gen_ai.client.token.usage`: tokens of one chat completion, by `gen_ai_token_type` (input, output).",
    [*_GEN_AI_LABELS, "gen_ai_token_type"],
    buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864),
)
"""The buckets the GenAI conventions advise for token counts."""
AUTH_REFUSED = Counter(
    "bastion_auth_refused",
    "Requests refused for their credential, by surface (mcp, llm, admin) and reason (missing, invalid, expired, "
    "revoked); who sent them is in the `auth.refused` audit events (`libs.common.runtime.refusals`).",
    ["surface", "reason"],
)
PIN_DRIFT = Counter(
    "bastion_pin_drift",
    "Definitions an upstream listed that drifted from their pins, by server, kind (tool, prompt, "
    "resource_template), reason (new, changed, renamed, removed, readded_changed) and verdict (quarantined, "
    "flagged, absent).",
    ["server", "kind", "reason", "verdict"],
)
PIN_QUARANTINED = Gauge(
    "bastion_pin_quarantined",
    "Definitions this executor holds quarantined (neither listed nor callable) until a person decides, by server.",
    ["server"],
)
GUARDRAIL_DECISIONS = Counter(
    "bastion_guardrail_decisions",
    "Guardrail rules that fired, by rule, action (block, redact, warn, log) and where (arguments, result, definition).",
    ["rule", "action", "where"],
)


METHODS = frozenset(
    {
        "initialize", "ping", "server/discover", "tools/list", "tools/call", "prompts/list", "prompts/get",
        "resources/list", "resources/templates/list", "resources/read", "resources/subscribe",
        "resources/unsubscribe", "completion/complete", "logging/setLevel", "subscriptions/listen",
    }
)  # fmt: skip
"""MCP methods counted under their own name; any other (clients choose them) counts as "other"."""


_MOST_CHILDREN = 4096
"""Labelled children `child` keeps; past this, each sample looks its labels up again (still counted)."""

CHILDREN: dict[tuple[Any, ...], Any] = {}
"""(metric, *label values) -> its child, filled by `child`; read it directly where a call counts."""


def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once per label tuple.

    `labels()` validates its values and takes a lock on every call (~5 µs); a cached child records the
    same sample into the same series. Bounded: label values are closed sets here, but a cache never
    grows without end."""
    key = (metric, *labels)
    found = CHILDREN.get(key)
    if found is None:
        found = metric.labels(*labels)
        if len(CHILDREN) < _MOST_CHILDREN:
            CHILDREN[key] = found
    return found


_series: dict[tuple[str, str, str], Any] = {}
"""(service, method, outcome) -> its histogram child: `labels()` validates and looks up
its labels under a lock on every call, once per series is enough (a few hundred series at most:
methods and outcomes are closed sets)."""


def observe(service: str, method: str, outcome: str, seconds: float) -> None:
    """Count one request and its latency (`method` outside `METHODS` counts as "other")."""
    if method not in METHODS:
        method = "other"
    key = (service, method, outcome)
    series = _series.get(key)
    if series is None:
        series = _series[key] = REQUEST_SECONDS.labels(*key)
    series.observe(seconds)  # counts the request too (`_RequestCounts`)


@dataclass(frozen=True)
class Sample:
    """One gauge value read at scrape time: metric name, help, label names and values, value."""

    name: str
    documentation: str
    labels: tuple[tuple[str, str], ...]
    value: float


class StateCollector:
    """Gauges computed from a service's live state when scraped (`read` returns the samples).

    Registered on `start()` and unregistered on `stop()`, so a stopped service stops reporting.
    Every live one feeds a single process-wide collector (`_STATE`): services side by side in one
    process (policy and executor both report NATS lag) would otherwise clash on metric names."""

    def __init__(self, read: Callable[[], Iterable[Sample]]) -> None:
        self.read = read

    def register(self) -> StateCollector:
        _STATE.add(self)
        return self

    def unregister(self) -> None:
        _STATE.discard(self)


class _LiveState(Collector):
    """The one registered collector: the samples of every registered `StateCollector`, by family."""

    def __init__(self) -> None:
        self._sources: set[StateCollector] = set()
        self._lock = threading.Lock()

    def add(self, source: StateCollector) -> None:
        with self._lock:
            self._sources.add(source)

    def discard(self, source: StateCollector) -> None:
        with self._lock:
            self._sources.discard(source)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # names vary with the live services; none to reserve up front

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            sources = list(self._sources)
        families: dict[str, GaugeMetricFamily] = {}
        for source in sources:
            for sample in source.read():
                family = families.get(sample.name)
                if family is None:
                    names = [name for name, _ in sample.labels]
                    family = families[sample.name] = GaugeMetricFamily(sample.name, sample.documentation, labels=names)
                family.add_metric([value for _, value in sample.labels], sample.value)
        yield from families.values()


_STATE = _LiveState()
REGISTRY.register(_STATE)


def subscription_lag(service: str, nc: Any) -> Iterator[Sample]:
    """Messages NATS delivered to `nc` that its handlers have not taken yet, per subscribed subject.

    (A core-NATS consumer's lag: it grows when a service cannot keep up)."""
    # nats-py keeps its subscriptions in a private map and offers no public way to list them
    subs = getattr(nc, "_subs", {})
    for sub in list(subs.values()):
        if sub.subject.startswith("_INBOX"):
            continue  # reply inboxes: their lag is a waiting caller's, not a consumer's
        yield Sample(
            "bastion_nats_pending_messages",
            "Messages delivered to a service's NATS subscription and not yet handled, by service and subject.",
            (("service", service), ("subject", sub.subject)),
            float(sub.pending_msgs),
        )


@dataclass
class MetricsServer:
    """A running `/metrics` endpoint (`serve`); `port` is the bound one."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread
    _users: int = 1

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving, once every service that asked for this endpoint has closed it."""
        self._users -= 1
        if self._users > 0:
            return
        _SERVED.pop((self.host, self.port), None)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


_SERVED: dict[tuple[str, int], MetricsServer] = {}


def serve(host: str, port: int) -> MetricsServer:
    """Serve the process's metrics at `http://host:port/metrics` in a daemon thread (port 0: a free one).

    Services sharing a process (`cli.colocated`) that ask for the same address share one
    endpoint: the registry is the process's anyway, and a deployment's shared settings give every
    service the same `BASTION_METRICS_PORT`."""
    if port and (served := _SERVED.get((host, port))) is not None:
        served._users += 1
        return served
    server, thread = start_http_server(port, addr=host)
    made = MetricsServer(host, server.server_address[1], server, thread)
    _SERVED[(host, made.port)] = made
    return made
