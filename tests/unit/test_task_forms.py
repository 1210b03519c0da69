"""MCP tasks in the two forms agents speak (`task_forms`), the caller binding of task records
(`gateway_tasks.task_key`), which tool a hosted-task setting names, and the ttl bounds."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.contracts.gateway_tasks import HostedTask, TaskRecord, hosted_setting, new_task_id, task_key
from services.ingress.tasks.task_forms import agent_form, created, detailed, listed, read_upstream_task
from services.ingress.tasks.task_store import TaskLimits

pytestmark = pytest.mark.unit

EXTENSION = {"io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}}


def _record(**more: Any) -> TaskRecord:
    fields = {"task_id": "t1", "key_id": "k", "server": "s", "tool": "x", "name": "s__x", "kind": "upstream"}
    return TaskRecord.model_validate({**fields, "ttl_ms": 60_000, "created_at": 0, "updated_at": 1, **more})


@pytest.mark.parametrize(
    ("version", "params", "form"),
    [
        ("2026-07-28", {"_meta": EXTENSION}, "extension"),
        ("2026-07-28", {"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}}, None),
        ("2026-07-28", {"task": {"ttl": 5}}, None),  # the extension ignores the old opt-in
        ("2025-11-25", {"task": {"ttl": 5}}, "legacy"),
        ("2025-11-25", {"task": {}}, "legacy"),
        ("2025-11-25", {"task": "yes"}, None),
        ("2025-11-25", {"_meta": EXTENSION}, None),  # the extension does not apply before 2026-07-28
    ],
)
def test_which_agents_take_a_task(version, params, form):
    assert agent_form(version, params) == form


def test_each_form_of_a_created_task():
    record = _record(status_message="on it")
    legacy = created(record, "legacy")
    assert legacy == {
        "task": {
            "taskId": "t1",
            "status": "working",
            "statusMessage": "on it",
            "createdAt": "1970-01-01T00:00:00Z",
            "lastUpdatedAt": "1970-01-01T00:00:01Z",
            "ttl": 60_000,
            "pollInterval": 1000,
        }
    }
    modern = created(record, "extension")
    assert modern["resultType"] == "task" and modern["ttlMs"] == 60_000 and modern["pollIntervalMs"] == 1000
    assert "ttl" not in modern and "task" not in modern


def test_the_extension_inlines_a_finished_tasks_result_or_error():
    done = _record(status="completed")
    assert detailed(done, "extension", {"content": []}, None)["result"] == {"content": []}
    assert "result" not in detailed(done, "legacy", {"content": []}, None)  # 2025-11-25: tasks/result
    failed = detailed(_record(status="failed"), "extension", None, {"code": -32000, "message": "boom"})
    assert failed["error"] == {"code": -32000, "message": "boom"}
    assert "result" not in detailed(_record(), "extension", {"content": []}, None)  # still working


def test_a_list_names_only_the_records_it_is_given():
    assert [t["taskId"] for t in listed([_record(task_id="a"), _record(task_id="b")])["tasks"]] == ["a", "b"]


@pytest.mark.parametrize(
    ("answer", "task_id"),
    [
        ({"task": {"taskId": "u1", "status": "working"}}, "u1"),
        ({"taskId": "u2", "status": "completed", "ttl": 5}, "u2"),
        ({"content": [{"type": "text", "text": "plain"}]}, None),
        ({"task": {"taskId": "u3", "status": "sleeping"}}, None),
        ({"task": {"taskId": 7, "status": "working"}}, None),
        (["not", "a", "result"], None),
    ],
)
def test_an_upstreams_task_is_read_only_from_a_task(answer, task_id):
    task = read_upstream_task(answer)
    assert (task["taskId"] if task else None) == task_id


def test_a_task_record_is_found_only_under_its_callers_key():
    task_id = new_task_id()
    assert len(task_id) == 32 and task_id != new_task_id()
    mine, theirs = task_key("key-a", task_id), task_key("key-b", task_id)
    assert mine != theirs and mine.split(".")[0] != theirs.split(".")[0]
    # any text an agent sends is a valid KV key: no wildcard or separator reaches the bucket
    for hostile in ("*", ">", "a.b", "../x", " ", "\x00"):
        prefix, digest = task_key("key-a", hostile).split(".")
        assert digest.isalnum() and prefix.isalnum()


def test_the_most_specific_hosted_setting_wins():
    settings = {"*": HostedTask(after_ms=1), "render_*": HostedTask(after_ms=2), "render_pdf": HostedTask(after_ms=3)}
    assert hosted_setting(settings, "render_pdf") == HostedTask(after_ms=3)
    assert hosted_setting(settings, "render_png") == HostedTask(after_ms=2)
    assert hosted_setting(settings, "other") == HostedTask(after_ms=1)
    assert hosted_setting({"render_*": HostedTask()}, "other") is None


@pytest.mark.parametrize(
    ("asked", "granted"), [(None, 3_600_000), (10**12, 86_400_000), (1, 1000), (5000, 5000), (True, 3_600_000)]
)
def test_ttl_bounds(asked, granted):
    assert TaskLimits().ttl(asked) == granted
