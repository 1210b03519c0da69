"""Metrics and tracing seen from outside: `/metrics` scraped over HTTP from every service after real
calls through the gateway, and one OpenTelemetry trace from the agent's `traceparent` through
ingress, policy and executor to the upstream's `_meta`, collected in memory."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx2
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from libs.common.runtime import tracing
from tests.support.gateway import ADMIN_KEY, READONLY_KEY, Gateway, running_gateway
from tests.support.metrics import Series, moved, scrape, value
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

TRACED = str(Path(__file__).resolve().parents[1] / "support" / "traced_server.py")
TRACED_ONLY = {
    "mcpServers": {"traced": {"command": sys.executable, "args": [TRACED]}},
    "keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["*"]}],
}
"""The tracing tests' config: they call the traced server alone."""


def _text(result: object) -> str:
    return "".join(getattr(block, "text", "") for block in getattr(result, "content", []))


async def _calls(gateway: Gateway) -> None:
    """Three answered calls (one a repeat, sent on policy's grant), one tool error, one call policy refuses."""
    async with gateway.client(ADMIN_KEY) as client:
        assert _text(await client.call_tool("echo__echo", {"text": "a"})) == "a"
        assert _text(await client.call_tool("echo__add", {"a": 1, "b": 2})) == "3"
        assert _text(await client.call_tool("echo__add", {"a": 2, "b": 2})) == "4"
        assert (await client.call_tool("echo__fail", {"message": "boom"})).is_error
    async with gateway.client(READONLY_KEY) as client:
        with pytest.raises(Exception, match="not allowed"):
            await client.call_tool("echo__add", {"a": 1, "b": 2})


async def test_every_service_is_scraped_over_http_and_its_counters_move_with_real_calls(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with running_gateway(nats_url, redis_url, tmp_path, metrics=True) as gateway:
        audit, policy, executor = gateway.services[:3]
        urls = {svc: s.metrics_server.url for svc, s in (("audit", audit), ("policy", policy), ("executor", executor))}
        assert gateway.ingress.metrics_server is not None
        ingress_metrics = gateway.ingress.metrics_server.url
        # never on the public port, whatever the credential: metrics name servers and error rates
        async with httpx2.AsyncClient(timeout=10) as http:
            public = gateway.url.removesuffix("/mcp") + "/metrics"
            agent = {"Authorization": f"Bearer {ADMIN_KEY}"}  # an agent's key, even one granted every tool
            assert (await http.get(public)).status_code == 404
            assert (await http.get(public, headers=agent)).status_code == 404
        before = {svc: await scrape(url) for svc, url in urls.items()}
        before["ingress"] = await scrape(ingress_metrics)
        await _calls(gateway)

        after_ingress = await scrape(ingress_metrics)
        call = {"service": "ingress", "method": "tools/call"}
        assert moved(before["ingress"], after_ingress, "bastion_requests_total", **call, outcome="ok") == 3
        assert moved(before["ingress"], after_ingress, "bastion_ingress_routed_sends_total", route="policy") == 4
        assert moved(before["ingress"], after_ingress, "bastion_ingress_routed_sends_total", route="granted") == 1
        assert moved(before["ingress"], after_ingress, "bastion_requests_total", **call, outcome="tool_error") == 1
        assert moved(before["ingress"], after_ingress, "bastion_requests_total", **call, outcome="forbidden") == 1
        # the histogram counts the same requests, and its +Inf bucket holds all of them
        for outcome, n in (("ok", 3), ("tool_error", 1), ("forbidden", 1)):
            labels = {**call, "outcome": outcome}
            assert moved(before["ingress"], after_ingress, "bastion_request_seconds_count", **labels) == n
            assert moved(before["ingress"], after_ingress, "bastion_request_seconds_bucket", **labels, le="+Inf") == n
            assert moved(before["ingress"], after_ingress, "bastion_request_seconds_sum", **labels) > 0

        after_policy = await scrape(urls["policy"])
        assert moved(before["policy"], after_policy, "bastion_policy_refusals_total", reason="forbidden") == 1
        pol = {"service": "policy", "method": "tools/call"}
        assert moved(before["policy"], after_policy, "bastion_requests_total", **pol, outcome="allowed") == 3
        assert moved(before["policy"], after_policy, "bastion_requests_total", **pol, outcome="forbidden") == 1

        after_executor = await scrape(urls["executor"])
        ex = {"service": "executor", "method": "tools/call"}
        assert moved(before["executor"], after_executor, "bastion_requests_total", **ex, outcome="ok") == 3
        assert moved(before["executor"], after_executor, "bastion_requests_total", **ex, outcome="tool_error") == 1
        for server in ("echo", "notes"):
            assert value(after_executor, "bastion_upstream_up", server=server) == 1
            assert value(after_executor, "bastion_upstream_breaker_state", server=server, state="closed") == 1
            assert value(after_executor, "bastion_upstream_breaker_state", server=server, state="open") == 0
        # consumer lag is reported per subscribed subject (nothing waiting once the calls are answered)
        lag = [k for k in after_executor if k[0] == "bastion_nats_pending_messages" and ("service", "executor") in k[1]]
        assert lag and all(after_executor[k] == 0 for k in lag)

        # every call and refusal is one audit event; the audit service counts what it inserted
        async def inserted() -> bool:
            now = await scrape(urls["audit"])
            return moved(before["audit"], now, "bastion_audit_inserted_events_total") >= 4

        await poll_until(inserted, what="4 audit events counted as inserted", within=60)
        after_audit = await scrape(urls["audit"])
        assert moved(before["audit"], after_audit, "bastion_audit_insert_seconds_count") >= 1
        assert value(after_audit, "bastion_audit_backlog_events") == 0
        assert moved(before["audit"], after_audit, "bastion_audit_dead_letters_total") == 0

    # a stopped service stops reporting its live state (its gauges went with it)
    assert not any(name == "bastion_upstream_up" for name, _ in scrape_registry())


def scrape_registry() -> Series:
    from prometheus_client import REGISTRY, generate_latest

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
        for sample in family.samples
    }


