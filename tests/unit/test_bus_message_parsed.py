"""`BusMessage.parsed`: how every replica's listener to a broadcast cancel reads what arrives. A
publish that is not the message (garbage, a missing field, another message) is None, never an
exception that would end the listener."""

from __future__ import annotations

import pytest

from libs.common.contracts.gateway_tasks import CancelTask
from libs.common.contracts.messages_routed import CancelCall, CancelExecution

pytestmark = pytest.mark.unit


def test_a_cancel_reads_back_as_itself() -> None:
    sent = CancelCall(key_id="k1", session="s1", request_id="7")
    assert CancelCall.parsed(sent.model_dump_json().encode()) == sent


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"v": 1}', b'{"id": 5}', CancelTask(record="a.b").model_dump_json().encode()],
    ids=["empty", "not-json", "a-list", "no-id", "id-not-a-string", "another-message"],
)
def test_what_is_not_the_message_is_none(data: bytes) -> None:
    assert CancelExecution.parsed(data) is None
