"""An upstream's task id in what it says about the task becomes the gateway's id, wherever it stands
in the answer, and only where it stands alone (docs/tasks.md)."""

from __future__ import annotations

import pytest

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.gateway_tasks import TaskRecord
from libs.common.contracts.messages import GatewayError
from services.ingress.tasks.upstream_task_ids import namespaced, namespaced_error

pytestmark = pytest.mark.unit

RECORD = TaskRecord(
    task_id="gw_Id-0123456789abcdefghijklmnop",
    key_id="k",
    server="jobs",
    tool="report",
    name="jobs__report",
    kind="upstream",
    upstream_task_id="42",
    ttl_ms=60_000,
)


def test_the_id_is_replaced_where_it_stands_alone() -> None:
    gw = RECORD.task_id
    assert namespaced("task 42 failed (id=42); 420 and 42-b and x42 are other things", RECORD) == (
        f"task {gw} failed (id={gw}); 420 and 42-b and x42 are other things"
    )


def test_every_string_of_an_answer_keys_included_however_deep() -> None:
    deep: object = {"42": ["task 42"]}
    for _ in range(5_000):  # deeper than Python's recursion limit
        deep = [deep]
    walked = namespaced({"content": [{"type": "text", "text": "42"}], "n": 42, "deep": deep}, RECORD)
    assert walked["n"] == 42 and walked["content"][0]["text"] == RECORD.task_id
    inner = walked["deep"]
    while isinstance(inner, list):
        inner = inner[0]
    assert inner == {RECORD.task_id: [f"task {RECORD.task_id}"]}


def test_an_error_keeps_its_kind_and_code() -> None:
    error = GatewayError(kind=ErrorKind.UPSTREAM_ERROR, message="task 42 is done", code=-32602, data={"taskId": "42"})
    named = namespaced_error(error, RECORD)
    assert (named.kind, named.code, named.message, named.data) == (
        ErrorKind.UPSTREAM_ERROR, -32602, f"task {RECORD.task_id} is done", {"taskId": RECORD.task_id}
    )  # fmt: skip
    assert error.message == "task 42 is done"  # the audit row keeps the upstream's words


def test_a_hosted_task_has_no_upstream_id_to_replace() -> None:
    hosted = RECORD.model_copy(update={"upstream_task_id": None, "kind": "hosted"})
    assert namespaced("task 42", hosted) == "task 42"