# ------------------------------------------------------------------ tracing


AGENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
AGENT_SPAN = "00f067aa0ba902b7"


def _scope(span: ReadableSpan) -> str:
    assert span.instrumentation_scope is not None
    return span.instrumentation_scope.name


async def test_one_trace_spans_agent_ingress_policy_executor_and_upstream(
    nats_url: str, redis_url: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async with running_gateway(nats_url, redis_url, tmp_path, TRACED_ONLY) as gateway:
        spans.clear()
        headers = {"traceparent": f"00-{AGENT_TRACE}-{AGENT_SPAN}-01"}
        async with gateway.client(ADMIN_KEY, headers=headers) as client:
            upstream_saw = _text(await client.call_tool("traced__traceparent", {}))

    finished = [s for s in spans.get_finished_spans() if s.context is not None]
    by_id = {s.context.span_id: s for s in finished if s.context is not None}
    assert all(format(s.context.trace_id, "032x") == AGENT_TRACE for s in finished if s.context is not None), (
        "every span continues the agent's trace"
    )
    upstream = [s for s in finished if s.name == "tools/call traceparent" and _scope(s) == "bastion.executor"]
    assert len(upstream) == 1, [s.name for s in finished]
    # the upstream received the executor's client span as its parent, in `_meta.traceparent`
    version, trace_id, parent_id, flags = upstream_saw.split("-")
    assert (version, trace_id, flags) == ("00", AGENT_TRACE, "01")
    assert upstream[0].context is not None and parent_id == format(upstream[0].context.span_id, "016x")

    # walk up from the upstream call: executor -> policy -> ingress -> the agent's span
    chain: list[ReadableSpan] = []
    current: ReadableSpan | None = upstream[0]
    while current is not None:
        chain.append(current)
        parent = current.parent
        current = by_id.get(parent.span_id) if parent is not None else None
    scopes = [_scope(s) for s in chain]
    assert scopes[:2] == ["bastion.executor", "bastion.executor"], [s.name for s in chain]
    assert "bastion.policy" in scopes and scopes[-1] == "bastion.ingress", [s.name for s in chain]
    assert scopes.index("bastion.policy") < len(scopes) - 1
    root = chain[-1]
    assert root.name == "tools/call traced__traceparent" and root.parent is not None
    assert format(root.parent.span_id, "016x") == AGENT_SPAN and root.parent.is_remote
    kinds = {_scope(s): s.kind.name for s in chain if s is not upstream[0]}
    assert kinds["bastion.ingress"] == "SERVER" and kinds["bastion.policy"] == "SERVER"
    assert upstream[0].kind.name == "CLIENT"


async def test_tracing_off_sends_no_trace_context_upstream(nats_url: str, redis_url: str, tmp_path: Path) -> None:
    assert not tracing.enabled()
    async with running_gateway(nats_url, redis_url, tmp_path, TRACED_ONLY) as gateway:
        headers = {"traceparent": f"00-{AGENT_TRACE}-{AGENT_SPAN}-01"}
        async with gateway.client(ADMIN_KEY, headers=headers) as client:
            assert _text(await client.call_tool("traced__traceparent", {})) == ""


async def test_an_unsampled_trace_records_no_span_anywhere_but_still_tells_the_upstream(
    nats_url: str, redis_url: str, tmp_path: Path
) -> None:
    """`trace_sample_ratio` 0: ingress decides not to record, and every service after it follows the
    decision it reads in `traceparent` (sampled bit off), down to the upstream's `_meta`."""
    exporter = InMemorySpanExporter()
    assert tracing.configure("test", processor=SimpleSpanProcessor(exporter), sample_ratio=0.0)
    try:
        async with running_gateway(nats_url, redis_url, tmp_path, TRACED_ONLY) as gateway:
            async with gateway.client(ADMIN_KEY) as client:
                upstream_saw = _text(await client.call_tool("traced__traceparent", {}))
    finally:
        tracing.reset()
    assert exporter.get_finished_spans() == ()
    version, trace_id, _, flags = upstream_saw.split("-")
    assert version == "00" and int(trace_id, 16) != 0
    assert int(flags, 16) & 0x01 == 0  # the sampled bit is off (other bits, e.g. random trace id, may be set)
