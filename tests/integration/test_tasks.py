"""MCP tasks through the gateway (docs/tasks.md), against an upstream that really answers with tasks
(`tests/support/task_server.py`, the official SDK's low-level server, 2025-11-25 tasks), two ingress
replicas on one real NATS, and agents of both revisions on the wire: the official Python SDK
(2.3) sends no task-augmented requests and knows no tasks extension, so task-speaking agents are
raw JSON-RPC over streamable HTTP, written from the spec's schema; the agent that speaks no tasks
is the official SDK client.

A job finishes only when the test calls `release`: no test waits on a clock.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from libs.common.contracts.gateway_tasks import TASKS_EXTENSION
from libs.common.settings import IngressSettings
from services.ingress.service import IngressService
from tests.support.audit_rows import audit_rows_when
from tests.support.gateway import ADMIN_KEY
from tests.support.polling import poll_until
from tests.support.task_gateway import (
    LIMITED_KEY,
    MAX_TTL,
    OTHER_KEY,
    RELATED,
    SECRET,
    Legacy,
    Modern,
    _call,
    _release,
    _text,
    tasks_gateway,
    tasks_replica,
)
from tests.support.ts_sdk import run_ts_tasks

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]

gateway = tasks_gateway  # one gateway for the module: its tests share its tasks, keys and limits
second = tasks_replica


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as client:
        yield client


async def test_an_upstream_task_is_polled_and_cancelled_from_another_replica(gateway, second, http):
    """2025-11-25 form: the task starts on replica a; replica b polls it, fetches its result and
    cancels a second one, finding both on the bus; the upstream's own ids never reach the agent."""
    a, b = gateway.url, second.url
    agent = await Legacy(http, ADMIN_KEY).open(a)
    on_b = Legacy(http, ADMIN_KEY)
    on_b.headers = agent.headers  # the same session, any replica

    made = await agent.rpc(a, "tools/call", _call("report", "r1", task={"ttl": 60_000}))
    task = made["result"]["task"]
    task_id = task["taskId"]
    assert task["status"] == "working" and task["ttl"] == 60_000 and "content" not in made["result"]
    assert (await on_b.rpc(b, "tasks/get", {"taskId": task_id}))["result"]["status"] == "working"

    await _release(a, http, "r1", "done")

    async def finished() -> dict[str, Any] | None:
        got = (await on_b.rpc(b, "tasks/get", {"taskId": task_id}))["result"]
        return got if got["status"] == "completed" else None

    assert (await poll_until(finished, "the task completed, seen from replica b"))["taskId"] == task_id
    result = (await on_b.rpc(b, "tasks/result", {"taskId": task_id}))["result"]
    assert _text(result) == "report r1: done"
    assert result["_meta"][RELATED] == {"taskId": task_id}

    doomed = (await agent.rpc(a, "tools/call", _call("report", "r2", task={})))["result"]["task"]["taskId"]
    cancelled = (await on_b.rpc(b, "tasks/cancel", {"taskId": doomed}))["result"]
    assert cancelled["taskId"] == doomed and cancelled["status"] == "cancelled"
    assert (await agent.rpc(a, "tasks/get", {"taskId": doomed}))["result"]["status"] == "cancelled"
    upstream = await Modern(http).rpc(a, "tools/call", {"name": "jobs__cancelled", "arguments": {}})
    assert "r2" in _text(upstream["result"]).split(",")  # the upstream really stopped the job

    listed = (await on_b.rpc(b, "tasks/list", {}))["result"]["tasks"]
    assert {task_id, doomed} <= {t["taskId"] for t in listed}


