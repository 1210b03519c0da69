"""The writer's pure steps: which messages are dead-lettered, and how retries are paced."""

from __future__ import annotations

import pytest

from libs.common.messages import AuditEvent
from services.audit.batch import Backoff, decode, split
from services.audit.errors import BadEvent
from services.audit.schema import COLUMNS

pytestmark = pytest.mark.unit


def _payload(**fields: object) -> bytes:
    return AuditEvent.model_validate({"status": "ok", "latency_ms": 1.0} | fields).model_dump_json().encode()


def test_decode_gives_a_row_in_column_order() -> None:
    row = decode(_payload(event_id="e1", tool="echo"))
    assert row[COLUMNS.index("event_id")] == "e1" and row[COLUMNS.index("tool")] == "echo"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not an AuditEvent"),
        (b"\xff\xfe", "not an AuditEvent"),
        (b"[1, 2]", "not an AuditEvent"),
        (b'{"latency_ms": 1}', "status"),
        (_payload().replace(b'"ok"', b'"maybe"'), "status"),
        (_payload(ts=1e13), "DateTime64"),
    ],
)
def test_decode_rejects_what_can_never_be_a_row(payload: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=reason):
        decode(payload)


def test_unknown_fields_from_a_newer_producer_are_ignored_not_rejected() -> None:
    assert decode(_payload()[:-1] + b', "tokens": 12}')


def test_split_keeps_batch_positions_of_good_and_bad() -> None:
    result = split([_payload(event_id="a"), b"junk", _payload(event_id="b"), b"{}"])
    assert result.good == [0, 2]
    assert [row[COLUMNS.index("event_id")] for row in result.rows] == ["a", "b"]
    assert [index for index, _ in result.bad] == [1, 3]


def test_backoff_grows_to_its_cap_and_resets_after_a_success() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_batch_message_yields_every_event_or_none():
    from libs.common.messages import AuditBatch, AuditEvent
    from services.audit.batch import decode_many

    events = [AuditEvent(event_id=f"e{i}", status="ok", latency_ms=1.0) for i in range(3)]
    rows = decode_many(AuditBatch(events=events).model_dump_json().encode())
    assert len(rows) == 3
    broken = AuditBatch(events=events).model_dump_json().replace('"status":"ok"', '"status":"weird"', 1).encode()
    result = split([broken, AuditBatch(events=events[:1]).model_dump_json().encode()])
    assert result.good == [1] and len(result.rows) == 1
    assert result.bad and result.bad[0][0] == 0 and "AuditBatch" in result.bad[0][1]
