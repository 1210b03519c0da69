"""`bastion up --nats-cluster 3`: the example stack on three clustered nats-servers (one machine), every
JetStream store replicated on three of them; it serves, and keeps serving through the loss of a server."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from cli.stack import nats_monitoring_url
from libs.common import subjects
from tests.support.polling import poll_until, poll_until_blocking
from tests.support.processes import assert_none_left, descendants, environ, output, stop_up, up_with_example

pytestmark = pytest.mark.e2e

DEMO = "bk_demo_local_only_change_me_0000"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cluster-up")
    marker = uuid.uuid4().hex
    proc, port, data_dir = up_with_example(
        tmp_path, marker, extra_env={"BASTION_NATS_MONITOR": "1"}, args=("--nats-cluster", "3")
    )
    yield proc, port, data_dir, tmp_path
    stop_up(proc, tmp_path)
    assert_none_left(marker)


@contextlib.asynccontextmanager
async def _client(port: int) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {DEMO}"}, timeout=60) as http:
        async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client:
            yield client


def _streams(data_dir: Path) -> dict[str, dict]:
    """Every stream as the cluster's members report it (`/jsz`): name -> its configuration and cluster."""
    found: dict[str, dict] = {}
    for member in sorted((data_dir / "nats-cluster").glob("n*")):
        url = nats_monitoring_url(member)
        if url is None:
            continue
        with contextlib.suppress(httpx.HTTPError):
            jsz = httpx.get(f"{url}/jsz", params={"accounts": 1, "streams": 1, "config": 1}, timeout=5).json()
            for account in jsz.get("account_details") or []:
                for stream in account.get("stream_detail") or []:
                    found[stream["name"]] = stream
    return found


async def test_the_stack_serves_on_three_clustered_servers(stack):
    proc, port, _, tmp_path = stack
    servers = {pid: cmd for pid, cmd in descendants(proc.pid).items() if "nats-server" in cmd}
    assert len(servers) == 3, servers
    assert [environ(pid).get("GOMAXPROCS") for pid in servers] == ["1"] * 3  # stack.nats_threads' default
    assert "a 3-server cluster, 3 replicas of every stream" in output(tmp_path)
    async with _client(port) as client:
        assert "echo__echo" in {t.name for t in (await client.list_tools()).tools}
        assert (await client.call_tool("echo__add", {"a": 20, "b": 22})).structured_content == {"result": 42}


def test_every_store_has_three_replicas(stack):
    _, _, data_dir, _ = stack
    streams = _streams(data_dir)
    assert {subjects.AUDIT_STREAM, "KV_bastion_keys", "KV_bastion_servers"} <= set(streams), sorted(streams)
    replicas = {name: stream["config"]["num_replicas"] for name, stream in streams.items()}
    assert set(replicas.values()) == {3}, replicas


async def test_it_keeps_serving_when_a_server_is_killed(stack):
    proc, port, data_dir, tmp_path = stack
    leader = _streams(data_dir)["KV_bastion_keys"]["cluster"]["leader"]  # the keys' leader: the worst one to lose
    member = data_dir / "nats-cluster" / leader
    pid = next(p for p, cmd in descendants(proc.pid).items() if "nats-server" in cmd and str(member) in cmd)
    os.kill(pid, signal.SIGKILL)
    async with _client(port) as client:

        async def answers() -> bool:
            with contextlib.suppress(Exception):
                result = await client.call_tool("echo__echo", {"text": "after"})
                return not result.is_error and result.content[0].text == "after"  # type: ignore[union-attr]
            return False

        await poll_until(answers, "a call answered with one server of three gone", within=90)
    restarted = f"nats{int(leader.removeprefix('n'))} was killed by SIGKILL"
    poll_until_blocking(lambda: restarted in output(tmp_path), "the member's restart", within=10)
