"""An unsampled request is passed through, not continued: no span anywhere, the same trace context
to the next hop and the upstream, and the audit event still names its trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs.common.runtime import tracing

pytestmark = pytest.mark.unit

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UNSAMPLED = f"00-{TRACE}-00f067aa0ba902b7-00"
SAMPLED = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every new trace recorded: only a followed "not recorded" decision records nothing."""
    exporter = InMemorySpanExporter()
    assert tracing.configure("test", processor=SimpleSpanProcessor(exporter), sample_ratio=1.0)
    yield exporter
    tracing.reset()


def test_an_unsampled_request_makes_no_span_and_passes_its_context_on(spans: InMemorySpanExporter) -> None:
    incoming = {"traceparent": UNSAMPLED, "tracestate": "vendor=1"}
    with tracing.server_span("policy", "policy tools/call", incoming) as current:
        assert current is None and tracing.trace_id(current) == TRACE
        onward: dict[str, str] = {}
        tracing.inject(onward)
        with tracing.client_span("executor", "upstream echo tools/call"):  # no trace of its own either
            meta = tracing.with_traceparent({"progressToken": 1})
    assert onward == incoming
    assert meta == {"progressToken": 1, "traceparent": UNSAMPLED, "tracestate": "vendor=1"}
    assert spans.get_finished_spans() == ()
    after: dict[str, str] = {}
    tracing.inject(after)
    assert after == {}, "the passed-through context ends with its request"


async def test_a_passed_through_task_keeps_its_context_to_the_end(spans: InMemorySpanExporter) -> None:
    async def work() -> dict[str, str]:
        headers: dict[str, str] = {}
        tracing.inject(headers)
        return headers

    assert await tracing.traced(work(), "executor", "executor call", carrier={"traceparent": UNSAMPLED}) == {
        "traceparent": UNSAMPLED
    }
    assert spans.get_finished_spans() == ()


def test_a_sampled_request_inside_a_passed_through_one_is_continued(spans: InMemorySpanExporter) -> None:
    with tracing.server_span("ingress", "POST /mcp", {"traceparent": UNSAMPLED}):
        with tracing.server_span("policy", "policy tools/call", {"traceparent": SAMPLED}) as current:
            assert current is not None
            onward: dict[str, str] = {}
            tracing.inject(onward)
    [recorded] = spans.get_finished_spans()
    assert recorded.name == "policy tools/call" and format(recorded.context.trace_id, "032x") == TRACE
    assert onward["traceparent"].endswith(f"{recorded.context.span_id:016x}-01")


@pytest.mark.parametrize(
    "header",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",  # flags not hex
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_00",  # not the W3C shape
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-000",  # a character too many
    ],
)
def test_a_malformed_traceparent_is_not_passed_on(spans: InMemorySpanExporter, header: str) -> None:
    """Only a well-formed "not recorded" decision is followed; otherwise a trace of our own starts."""
    with tracing.server_span("ingress", "POST /mcp", {"traceparent": header}) as current:
        onward: dict[str, str] = {}
        tracing.inject(onward)
    assert current is not None and onward["traceparent"] != header
    assert len(spans.get_finished_spans()) == 1
