"""What the hot-path contracts cost to encode and decode: pydantic (what Bastion uses) against
msgspec structs and plain orjson dicts, for the messages one `tools/call` puts on the bus.

    .venv/bin/python bench/bench_contracts.py            # msgspec rows only if it is installed

Per call (policy forwards, the executor answers ingress directly): ingress encodes a `ToolCall`
and decodes a `CallOutcome`; policy decodes the `ToolCall`; the executor decodes it and encodes
the `CallOutcome`; the audit publisher encodes an `AuditEvent`. This is a script, not a test.
"""

import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from libs.common.contracts.messages import AuditEvent, Caller, CallOutcome, ToolCall

try:
    import msgspec
except ImportError:  # optional: only for the comparison
    msgspec = None

ROUNDS, REPEAT = 20_000, 5


def timed(fn: Callable[[], Any]) -> float:
    """Best-of-`REPEAT` median µs per call of `fn`."""
    runs = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        for _ in range(ROUNDS):
            fn()
        runs.append((time.perf_counter() - start) / ROUNDS * 1e6)
    return min(runs)


def main() -> None:
    caller = Caller(key_id="a" * 64, key_name="bench")
    call = ToolCall(
        caller=caller,
        server="echo",
        tool="echo",
        name="echo__echo",
        arguments={"text": "hello"},
        timeout=120.0,
        stream="_INBOX.ingress.abc.7",
        client=["sampling"],
    )
    result = {"content": [{"type": "text", "text": "hello"}], "isError": False}
    outcome = CallOutcome(id=call.id, result=result, decided_by="executor", upstream_ms=1.2, execution="ran")
    event = AuditEvent(
        key_id=caller.key_id,
        key_name="bench",
        server="echo",
        tool="echo",
        name="echo__echo",
        status="ok",
        latency_ms=3.2,
        upstream_ms=1.2,
        request_bytes=120,
        execution="ran",
    )
    call_json, outcome_json = call.model_dump_json().encode(), outcome.model_dump_json().encode()
    call_dict, outcome_dict = orjson.loads(call_json), orjson.loads(outcome_json)

    rows: list[tuple[str, str, float]] = [
        ("ToolCall encode", "pydantic", timed(lambda: call.model_dump_json().encode())),
        ("ToolCall encode", "orjson dict", timed(lambda: orjson.dumps(call_dict))),
        ("ToolCall decode", "pydantic", timed(lambda: ToolCall.model_validate_json(call_json))),
        ("ToolCall decode", "orjson dict", timed(lambda: orjson.loads(call_json))),
        ("CallOutcome encode", "pydantic", timed(lambda: outcome.model_dump_json().encode())),
        ("CallOutcome encode", "orjson dict", timed(lambda: orjson.dumps(outcome_dict))),
        ("CallOutcome decode", "pydantic", timed(lambda: CallOutcome.model_validate_json(outcome_json))),
        ("CallOutcome decode", "orjson dict", timed(lambda: orjson.loads(outcome_json))),
        ("AuditEvent encode", "pydantic", timed(lambda: event.model_dump_json().encode())),
    ]
    if msgspec is not None:

        class MCaller(msgspec.Struct):
            key_id: str
            key_name: str

        class MToolCall(msgspec.Struct, omit_defaults=True):
            caller: MCaller
            server: str
            tool: str
            name: str
            timeout: float
            id: str = ""
            v: int = 1
            trace_id: str | None = None
            arguments: dict[str, Any] = {}
            meta: dict[str, Any] | None = None
            include_servers: list[str] | None = None
            include_tools: list[str] | None = None
            sent_at: float = 0.0
            deadline: float = 0.0
            stream: str | None = None
            client: list[str] = []
            log_level: str | None = None
            extra: dict[str, Any] | None = None
            arguments_blob: str | None = None

        class MOutcome(msgspec.Struct, omit_defaults=True):
            id: str
            decided_by: str
            v: int = 1
            result: dict[str, Any] | None = None
            error: dict[str, Any] | None = None
            upstream_ms: float | None = None
            events: int = 0
            execution: str | None = None
            result_blob: str | None = None

        encoder = msgspec.json.Encoder()
        call_decoder, outcome_decoder = msgspec.json.Decoder(MToolCall), msgspec.json.Decoder(MOutcome)
        mcall, moutcome = call_decoder.decode(call_json), outcome_decoder.decode(outcome_json)
        rows += [
            ("ToolCall encode", "msgspec", timed(lambda: encoder.encode(mcall))),
            ("ToolCall decode", "msgspec", timed(lambda: call_decoder.decode(call_json))),
            ("CallOutcome encode", "msgspec", timed(lambda: encoder.encode(moutcome))),
            ("CallOutcome decode", "msgspec", timed(lambda: outcome_decoder.decode(outcome_json))),
        ]
    print(f"{'message':22} {'library':12} {'µs':>6}")
    for what, library, us in sorted(rows, key=lambda row: (row[0], row[2])):
        print(f"{what:22} {library:12} {us:6.2f}")
    per_call = {
        library: statistics.fsum(
            us * times
            for what, lib, us in rows
            if lib == library
            for name, times in (
                ("ToolCall encode", 1),
                ("ToolCall decode", 2),
                ("CallOutcome encode", 1),
                ("CallOutcome decode", 1),
            )
            if what == name
        )
        for library in {lib for _, lib, _ in rows}
    }
    print(
        "per call (1 ToolCall encode, 2 decodes, 1 CallOutcome encode, 1 decode): "
        + ", ".join(f"{lib} {us:.1f} µs" for lib, us in sorted(per_call.items(), key=lambda kv: kv[1]))
    )


if __name__ == "__main__":
    main()
