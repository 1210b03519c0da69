"""The writer's pure steps: which messages are dead-lettered (not an event, or not vouched for by the
role whose subject it came on), which events are flagged, and how retries are paced."""

from __future__ import annotations

import pytest

from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditBatch, AuditEvent
from services.audit.batch import UNKNOWN_KEY, Arrival, Backoff, decode, decode_many, split
from services.audit.errors import BadEvent
from services.audit.known_keys import KnownKeys
from services.audit.schema import COLUMNS, STORED_COLUMNS

INGRESS_SUBJECT = subjects.audit_subject("ingress", "ingress-host-1-abcd")

pytestmark = pytest.mark.unit


def _payload(**fields: object) -> bytes:
    base = {"status": "ok", "latency_ms": 1.0, "producer": "ingress-host-1-abcd", "seq": 1}
    return AuditEvent.model_validate(base | fields).model_dump_json().encode()


def _arrivals(*payloads: bytes, subject: str = INGRESS_SUBJECT) -> list[Arrival]:
    return [Arrival(subject, payload) for payload in payloads]


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
    result = split(_arrivals(_payload(event_id="a"), b"junk", _payload(event_id="b"), b"{}"))
    assert result.good == [0, 2]
    assert [row[COLUMNS.index("event_id")] for row in result.rows] == ["a", "b"]
    assert [bad.index for bad in result.bad] == [1, 3]
    assert all(row[STORED_COLUMNS.index("vouched_by")] == "ingress" for row in result.rows)


@pytest.mark.parametrize(
    ("subject", "producer", "reason"),
    [
        (INGRESS_SUBJECT, "codemode-host-2-ef01", "belongs to codemode, but arrived on ingress's subject"),
        (INGRESS_SUBJECT, "made-up-chain", "belongs to made"),
        (INGRESS_SUBJECT, "", "on no hash chain"),
        (subjects.audit_subject("codemode", "x"), "ingress-host-1-abcd", "belongs to ingress, but arrived on codemode"),
        (f"{subjects.AUDIT_EVENTS}.batch", "ingress-host-1-abcd", "which no audit producer owns"),
        (subjects.audit_subject("policy", "x"), "policy-host-1-abcd", "which no audit producer owns"),
        (f"{subjects.AUDIT_EVENTS}.ingress.a.b", "ingress-host-1-abcd", "which no audit producer owns"),
    ],
)
def test_an_event_its_subjects_role_does_not_own_is_rejected(subject: str, producer: str, reason: str) -> None:
    result = split(_arrivals(_payload(event_id="e", producer=producer), subject=subject))
    assert not result.rows and not result.good
    (bad,) = result.bad
    assert reason in bad.reason, bad.reason


def test_one_stranger_rejects_its_whole_batch() -> None:
    events = [
        AuditEvent(event_id="mine", status="ok", latency_ms=1, producer="ingress-h-1-aaaa", seq=1),
        AuditEvent(event_id="theirs", status="ok", latency_ms=1, producer="codemode-h-2-bbbb", seq=7),
    ]
    result = split(_arrivals(AuditBatch(events=events).model_dump_json().encode()))
    assert not result.rows
    assert (result.bad[0].event_id, result.bad[0].producer, result.bad[0].role) == (
        "theirs",
        "codemode-h-2-bbbb",
        "ingress",
    )


def test_an_event_naming_a_key_that_does_not_exist_is_kept_and_flagged() -> None:
    known = {"real-key-id"}
    result = split(
        _arrivals(
            _payload(event_id="a", key_id="real-key-id"),
            _payload(event_id="b", key_id="invented-key-id"),
            _payload(event_id="c", key_id="user:alice"),  # an OAuth user, not a key
            _payload(event_id="d", key_id=""),  # an admin change: no key
        ),
        known.__contains__,
    )
    flags = {row[COLUMNS.index("event_id")]: row[STORED_COLUMNS.index("flags")] for row in result.rows}
    assert flags == {"a": [], "b": [UNKNOWN_KEY], "c": [], "d": []}


def test_backoff_grows_to_its_cap_and_resets_after_a_success() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_a_batch_message_yields_every_event_or_none() -> None:
    events = [
        AuditEvent(event_id=f"e{i}", status="ok", latency_ms=1.0, producer="ingress-h-1-aaaa", seq=i + 1)
        for i in range(3)
    ]
    assert len(decode_many(AuditBatch(events=events).model_dump_json().encode())) == 3
    broken = AuditBatch(events=events).model_dump_json().replace('"status":"ok"', '"status":"weird"', 1).encode()
    result = split(_arrivals(broken, AuditBatch(events=events[:1]).model_dump_json().encode()))
    assert result.good == [1] and len(result.rows) == 1
    assert result.bad and result.bad[0].index == 0 and "AuditBatch" in result.bad[0].reason


def test_the_writers_key_check_knows_keys_put_since_and_keeps_deleted_ones() -> None:
    keys = KnownKeys()
    knows = keys.knows
    keys.put("later-key", b"{}", 3)  # put after the check was handed to the writer
    keys.put("gone-key", b"{}", 4)
    keys.delete("gone-key")  # its late events were made while it existed
    result = split(
        _arrivals(
            _payload(event_id="a", key_id="later-key"),
            _payload(event_id="b", key_id="gone-key"),
            _payload(event_id="c", key_id="never-key"),
        ),
        knows,
    )
    flags = {row[COLUMNS.index("event_id")]: row[STORED_COLUMNS.index("flags")] for row in result.rows}
    assert flags == {"a": [], "b": [], "c": [UNKNOWN_KEY]}
