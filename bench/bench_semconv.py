"""CPU the OpenTelemetry convention attributes and histograms add to one `tools/call`, in one process
(`libs/common/runtime/semconv.py`): what ingress and the executor now do per call beyond what they did.

    .venv/bin/python bench/bench_semconv.py

Off: tracing off, only the two histogram samples (ingress's `mcp.server.operation.duration`, the
executor's `mcp.client.operation.duration`), which are recorded whatever the tracing setting. On:
tracing on and every trace recorded, the attributes built and set on the two spans (ingress SERVER,
executor CLIENT), measured against the same two spans made without attributes; spans go to a batch
processor whose exporter keeps nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from libs.common.runtime import semconv, tracing

CALLS = 50_000
PARAMS = {"name": "echo__echo", "arguments": {"text": "hello"}}
PAYLOAD = {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "hello"}]}}
AUDIT = SimpleNamespace(error_kind=None, status="ok", arguments=None, result=None)
VERSION = "2025-11-25"


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def histograms_only() -> None:
    semconv.server_finished(None, "tools/call", PARAMS, VERSION, PAYLOAD, AUDIT, 0.001, "c1")
    semconv.upstream_finished(None, "tools/call", "echo", VERSION, None, False, None, 0.001)


def bare_spans() -> None:
    with tracing.server_span("ingress", "POST /mcp", {}):
        with tracing.client_span("executor", "upstream echo tools/call"):
            pass


def convention_spans() -> None:
    name, attributes = semconv.server_started("tools/call", PARAMS, VERSION, 7, None)
    with tracing.server_span("ingress", name, {}, attributes) as server:
        up_name, up = semconv.upstream_started("tools/call", "echo", "c1", VERSION, "stdio", None)
        with tracing.client_span("executor", up_name, up) as client:
            semconv.upstream_finished(client, "tools/call", "echo", VERSION, None, False, None, 0.001)
        semconv.server_finished(server, "tools/call", PARAMS, VERSION, PAYLOAD, AUDIT, 0.001, "c1")


def per_call(work: Callable[[], None]) -> float:
    for _ in range(2000):
        work()
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(CALLS):
            work()
        best = min(best, (time.process_time() - started) / CALLS)
    return best * 1e6


def main() -> None:
    print(f"tracing off, the two histogram samples: {per_call(histograms_only):.2f} µs per call")
    tracing.configure("bench", processor=BatchSpanProcessor(_Discard()))
    try:
        bare, full = per_call(bare_spans), per_call(convention_spans)
    finally:
        tracing.reset()
    print(f"tracing on, two spans without attributes: {bare:.2f} µs per call")
    print(f"tracing on, two spans in the conventions with both histograms: {full:.2f} µs (+{full - bare:.2f})")


if __name__ == "__main__":
    main()
