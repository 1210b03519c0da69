"""The product as a user meets it: `bastion up` with the bundled example config (one process per
service, embedded NATS/Valkey/chdb, example upstreams over stdio), the official MCP client in both
protocol eras, `bastion audit tail`, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.support.processes import assert_none_left, output, start_up, stop_up, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEMO = "bk_demo_local_only_change_me_0000"
READONLY = "bk_readonly_local_only_change_me_00"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("up")
    marker = uuid.uuid4().hex
    config = (ROOT / "examples" / "bastion.yaml").read_text().replace("servers/", f"{ROOT}/examples/servers/")
    proc, port, data_dir = start_up(tmp_path, config, marker)

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json().get("tools", 0) >= 9
        except (httpx.HTTPError, ValueError):
            assert proc.poll() is None, output(tmp_path)
            return False

    wait_for(ready, 90, "bastion up to serve the example catalog")
    yield proc, port, data_dir, tmp_path
    stop_up(proc, tmp_path)
    assert_none_left(marker)


def _client(port: int, key: str, mode: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http), mode=mode)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_official_client_lists_and_calls(stack, mode):
    _, port, _, _ = stack
    async with _client(port, DEMO, mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"echo__echo", "echo__add", "notes__add_note", "notes__list_notes", "notes__echo"} <= names
        added = await client.call_tool("echo__add", {"a": 20, "b": 22})
        assert added.structured_content == {"result": 42}
        await client.call_tool("notes__add_note", {"title": "e2e", "text": f"via {mode}"})
        listed = await client.call_tool("notes__list_notes", {})
        assert f"via {mode}" in json.dumps(listed.structured_content)


async def test_readonly_key_is_confined(stack):
    _, port, _, _ = stack
    async with _client(port, READONLY, "auto") as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"echo__echo", "notes__list_notes"}
        with pytest.raises(MCPError) as refused:
            await client.call_tool("notes__add_note", {"title": "x", "text": "y"})
        assert refused.value.error.code == -32050


async def test_audit_tail_shows_the_calls(stack):
    _, port, data_dir, _ = stack
    async with _client(port, DEMO, "auto") as client:
        await client.call_tool("echo__echo", {"text": "for the audit trail"})
    env = {k: v for k, v in os.environ.items() if k != "BASTION_NATS_URL"}

    def tail_shows_it() -> bool:
        done = subprocess.run([sys.executable, "-m", "bastion_cli", "audit", "tail", "--limit", "50", "--data-dir", str(data_dir)],
                              capture_output=True, text=True, timeout=30, env={**env, "COLUMNS": "200"})
        return done.returncode == 0 and "echo" in done.stdout and "demo" in done.stdout

    wait_for(tail_shows_it, 30, "the call to appear in `bastion audit tail`")
    logs = "".join(p.read_text() for p in (data_dir / "logs").glob("*.log"))
    assert DEMO not in logs and READONLY not in logs  # secrets never reach the logs
