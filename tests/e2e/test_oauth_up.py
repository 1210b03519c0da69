"""OAuth on a fresh `bastion up` with embedded defaults, as a newcomer meets it: the URL the banner
prints is the OAuth issuer and the token audience; `bastion users set-password` gives a user a login;
the official MCP SDK's OAuth client goes through the whole flow (401, discovery, registration,
login form, code + PKCE) and then lists and calls tools as that user; `bastion audit tail` shows
the user as the actor."""

from __future__ import annotations

import os
import re
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

from tests.support.oauth_browser import Browser
from tests.support.oauth_sdk import MemoryStorage, sdk_auth
from tests.support.polling import poll_until_blocking
from tests.support.processes import assert_none_left, output, start_up, stop_up

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "alice's long enough password"


def config() -> str:
    echo = ROOT / "examples" / "servers" / "echo_server.py"
    return (
        f"mcpServers:\n  echo: {{command: python, args: ['{echo}']}}\n"
        "groups: [{id: echoers, tools: ['echo/echo', 'echo/add']}]\n"
        "teams: [{id: eng, name: Engineering, groups: [echoers]}]\n"
        "users: [{id: alice, name: Alice, team_id: eng}]\n"
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("oauth-up")
    marker = uuid.uuid4().hex
    proc, port, data_dir = start_up(tmp_path, config(), marker)

    def banner_url() -> str | None:
        assert proc.poll() is None, output(tmp_path)
        found = re.search(r"MCP URL\s+(\S+)", output(tmp_path))
        return found.group(1) if found else None

    try:
        mcp_url = poll_until_blocking(banner_url, "bastion up to print its banner", within=120)
        assert mcp_url == f"http://127.0.0.1:{port}/mcp"

        def echo_served() -> bool:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json().get("tools", 0) >= 5

        poll_until_blocking(echo_served, "the echo server's tools in the catalog", within=60)
        yield mcp_url, data_dir
    finally:
        stop_up(proc, tmp_path)
        assert_none_left(marker)


def bastion(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")} | {"COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args, "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def test_the_banner_url_is_the_issuer_and_the_audience(stack):
    mcp_url, _ = stack
    base = mcp_url.removesuffix("/mcp")
    async with httpx2.AsyncClient(timeout=10) as http:
        refused = await http.post(mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401
        prm_url = re.fullmatch(r'Bearer resource_metadata="([^"]+)"', refused.headers["www-authenticate"])
        assert prm_url is not None and prm_url.group(1).startswith(base + "/")
        prm = (await http.get(prm_url.group(1))).json()
        metadata = (await http.get(f"{base}/.well-known/oauth-authorization-server")).json()
    assert prm["resource"] == mcp_url and prm["authorization_servers"] == [base]
    assert metadata["issuer"] == base and metadata["authorization_endpoint"] == f"{base}/oauth/authorize"


async def test_sdk_oauth_client_logs_in_to_a_fresh_bastion_up(stack):
    mcp_url, data_dir = stack
    done = bastion(data_dir, "users", "set-password", "alice", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stdout + done.stderr

    browser, storage = Browser("alice", PASSWORD), MemoryStorage()
    async with (
        httpx2.AsyncClient(auth=sdk_auth(mcp_url, browser, storage), timeout=30) as http,
        Client(streamable_http_client(mcp_url, http_client=http)) as client,
    ):
        assert {t.name for t in (await client.list_tools()).tools} == {"echo__echo", "echo__add"}
        assert (await client.call_tool("echo__add", {"a": 40, "b": 2})).structured_content == {"result": 42}
        with pytest.raises(MCPError, match="not allowed"):
            await client.call_tool("echo__stats", {})
    assert len(browser.pages) == 1, "one login, then the token is reused"
    assert storage.tokens is not None and storage.tokens.refresh_token

    def tail_shows_alice() -> bool:
        tail = bastion(data_dir, "audit", "tail", "--limit", "50")
        return tail.returncode == 0 and "user:alice" in tail.stdout and "add" in tail.stdout

    poll_until_blocking(tail_shows_alice, "alice's call in `bastion audit tail`", within=60)
    logs = "".join(p.read_text() for p in (data_dir / "logs").glob("*.log"))
    assert PASSWORD not in logs and storage.tokens.access_token not in logs
