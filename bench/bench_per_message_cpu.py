"""CPU of three per-message steps, in one process: the GenAI histograms of a completion, policy's read of
a completion's outcome, and the audit writer's split of a fetched batch into rows.

    .venv/bin/python bench/bench_per_message_cpu.py

Run it in two checkouts one after the other (interleaved, twice) to compare: the best of 5 repeats
is printed, which a loaded machine blurs less than a mean.
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from libs.common.audit.audit_chain import producer_id
from libs.common.contracts import subjects
from libs.common.contracts.llm import LlmOutcome, LlmRequest, Usage
from libs.common.contracts.messages import AuditBatch, AuditEvent, Caller
from libs.common.runtime import semconv
from services.audit.batch import Arrival, split
from services.policy.llm_decisions import _spent

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "answer " * 100}, "finish_reason": "stop"}],
}


def best_us(step: Callable[[], Any], number: int, per: int = 1) -> float:
    """The fastest of 5 repeats of `number` runs of `step`, in µs per one of `per` items a run handles."""
    return min(timeit.repeat(step, number=number, repeat=5)) / (number * per) * 1e6


def completion_steps() -> None:
    request = LlmRequest(caller=Caller(key_id="k1", key_name="ci"), provider="p", model="m", body={}, timeout=30)
    usage = Usage(prompt_tokens=300, completion_tokens=100, total_tokens=400)
    outcome = LlmOutcome(id=request.id, response=ANSWER, usage=usage, cost_usd=0.001, content="answer " * 100)
    reply = SimpleNamespace(data=outcome.model_dump_json().encode())
    histograms = best_us(lambda: semconv.llm_finished(None, "p", "m", None, 300, 100, "stop", 0.1), 20_000)
    read = best_us(lambda: _spent(reply, request), 20_000)  # type: ignore[arg-type]
    print(f"llm_finished (histograms):       {histograms:6.2f} µs")
    print(f"policy reads the outcome (2 KB): {read:6.2f} µs")


def audit_split() -> None:
    producer = producer_id("ingress")
    events = [
        AuditEvent(key_id="k1", key_name="ci", server="notes", tool="t", name="notes__t", status="ok", latency_ms=1.5,
                   producer=producer, seq=i + 1, arguments='{"a":1}', arguments_sha256="0" * 64, trace_id="abc")
        for i in range(100)
    ]  # fmt: skip
    payload = AuditBatch(events=events).model_dump_json().encode()
    arrivals = [Arrival(subjects.audit_subject("ingress", producer), payload)] * 10
    print(f"audit split, per event:          {best_us(lambda: split(arrivals), 20, per=1000):6.2f} µs")


if __name__ == "__main__":
    completion_steps()
    audit_split()