async def test_the_tasks_extension_form_from_two_replicas(gateway, second, http):
    """2026-07-28 extension: `resultType: task`, `tasks/get` inlines the result, cancel is an ack;
    the extension has no `tasks/result` nor `tasks/list`."""
    agent = Modern(http)
    made = (await agent.rpc(gateway.url, "tools/call", _call("report", "m1")))["result"]
    assert made["resultType"] == "task" and made["status"] == "working" and "ttlMs" in made and "pollIntervalMs" in made
    task_id = made["taskId"]
    got = (await agent.rpc(second.url, "tasks/get", {"taskId": task_id}))["result"]
    assert got["status"] == "working" and got["resultType"] == "complete"

    await _release(second.url, http, "m1", "modern")

    async def finished() -> dict[str, Any] | None:
        got = (await agent.rpc(second.url, "tasks/get", {"taskId": task_id}))["result"]
        return got if got["status"] == "completed" else None

    done = await poll_until(finished, "the task completed")
    assert _text(done["result"]) == "report m1: modern"

    for method in ("tasks/result", "tasks/list"):
        refused = await agent.rpc(second.url, method, {"taskId": task_id})
        assert refused["error"]["code"] == -32601 and "extension" in refused["error"]["message"]

    other = (await agent.rpc(gateway.url, "tools/call", _call("report", "m2")))["result"]["taskId"]
    ack = (await agent.rpc(second.url, "tasks/cancel", {"taskId": other}))["result"]
    assert {k: v for k, v in ack.items() if k != "_meta"} == {"resultType": "complete"}
    assert (await agent.rpc(gateway.url, "tasks/get", {"taskId": other}))["result"]["status"] == "cancelled"


async def test_another_caller_can_never_reach_a_task(gateway, second, http):
    """The attack: a second key, granted the very same tool, replays a task id it learned. Every task
    method answers as for an id that never existed, its list shows none of them, and the owner's task
    is untouched."""
    owner = Modern(http)
    task_id = (await owner.rpc(gateway.url, "tools/call", _call("report", "victim")))["result"]["taskId"]
    thief = Modern(http, OTHER_KEY)
    for url in (gateway.url, second.url):
        for method in ("tasks/get", "tasks/cancel", "tasks/update"):
            answer = await thief.rpc(url, method, {"taskId": task_id, "inputResponses": {}})
            assert "result" not in answer and answer["error"]["code"] == -32602
            assert "Unknown task" in answer["error"]["message"], answer
    legacy_thief = await Legacy(http, OTHER_KEY).open(second.url)
    assert "result" not in await legacy_thief.rpc(second.url, "tasks/result", {"taskId": task_id})
    assert (await legacy_thief.rpc(second.url, "tasks/list", {}))["result"]["tasks"] == []
    # nor does a forged id that names the owner's record some other way reach it
    for forged in (task_id + " ", task_id.upper(), f"../{task_id}", "*", ">"):
        assert "error" in await thief.rpc(gateway.url, "tasks/get", {"taskId": forged})
    assert (await owner.rpc(second.url, "tasks/get", {"taskId": task_id}))["result"]["status"] == "working"
    await _release(gateway.url, http, "victim", "safe")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_agent_that_speaks_no_tasks_gets_the_plain_result(gateway, http, mode):
    """`batch` runs only as a task upstream; the official SDK client (which sends no task) gets the
    tool's result: the gateway made the task and polled it to its end."""
    job = f"plain-{mode}"
    async with gateway.client(ADMIN_KEY, mode=mode) as client:
        call = asyncio.create_task(client.call_tool("jobs__batch", {"job": job}))
        await _release(gateway.url, http, job, "waited for")
        result = await call
    assert not result.is_error and result.content[0].text == f"batch {job}: waited for"


