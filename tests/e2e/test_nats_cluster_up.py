"""`bastion up --nats-cluster 3`: the example stack on three clustered nats-servers (one machine), every
JetStream store replicated on three of them; it serves, and keeps serving through the loss of a server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from cli.stack import nats_monitoring_url
from libs.common.contracts import subjects
from tests.support.call_load import CallLoad
from tests.support.polling import poll_until, poll_until_blocking
from tests.support.processes import assert_none_left, descendants, environ, output, stop_up, up_with_example

pytestmark = pytest.mark.e2e

log = logging.getLogger(__name__)

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
                    # a member that has not yet heard of the leader reports none: keep one that has
                    if stream["name"] not in found or stream.get("cluster", {}).get("leader"):
                        found[stream["name"]] = stream
    return found


async def test_the_stack_serves_on_three_clustered_servers(stack):
    proc, port, _, tmp_path = stack
    servers = {pid: cmd for pid, cmd in descendants(proc.pid).items() if "nats-server" in cmd}
    assert len(servers) == 3, servers
    assert [environ(pid).get("GOMAXPROCS") for pid in servers] == ["1"] * 3  # stack.nats_threads' default
    # the banner comes once the admin service answers too, which may be after ingress serves
    banner = "a 3-server cluster, 3 replicas of every stream"
    poll_until_blocking(lambda: banner in output(tmp_path), "the banner", within=60)
    async with _client(port) as client:
        assert "echo__echo" in {t.name for t in (await client.list_tools()).tools}
        assert (await client.call_tool("echo__add", {"a": 20, "b": 22})).structured_content == {"result": 42}


def test_every_store_has_three_replicas(stack):
    _, _, data_dir, _ = stack
    streams = _streams(data_dir)
    assert {subjects.AUDIT_STREAM, "KV_bastion_keys", "KV_bastion_servers"} <= set(streams), sorted(streams)
    replicas = {name: stream["config"]["num_replicas"] for name, stream in streams.items()}
    assert set(replicas.values()) == {3}, replicas


NATS_COMMANDS = [
    ("config", "apply", "{config}"),
    ("audit", "verify"),
    ("audit", "tail", "--limit", "5"),
    ("audit", "export", "--since", "2020-01-01T00:00:00Z"),
    ("analytics", "query", "SELECT count() AS calls FROM bastion.calls_hourly"),
    ("tools", "pending"),
]
"""Every CLI command that connects to NATS itself (the others go through the admin API)."""


@pytest.mark.parametrize("argv", NATS_COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_every_cli_command_that_talks_to_nats_works_on_the_cluster(stack, argv):
    """stack.json names the three members comma-separated: each command connects through that list."""
    _, _, data_dir, tmp_path = stack
    assert "," in json.loads((data_dir / "stack.json").read_text())["nats_url"]
    env = {k: v for k, v in os.environ.items() if k != "BASTION_NATS_URL" and not k.startswith("BASTION_ADMIN")}
    command = [part.format(config=tmp_path / "bastion.yaml") for part in argv]
    done = subprocess.run(
        [sys.executable, "-m", "cli", *command, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "invalid connect url" not in done.stdout + done.stderr


def _member_serving(data_dir: Path, connection: str) -> Path | None:
    """The data dir of the member a connection whose name starts with `connection` is on (`/connz`)."""
    for member in sorted((data_dir / "nats-cluster").glob("n*")):
        url = nats_monitoring_url(member)
        if url is None:
            continue
        with contextlib.suppress(httpx.HTTPError):
            connz = httpx.get(f"{url}/connz", params={"limit": 1024}, timeout=1).json()
            if any((c.get("name") or "").startswith(connection) for c in connz.get("connections") or []):
                return member
    return None


async def test_calls_succeed_while_the_member_ingress_uses_is_stopped(stack):
    """SIGSTOP of the nats-server ingress is connected to (its sockets stay open, it answers nothing):
    ingress and every service on that member leave it, and calls succeed again while it is stopped."""
    proc, port, data_dir, _ = stack
    member = _member_serving(data_dir, "bastion-ingress")
    assert member is not None
    pid = next(p for p, cmd in descendants(proc.pid).items() if "nats-server" in cmd and str(member) in cmd)
    async with _client(port) as client:
        load = CallLoad(client)
        calls = asyncio.create_task(load.run())
        try:
            await poll_until(lambda: len(load.successes) >= 5 * load.workers, "the first calls", within=60)
            services = ("bastion-ingress", "bastion-policy", "bastion-executor")
            on_it = [name for name in services if await asyncio.to_thread(_member_serving, data_dir, name) == member]
            stopped_at = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            try:

                async def ingress_left() -> Path | None:
                    # in a thread: the stopped member's monitoring port accepts and never answers, and a
                    # blocked loop would hold the load's answers too (and count as the gateway's gap)
                    found = await asyncio.to_thread(_member_serving, data_dir, "bastion-ingress")
                    return found if found not in (None, member) else None

                # while it is stopped: ingress leaves it, and calls sent after that succeed
                moved = await poll_until(ingress_left, "ingress to leave the stopped member", within=20)
                moved_at = time.monotonic()
                await poll_until(lambda: load.sent_and_answered_after(moved_at), "a call after the move", within=20)
                gap = load.longest_gap(stopped_at)
            finally:
                os.kill(pid, signal.SIGCONT)
            log.warning("bastion up: ingress moved to %s; longest time without a successful call %.1fs", moved, gap)
            log.warning(
                "stopped %s at %s (%s); calls: %s",
                member,
                time.strftime("%H:%M:%S", time.localtime(time.time() - (time.monotonic() - stopped_at))),
                on_it,
                "\n".join(load.timeline(stopped_at)),
            )
        finally:
            calls.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await calls
        # each failure names the NATS member that stopped answering, not only a service
        assert all("NATS member" in error for error in load.errors), load.errors


async def test_it_keeps_serving_when_a_server_is_killed(stack):
    proc, port, data_dir, tmp_path = stack
    # the keys' leader: the worst one to lose (an earlier test's kill may leave an election going on)
    leader: str = poll_until_blocking(
        lambda: _streams(data_dir).get("KV_bastion_keys", {}).get("cluster", {}).get("leader"),
        "the keys' stream to have a leader",
        within=30,
    )
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
