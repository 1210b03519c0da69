"""`bastion up --ingress-replicas 2` with the example as shipped (ingress co-located with the executor):
two ingress processes on the gateway's one port, sharing the stack's session secret, so a session an
agent made on one replica is served by the other without a new `initialize`, and one replica's death
leaves the port serving (docs/reliability.md, "Ingress replicas").

A kept-alive connection stays with the replica that accepted it, and `/healthz` names that replica:
the test opens connections until it holds one to each (the kernel spreads new connections among the
replicas), then initializes on one and calls on the other.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_bastion_up import DEMO
from tests.e2e.test_colocated_up import _services
from tests.support.polling import poll_until_blocking
from tests.support.processes import assert_none_left, output, stop_up, up_with_example

pytestmark = pytest.mark.e2e

MOST_CONNECTIONS = 200
"""Connections opened to find one on each replica: each lands on either, so 200 all on one is 2^-199."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, str]]:
    tmp_path = tmp_path_factory.mktemp("replicas")
    marker = uuid.uuid4().hex
    proc, port, data_dir = up_with_example(tmp_path, marker, args=("--ingress-replicas", "2"))
    poll_until_blocking(lambda: "Ctrl-C to stop" in output(tmp_path), "the whole banner", within=60)
    yield port, data_dir, marker
    stop_up(proc, tmp_path)
    assert_none_left(marker)


class Connection:
    """One kept-alive HTTP connection to the gateway's port, and the replica that accepted it."""

    def __init__(self, port: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30)
        self.replica = ""

    async def aclose(self) -> None:
        await self.http.aclose()

    async def which(self) -> str:
        answer = await self.http.get("/healthz")  # a replica still starting answers 503: not yet one to use
        self.replica = answer.json()["replica"] if answer.status_code == 200 else ""
        return self.replica

    async def rpc(self, method: str, params: dict[str, Any], session: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {DEMO}", "Accept": "application/json, text/event-stream"}
        if session is not None:
            headers |= {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if not method.startswith("notifications/"):
            message["id"] = 1
        return await self.http.post("/mcp", headers=headers, json=message)


@pytest.fixture
async def one_on_each(stack: tuple[int, Path, str]) -> AsyncIterator[dict[str, Connection]]:
    port, _, _ = stack
    held: dict[str, Connection] = {}
    opened: list[Connection] = []
    try:
        for _ in range(MOST_CONNECTIONS):
            connection = Connection(port)
            opened.append(connection)
            held.setdefault(await connection.which(), connection)
            if len(held) == 2:
                break
        assert sorted(held) == ["ingress", "ingress-2"], f"{len(opened)} connections reached only {sorted(held)}"
        yield held
    finally:
        for connection in opened:
            await connection.aclose()


def test_two_ingress_processes_serve_the_one_port(stack: tuple[int, Path, str]) -> None:
    port, data_dir, marker = stack
    services = _services(marker)
    assert len(services.get("cli.colocated executor ingress", [])) == 1, services
    assert len(services.get("services.ingress", [])) == 1, services
    assert f"ingress     2 replicas on port {port}, sessions shared" in output(data_dir.parent)
    assert (data_dir / "logs" / "ingress-2.log").exists()


async def test_a_session_made_on_one_replica_is_served_by_the_other(one_on_each: dict[str, Connection]) -> None:
    first, second = one_on_each["ingress"], one_on_each["ingress-2"]
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "replicas", "version": "1"}}
    made = await first.rpc("initialize", init)
    assert made.status_code == 200, made.text
    session = made.headers["mcp-session-id"]
    assert (await first.rpc("notifications/initialized", {}, session)).status_code == 202
    called = await second.rpc("tools/call", {"name": "echo__add", "arguments": {"a": 20, "b": 22}}, session)
    assert called.status_code == 200, called.text  # not 404: no new `initialize` is asked for
    assert called.json()["result"]["structuredContent"] == {"result": 42}
    assert (await first.which(), await second.which()) == ("ingress", "ingress-2")  # still one on each


async def test_the_port_serves_while_a_replica_is_down_and_the_restarted_one_knows_the_session(
    stack: tuple[int, Path, str], one_on_each: dict[str, Connection]
) -> None:
    port, _, marker = stack
    [lone] = _services(marker)["services.ingress"]
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "replicas", "version": "1"}}
    session = (await one_on_each["ingress"].rpc("initialize", init)).headers["mcp-session-id"]
    add = {"name": "echo__add", "arguments": {"a": 1, "b": 2}}
    os.kill(lone, signal.SIGKILL)
    async with contextlib.aclosing(Connection(port)) as any_replica:  # the survivor, or the restarted one
        assert (await any_replica.rpc("tools/call", add, session)).json()["result"]["structuredContent"] == {
            "result": 3
        }

    def back() -> bool:
        now = _services(marker).get("services.ingress", [])
        return bool(now) and now != [lone]

    poll_until_blocking(back, "the killed replica to be restarted", within=90)
    for _ in range(MOST_CONNECTIONS):
        async with contextlib.aclosing(Connection(port)) as connection:
            try:
                if await connection.which() != "ingress-2":
                    continue
            except (httpx.HTTPError, ValueError):
                continue  # the restarted replica accepts connections before it answers
            answered = await connection.rpc("tools/call", add, session)
            assert answered.status_code == 200, answered.text  # its secret is the stack's, as before
            assert answered.json()["result"]["structuredContent"] == {"result": 3}
            return
    raise AssertionError(f"no connection of {MOST_CONNECTIONS} reached the restarted replica")