async def test_a_gateway_hosted_task_end_to_end(gateway, second, http):
    """`slow` takes no task upstream; configured `tasks: {slow: {after_ms: 0}}` it becomes the
    gateway's own task, polled and fetched on the other replica, and cancelled there."""
    agent = Modern(http)
    made = (await agent.rpc(gateway.url, "tools/call", _call("slow", "h1")))["result"]
    assert made["resultType"] == "task" and made["ttlMs"] == 60_000
    task_id = made["taskId"]
    assert (await agent.rpc(second.url, "tasks/get", {"taskId": task_id}))["result"]["status"] == "working"
    await _release(second.url, http, "h1", "hosted")

    async def finished() -> dict[str, Any] | None:
        got = (await agent.rpc(second.url, "tasks/get", {"taskId": task_id}))["result"]
        return got if got["status"] != "working" else None

    done = await poll_until(finished, "the hosted task finished")
    assert done["status"] == "completed" and _text(done["result"]) == "slow h1: hosted"

    legacy = await Legacy(http, ADMIN_KEY).open(gateway.url)
    blocked = (await legacy.rpc(gateway.url, "tools/call", _call("slow", "h2", task={})))["result"]["task"]
    fetch = asyncio.create_task(legacy.rpc(second.url, "tasks/result", {"taskId": blocked["taskId"]}))
    await _release(gateway.url, http, "h2", "blocking")
    result = (await fetch)["result"]  # 2025-11-25 tasks/result waits for the end
    assert _text(result) == "slow h2: blocking" and result["_meta"][RELATED] == {"taskId": blocked["taskId"]}

    doomed = (await agent.rpc(gateway.url, "tools/call", _call("slow", "h3")))["result"]["taskId"]
    assert "error" not in await agent.rpc(second.url, "tasks/cancel", {"taskId": doomed})

    async def cancelled() -> bool:
        got = (await agent.rpc(second.url, "tasks/get", {"taskId": doomed}))["result"]
        return got["status"] == "cancelled"

    await poll_until(cancelled, "the hosted task cancelled from the other replica")

    async def stopped_upstream() -> bool:
        answer = await agent.rpc(gateway.url, "tools/call", {"name": "jobs__cancelled", "arguments": {}})
        return "h3" in _text(answer["result"]).split(",")

    await poll_until(stopped_upstream, "the upstream call of the cancelled hosted task stopped")


async def test_a_quick_hosted_call_is_a_plain_answer(gateway, http):
    """`release` is hosted after 600 s: it answers long before, so even a task-speaking agent gets
    the plain result, no task."""
    answer = await Modern(http).rpc(
        gateway.url, "tools/call", {"name": "jobs__release", "arguments": {"job": "q", "text": "x"}}
    )
    assert answer["result"]["content"][0]["text"] == "released q" and answer["result"]["resultType"] == "complete"


async def test_task_limits(gateway, http):
    """The most tasks a key may hold, the ttl bounds, the size of a hosted result, a bad id: each
    refused or clamped with a message that names it."""
    agent = await Legacy(http, LIMITED_KEY).open(gateway.url)
    # The 1 s task is cancelled at once: left to expire, it would stop counting towards the limit
    # at a moment a loaded machine decides.
    tiny = (await agent.rpc(gateway.url, "tools/call", _call("report", "l1", task={"ttl": 1})))["result"]["task"]
    assert tiny["ttl"] == 1000
    assert "error" not in await agent.rpc(gateway.url, "tasks/cancel", {"taskId": tiny["taskId"]})

    async def settled() -> bool:
        got = await agent.rpc(gateway.url, "tasks/get", {"taskId": tiny["taskId"]})
        return "error" in got or got["result"]["status"] != "working"

    await poll_until(settled, "the 1 s task cancelled")
    huge = await agent.rpc(gateway.url, "tools/call", _call("report", "l0", task={"ttl": 10**12}))
    assert huge["result"]["task"]["ttl"] == MAX_TTL
    held = {"l0": huge["result"]["task"]["taskId"]}
    for job in ("l2", "l3", "l4"):
        made = await agent.rpc(gateway.url, "tools/call", _call("report", job, task={}))
        held[job] = made["result"]["task"]["taskId"]
    refused = await agent.rpc(gateway.url, "tools/call", _call("report", "l5", task={}))
    assert refused["error"]["code"] == -32052 and "BASTION_TASK_MAX_PER_CALLER" in refused["error"]["message"]
    assert "error" in await agent.rpc(gateway.url, "tools/call", _call("slow", "l6", task={}))

    bad = await agent.rpc(gateway.url, "tasks/get", {"taskId": 7})
    assert bad["error"]["code"] == -32602 and "taskId" in bad["error"]["message"]

    big = (await Modern(http).rpc(gateway.url, "tools/call", _call("slow", "big")))["result"]["taskId"]
    await _release(gateway.url, http, "big", "x" * 2000)

    async def failed() -> dict[str, Any] | None:
        got = (await Modern(http).rpc(gateway.url, "tasks/get", {"taskId": big}))["result"]
        return got if got["status"] != "working" else None

    ended = await poll_until(failed, "the oversized hosted result")
    assert ended["status"] == "failed" and "BASTION_TASK_MAX_RESULT_BYTES" in ended["error"]["message"]
    # the key's tasks end, and the gateway learns it when they are polled (a later test uses the key)
    for job, task_id in held.items():
        await _release(gateway.url, http, job, "end")

        async def completed(task_id: str = task_id) -> bool:
            got = await agent.rpc(gateway.url, "tasks/get", {"taskId": task_id})
            return got["result"]["status"] == "completed"

        await poll_until(completed, f"the task of {job} completed")


