"""The gateway the tasks tests share, and their task-speaking agents on the wire.

`tasks_gateway` runs the task server (`tests/support/task_server.py`) behind a gateway with small task
limits; `tasks_replica` is a second ingress replica on its bus. A module binds them under the names its
tests use: `gateway = tasks_gateway`, `second = tasks_replica`. `Legacy` and `Modern` are raw JSON-RPC
agents of the two revisions, written from the spec's schema (the official Python SDK sends no task).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp.shared.inbound import encode_header_value

from libs.common.contracts.gateway_tasks import TASKS_EXTENSION
from libs.common.settings import IngressSettings
from services.ingress.service import IngressService
from tests.support.gateway import ADMIN_KEY, ROOT, default_config, gateway_on_own_servers
from tests.support.polling import poll_until

__all__ = [
    "LIMITED_KEY",
    "MAX_TASKS",
    "MAX_TTL",
    "OTHER_KEY",
    "RELATED",
    "SECRET",
    "Legacy",
    "Modern",
    "_call",
    "_release",
    "_text",
    "tasks_gateway",
    "tasks_replica",
]

TASK_SERVER = str(ROOT / "tests" / "support" / "task_server.py")
SECRET = "tasks-shared-session-secret"
OTHER_KEY = "bk_test_tasks_other_key_000000"
LIMITED_KEY = "bk_test_tasks_limited_key_0000"
MAX_TASKS = 4
MAX_TTL = 600_000
RELATED = "io.modelcontextprotocol/related-task"


@pytest.fixture(scope="module")
async def tasks_gateway(tmp_path_factory):
    config = default_config(
        {
            "jobs": {
                "command": sys.executable,
                "args": [TASK_SERVER],
                "protocol": "legacy",
                "prices": {"report": 0.25},
                "tasks": {"slow": {"after_ms": 0, "ttl_ms": 60_000}, "release": {"after_ms": 600_000}},
            }
        }
    )
    config["keys"] += [
        {"name": "other", "key": OTHER_KEY, "tools": ["jobs/*"]},
        {"name": "limited", "key": LIMITED_KEY, "tools": ["jobs/*"]},
    ]
    options = {
        "session_secret": SECRET,
        "task_max_per_caller": MAX_TASKS,
        "task_max_ttl_ms": MAX_TTL,
        "task_max_result_bytes": 1024,
        "task_poll_interval_ms": 20,
    }
    async with gateway_on_own_servers(tmp_path_factory.mktemp("tasks"), config, **options) as gw:
        yield gw


@pytest.fixture(scope="module")
async def tasks_replica(gateway) -> AsyncIterator[IngressService]:
    """A second ingress replica on the same bus: it never saw the calls that made the tasks."""
    replica = IngressService(
        IngressSettings(
            nats_url=gateway.nats_url, port=0, instance="-b", session_secret=SECRET, task_poll_interval_ms=20
        )
    )
    await replica.start()
    await poll_until(lambda: replica.catalog.server_status("jobs") is not None, "the jobs server on replica b")
    yield replica
    await replica.stop()


class Legacy:
    """A 2025-11-25 agent on the wire: `params.task`, `tasks/get|result|list|cancel`, one session."""

    def __init__(self, http: httpx2.AsyncClient, key: str) -> None:
        self.http, self.key, self.headers = http, key, {}
        self.next_id = 1

    async def open(self, url: str) -> Legacy:
        init = {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tasks": {"list": {}, "cancel": {}}},
            "clientInfo": {"name": "raw-tasks", "version": "1"},
        }
        response = await self.http.post(url, headers=self._base(), json=self._message("initialize", init))
        assert response.status_code == 200, response.text
        self.headers = {"Mcp-Session-Id": response.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        return self

    def _base(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Accept": "application/json, text/event-stream"}

    def _message(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        return {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}

    async def rpc(self, url: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(url, headers=self._base() | self.headers, json=self._message(method, params))
        assert response.status_code == 200, response.text
        return response.json()


class Modern:
    """A 2026-07-28 agent on the wire that declares the tasks extension on each request."""

    def __init__(self, http: httpx2.AsyncClient, key: str = ADMIN_KEY, tasks: bool = True) -> None:
        self.http, self.key, self.tasks = http, key, tasks
        self.next_id = 1

    async def rpc(self, url: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        capabilities = {"extensions": {TASKS_EXTENSION: {}}} if self.tasks else {}
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        }
        headers = {
            "Authorization": f"Bearer {self.key}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": method,
        }
        if method == "tools/call":
            headers["Mcp-Name"] = params["name"]
        elif isinstance(params.get("taskId"), str):  # SEP-2663: task requests name their task for routing
            headers["Mcp-Name"] = encode_header_value(params["taskId"])
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": {**params, "_meta": meta}}
        response = await self.http.post(url, headers=headers, json=message)
        assert response.status_code in (200, 400, 404), response.text
        return response.json()


def _call(tool: str, job: str, **more: Any) -> dict[str, Any]:
    return {"name": f"jobs__{tool}", "arguments": {"job": job}, **more}


async def _release(url: str, http: httpx2.AsyncClient, job: str, text: str) -> None:
    answer = await Modern(http).rpc(
        url, "tools/call", {"name": "jobs__release", "arguments": {"job": job, "text": text}}
    )
    assert answer["result"]["content"][0]["text"] == f"released {job}", answer


def _text(result: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in result["content"])
