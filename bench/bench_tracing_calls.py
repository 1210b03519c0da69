"""CPU of the tracing call sites of one `tools/call`, in one process: what tracing adds to the request
path itself, apart from the noise of a shared machine (`bench/bench_observability_cost.py` measures
whole stacks).

    .venv/bin/python bench/bench_tracing_calls.py

One call runs what the services run for it: ingress's SERVER span from the agent's headers and its
`traceparent` into the NATS request, policy's span continuing it and its header to the executor,
the executor's span, its CLIENT span to the upstream and the `_meta.traceparent` it sends there. Off,
then on with 10 % and 100 % of traces recorded; spans go to a batch processor whose exporter keeps
nothing (the OTLP encoding and HTTP post of recorded spans are not in these numbers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from libs.common.runtime import tracing

CALLS = 20_000


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def one_call() -> None:
    agent = {"content-type": "application/json"}
    with tracing.server_span("ingress", "POST /mcp", agent) as span:
        tracing.trace_id(span)  # the audit event's trace id
        to_policy: dict[str, str] = {}
        tracing.inject(to_policy)

        async def policy() -> None:
            to_executor: dict[str, str] = {}
            tracing.inject(to_executor)

            async def executor() -> None:
                with tracing.client_span("executor", "upstream echo tools/call"):
                    tracing.with_traceparent({"progressToken": 1})

            await tracing.traced(executor(), "executor", "executor bastion.exec.call", carrier=to_executor)

        await tracing.traced(policy(), "policy", "policy tools/call", carrier=to_policy)


async def measure() -> float:
    for _ in range(500):
        await one_call()
    started = time.process_time()
    for _ in range(CALLS):
        await one_call()
    return (time.process_time() - started) / CALLS * 1e6


def main() -> None:
    print(f"{'tracing':24}{'CPU µs per call':>16}")
    print(f"{'off':24}{asyncio.run(measure()):16.1f}")
    for ratio in (0.1, 1.0):
        processor = BatchSpanProcessor(_Discard(), max_queue_size=8 * CALLS)  # drops nothing: every span is paid
        tracing.configure("bench", processor=processor, sample_ratio=ratio)
        try:
            print(f"{f'on, {ratio:.0%} recorded':24}{asyncio.run(measure()):16.1f}")
        finally:
            tracing.reset()


if __name__ == "__main__":
    main()