UPSTREAM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""The task server's ids (uuid4); the gateway's are 32 url-safe base64 characters."""


async def test_an_upstreams_words_about_its_task_name_the_gateways_id(gateway, second, http):
    """The upstream names its own task id in what it says about it: a failed task's status message
    and result, and the -32602 it answers to cancelling a finished task. The agent reads the
    gateway's id in their place, in both forms and on either replica, never the upstream's."""
    legacy = await Legacy(http, ADMIN_KEY).open(gateway.url)
    on_b = Legacy(http, ADMIN_KEY)
    on_b.headers = legacy.headers
    task_id = (await legacy.rpc(gateway.url, "tools/call", _call("report", "named", task={})))["result"]["task"][
        "taskId"
    ]
    await _release(gateway.url, http, "named", "fail")
    said = f"task {task_id} failed: the report job named could not finish"

    async def failed() -> dict[str, Any] | None:
        got = (await on_b.rpc(second.url, "tasks/get", {"taskId": task_id}))["result"]
        return got if got["status"] == "failed" else None

    answers = [await poll_until(failed, "the task failed, seen from replica b")]
    assert answers[0]["statusMessage"] == said
    answers.append(await on_b.rpc(second.url, "tasks/result", {"taskId": task_id}))
    assert answers[-1]["result"]["isError"] and _text(answers[-1]["result"]) == said
    answers.append(await legacy.rpc(gateway.url, "tasks/cancel", {"taskId": task_id}))
    refused = answers[-1]["error"]
    assert refused["code"] == -32602 and refused["message"].startswith(f"task {task_id} is already failed")
    assert refused["data"]["taskId"] == task_id

    modern = Modern(http)
    other = (await modern.rpc(gateway.url, "tools/call", _call("report", "named-2")))["result"]["taskId"]
    await _release(second.url, http, "named-2", "fail")

    async def inlined() -> dict[str, Any] | None:
        got = (await modern.rpc(second.url, "tasks/get", {"taskId": other}))["result"]
        return got if got["status"] == "failed" else None

    answers.append(await poll_until(inlined, "the extension-form task failed"))
    assert answers[-1]["error"]["message"] == f"task {other} failed: the report job named-2 could not finish"
    answers.append(await modern.rpc(gateway.url, "tasks/cancel", {"taskId": other}))
    assert answers[-1]["error"]["message"].startswith(f"task {other} is already failed")
    assert [UPSTREAM_ID.findall(json.dumps(answer)) for answer in answers] == [[]] * len(answers)


async def test_an_expired_task_is_gone(gateway, second, http):
    """A hosted task asked to live 1 s (the least) and never finished: its work is stopped at the ttl
    and the task then reads as unknown on every replica."""
    legacy = await Legacy(http, ADMIN_KEY).open(gateway.url)
    made = (await legacy.rpc(gateway.url, "tools/call", _call("slow", "never", task={"ttl": 1})))["result"]["task"]
    assert made["ttl"] == 1000

    async def gone() -> bool:
        answer = await legacy.rpc(second.url, "tasks/get", {"taskId": made["taskId"]})
        return "error" in answer and "expired" in answer["error"]["message"]

    await poll_until(gone, "the task expired")


async def test_a_tasks_whole_life_is_audited_under_its_call(gateway, second, http):
    """The call's row names the task; each task request (on either replica) is a `task` row whose
    parent is the call's row, naming its method; polls are not charged (they are not `tool_call`s)."""
    agent = await Legacy(http, OTHER_KEY).open(gateway.url)
    task_id = (await agent.rpc(gateway.url, "tools/call", _call("report", "audited", task={})))["result"]["task"][
        "taskId"
    ]
    await agent.rpc(second.url, "tasks/get", {"taskId": task_id})
    await _release(second.url, http, "audited", "seen")
    await agent.rpc(second.url, "tasks/result", {"taskId": task_id})

    def complete(rows: list[Any]) -> bool:
        return sum(1 for r in rows if r.kind == "task" and r.target == task_id) >= 2 and any(
            r.kind == "tool_call" and r.target == task_id for r in rows
        )

    rows = await audit_rows_when(gateway.nats_url, "other", complete)
    call = next(r for r in rows if r.kind == "tool_call" and r.target == task_id)
    life = [r for r in rows if r.kind == "task" and r.target == task_id]
    assert call.tool == "report" and call.status == "ok" and call.cost_usd == 0.25  # charged once, by its call
    assert all(r.cost_usd is None for r in life)
    assert {r.action for r in life} >= {"tasks/get", "tasks/result"}
    assert all(r.parent_id == call.event_id and r.tool == "report" for r in life)


