"""`mcp-remote` (npm), the stdio bridge many MCP clients use for remote servers, logs in to Bastion
through OAuth and then serves Bastion's tools over stdio to the official MCP SDK's stdio client.

Headless, as on a server: mcp-remote cannot open a browser (BROWSER is `true`, which opens
nothing), so it prints the authorization URL; the test is the person at the browser. It logs in
at Bastion's real login form, and opens the redirect mcp-remote's own callback server listens for.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from cli.ports import hold_ports
from libs.common.runtime.sealing import new_key
from tests.support.gateway import echoers_config, running_gateway
from tests.support.node_tools import ensure_node, ensure_package
from tests.support.oauth_browser import Browser, set_password
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

MCP_REMOTE_VERSION = "0.15.1"
PASSWORD = "carol's long enough password"
_AUTHORIZE = re.compile(r"Please authorize this client by visiting:\s+(\S+)")


def config() -> dict:
    return echoers_config(users=[{"id": "carol", "name": "Carol", "groups": ["echoers"]}])


async def _act_as_the_browser(log: Path, callback_port: int) -> None:
    """Wait for the URL mcp-remote prints, log in at Bastion, deliver the code to its callback."""

    def printed_url() -> str | None:
        found = _AUTHORIZE.search(log.read_text()) if log.exists() else None
        return found.group(1) if found else None

    url = await poll_until(printed_url, "mcp-remote to print the authorization URL", within=90, every=0.1)
    back = await Browser("carol", PASSWORD).login(url)
    assert back.location is not None and back.location.startswith(f"http://127.0.0.1:{callback_port}/oauth/callback?")
    async with httpx2.AsyncClient(timeout=30) as http:
        delivered = await http.get(back.location)
    assert delivered.status_code == 200, delivered.text


async def test_mcp_remote_logs_in_through_oauth_then_lists_and_calls_tools(nats_url, redis_url, tmp_path) -> None:
    node = ensure_node()
    proxy = ensure_package("mcp-remote", "mcp-remote", MCP_REMOTE_VERSION) / "dist" / "proxy.js"
    with hold_ports(1) as held:  # mcp-remote's callback port, no one else's until it listens (`cli.ports`)
        async with running_gateway(
            nats_url, redis_url, tmp_path, config(), oauth=True, secrets_key=new_key()
        ) as gateway:
            assert (await set_password(gateway.nats_url, "carol", PASSWORD)).ok
            (callback_port,) = held.ports
            params = StdioServerParameters(
                command=str(node),
                args=[str(proxy), gateway.url, str(callback_port), "--host", "127.0.0.1"],
                env={
                    "PATH": str(node.parent),
                    "HOME": str(tmp_path),
                    "MCP_REMOTE_CONFIG_DIR": str(tmp_path / "mcp-auth"),  # its tokens, in this test only
                    "BROWSER": "true",  # a headless machine: nothing opens, the URL is printed
                },
            )
            log = tmp_path / "mcp-remote.log"
            with log.open("w") as errlog:
                browser = asyncio.create_task(_act_as_the_browser(log, callback_port))
                try:
                    async with Client(stdio_client(params, errlog=errlog)) as client:
                        await asyncio.wait_for(browser, 90)
                        assert {t.name for t in (await client.list_tools()).tools} == {"echo__echo", "echo__add"}
                        added = await client.call_tool("echo__add", {"a": 19, "b": 23})
                        assert added.structured_content == {"result": 42}
                finally:
                    browser.cancel()
                    await asyncio.gather(browser, return_exceptions=True)
            stored = "".join(p.read_text() for p in (tmp_path / "mcp-auth").rglob("*.json"))
            assert "refresh_token" in stored, "mcp-remote kept the tokens Bastion issued"