async def test_the_gateway_says_it_speaks_tasks(gateway, http):
    """2025-11-25 agents read `capabilities.tasks` and each tool's `execution.taskSupport` (the
    upstream's own, or `optional` for a tool the gateway hosts); 2026-07-28 agents find the extension
    in `server/discover`."""
    legacy = Legacy(http, ADMIN_KEY)
    init = await http.post(
        gateway.url,
        headers=legacy._base(),
        json=legacy._message(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        ),
    )
    assert init.json()["result"]["capabilities"]["tasks"]["requests"] == {"tools": {"call": {}}}
    await legacy.open(gateway.url)
    tools = {t["name"]: t for t in (await legacy.rpc(gateway.url, "tools/list", {}))["result"]["tools"]}
    assert tools["jobs__report"]["execution"] == {"taskSupport": "optional"}
    assert tools["jobs__batch"]["execution"] == {"taskSupport": "required"}
    assert tools["jobs__slow"]["execution"] == {"taskSupport": "optional"}  # hosted by the gateway
    assert "execution" not in tools["jobs__cancelled"]
    # a task asked of a tool that takes none is an ordinary call: no upstream task slips through unbound
    plain = await legacy.rpc(gateway.url, "tools/call", {"name": "jobs__cancelled", "arguments": {}, "task": {}})
    assert "task" not in plain["result"] and "content" in plain["result"]
    discovered = await Modern(http).rpc(gateway.url, "server/discover", {})
    assert discovered["result"]["capabilities"]["extensions"] == {TASKS_EXTENSION: {}}


async def test_the_official_typescript_sdk_runs_a_task_through_the_gateway(gateway):
    """The TypeScript SDK (1.32.2) speaks 2025-11-25 tasks: its `callToolStream` gets the task, polls
    it and fetches the result through the gateway by itself; `cancelTask`, `getTask`, `listTasks`."""
    plan = {"tool": "jobs__report", "release": "jobs__release", "job": "ts1", "cancelJob": "ts2"}
    run = await run_ts_tasks(gateway.url, OTHER_KEY, plan)
    assert run["protocolVersion"] == "2025-11-25"
    assert run["types"][0] == "taskCreated" and run["types"][-1] == "result"
    assert run["result"]["content"][0]["text"] == "report ts1: from the ts sdk"
    assert run["completed"] == "completed" and run["cancelled"] == "cancelled"
    assert {run["taskId"], run["cancelId"]} <= set(run["listed"])


async def test_a_task_outlives_the_replica_that_started_it(gateway, http):
    """A third replica makes the task and stops; the task, on the bus, is finished from the first."""
    third = IngressService(IngressSettings(nats_url=gateway.nats_url, port=0, instance="-c", session_secret=SECRET))
    await third.start()
    try:
        await poll_until(lambda: third.catalog.server_status("jobs") is not None, "the jobs server on replica c")
        made = await Modern(http).rpc(third.url, "tools/call", _call("report", "orphan"))
    finally:
        await third.stop()
    task_id = made["result"]["taskId"]
    await _release(gateway.url, http, "orphan", "adopted")

    async def finished() -> dict[str, Any] | None:
        got = (await Modern(http).rpc(gateway.url, "tasks/get", {"taskId": task_id}))["result"]
        return got if got["status"] == "completed" else None

    assert _text((await poll_until(finished, "the orphaned task finished"))["result"]) == "report orphan: adopted"


async def test_task_requests_are_governed_by_the_tools_grant(gateway, http):
    """Polling goes through policy like any routed request: once the key may no longer use the tool,
    its task requests are refused (run last: it changes the keys)."""
    agent = Modern(http, LIMITED_KEY)
    made = await agent.rpc(gateway.url, "tools/call", _call("report", "governed"))
    assert "result" in made, made
    task_id = made["result"]["taskId"]
    assert (await agent.rpc(gateway.url, "tasks/get", {"taskId": task_id}))["result"]["status"] == "working"
    raw = gateway.config.model_dump(by_alias=True, exclude_unset=True, mode="json")
    for key in raw["keys"]:
        if key["name"] == "limited":
            key["tools"] = ["jobs/release"]
    await gateway.apply(raw)

    async def refused() -> dict[str, Any] | None:
        answer = await agent.rpc(gateway.url, "tasks/get", {"taskId": task_id})
        return answer.get("error")

    error = await poll_until(refused, "the task request refused once the grant is gone")
    assert error["code"] == -32050 and error["data"]["kind"] == "forbidden"
    await _release(gateway.url, http, "governed", "end")


FAKE_AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


async def test_a_tasks_result_passes_the_guardrails_like_a_call_result(gateway, http):
    """`tasks/result` is a channel the upstream writes: a credential in a task's result reaches the
    agent redacted, as it would in a plain call's (the executor's after hooks see every answer)."""
    url = gateway.url
    agent = await Legacy(http, ADMIN_KEY).open(url)
    made = await agent.rpc(url, "tools/call", _call("report", "leaky", task={"ttl": 60_000}))
    task_id = made["result"]["task"]["taskId"]
    await _release(url, http, "leaky", "leak")  # the upstream's text holds FAKE_AWS_KEY

    async def finished() -> bool:
        return (await agent.rpc(url, "tasks/get", {"taskId": task_id}))["result"]["status"] == "completed"

    await poll_until(finished, "the leaky task completed")
    result = (await agent.rpc(url, "tasks/result", {"taskId": task_id}))["result"]
    assert FAKE_AWS_KEY not in json.dumps(result), result
    assert "[REDACTED:" in _text(result) and _text(result).startswith("report leaky: the key is ")
    # the task's status is the upstream's words as well (its statusMessage repeats the result)
    status = (await agent.rpc(url, "tasks/get", {"taskId": task_id}))["result"]
    listed = (await agent.rpc(url, "tasks/list", {}))["result"]
    assert FAKE_AWS_KEY not in json.dumps([status, listed]), (status, listed)
    assert status["statusMessage"].startswith("report leaky: the key is [REDACTED:"), status
