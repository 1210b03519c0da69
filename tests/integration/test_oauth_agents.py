"""Bastion as an OAuth 2.1 protected resource and authorization server, end to end.

Real NATS, Valkey, chdb, the real services, real upstreams, and the official MCP SDK's OAuth client
(`mcp.client.auth.OAuthClientProvider`): discovery from the 401, dynamic client registration, the
login form (driven like a browser), the code exchange with PKCE, then tools listed and called as
the user, governed by the user's groups.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from libs.common.runtime.sealing import new_key
from tests.support.audit_rows import audit_rows
from tests.support.gateway import SERVERS, Gateway, gateway_on_own_servers
from tests.support.oauth_browser import Browser, set_password
from tests.support.oauth_sdk import REDIRECT, MemoryStorage, sdk_auth

pytestmark = pytest.mark.integration

ALICE_PASSWORD = "correct horse battery staple"


def oauth_config() -> dict:
    return {
        "mcpServers": {
            "echo": {"command": sys.executable, "args": [str(SERVERS / "echo_server.py")]},
            "notes": {"command": sys.executable, "args": [str(SERVERS / "notes_server.py")]},
        },
        "groups": [{"id": "echoers", "tools": ["echo/echo", "echo/add"]}],
        "teams": [{"id": "eng", "name": "Engineering", "groups": ["echoers"]}],
        "users": [{"id": "alice", "name": "Alice", "team_id": "eng"}, {"id": "bob", "name": "Bob"}],
        "keys": [{"name": "admin", "key": "bk_test_admin_key_000000000000", "tools": ["*"]}],
    }


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """Shared: one test only reads the metadata, one signs alice in with a client of its own, one
    makes a user of its own (dave) through the CLI; none changes what another sees."""
    workdir = tmp_path_factory.mktemp("oauth-agents")
    async with gateway_on_own_servers(workdir, oauth_config(), oauth=True, secrets_key=new_key(), admin=True) as gw:
        assert (await set_password(gw.nats_url, "alice", ALICE_PASSWORD)).ok
        yield gw


async def test_unauthenticated_mcp_points_at_protected_resource_metadata(gateway):
    base = gateway.url.removesuffix("/mcp")
    async with httpx2.AsyncClient(timeout=10) as http:
        refused = await http.post(gateway.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401
        metadata_url = f"{base}/.well-known/oauth-protected-resource/mcp"
        assert refused.headers["www-authenticate"] == f'Bearer resource_metadata="{metadata_url}"'
        prm = (await http.get(metadata_url)).json()
        assert prm["resource"] == gateway.url and prm["authorization_servers"] == [base]
        server = (await http.get(f"{base}/.well-known/oauth-authorization-server")).json()
    assert server["issuer"] == base
    assert server["code_challenge_methods_supported"] == ["S256"]
    assert server["token_endpoint"] == f"{base}/oauth/token"
    assert server["registration_endpoint"] == f"{base}/oauth/register"
    assert server["revocation_endpoint"] == f"{base}/oauth/revoke"


async def test_sdk_oauth_client_logs_in_then_lists_and_calls_tools_as_the_user(gateway):
    browser, storage = Browser("alice", ALICE_PASSWORD), MemoryStorage()
    async with (
        httpx2.AsyncClient(auth=sdk_auth(gateway.url, browser, storage), timeout=30) as http,
        Client(streamable_http_client(gateway.url, http_client=http)) as client,
    ):
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools == {"echo__echo", "echo__add"}  # alice's team group, nothing else
        result = await client.call_tool("echo__add", {"a": 2, "b": 40})
        assert result.structured_content == {"result": 42}
        with pytest.raises(MCPError, match="not allowed"):
            await client.call_tool("notes__list_notes", {})
    assert len(browser.pages) == 1 and "sdk test client" in browser.pages[0]
    rows = await audit_rows(gateway.nats_url, "user:alice", at_least=2)
    assert {(r.tool, r.status) for r in rows} >= {("add", "ok"), ("list_notes", "denied")}
    assert storage.tokens is not None and storage.tokens.refresh_token
    assert storage.client is not None and storage.client.client_id.startswith("bc_")


async def test_cli_creates_a_user_with_a_password_who_can_then_log_in(gateway):
    base = gateway.url.removesuffix("/mcp")
    flags = ["--admin-url", gateway.admin_api, "--admin-token", gateway.admin_token]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}

    async def bastion(*args: str, stdin: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "users", *args, *flags,
            env=clean, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await bastion(
        "create", "dave", "--name", "Dave", "--team", "eng", "--password", stdin="s3cret-pass\n"
    )
    assert code == 0, err
    assert "password set" in out and "s3cret-pass" not in out + err
    short = await bastion("set-password", "dave", stdin="short\n")
    assert short[0] != 0 and "at least 8" in short[1] + short[2]
    missing = await bastion("set-password", "nobody", stdin="long-enough-pass\n")
    assert missing[0] != 0 and "no user" in missing[1] + missing[2]

    async with httpx2.AsyncClient(timeout=30) as http:
        registered = await http.post(f"{base}/oauth/register", json={"redirect_uris": [REDIRECT]})
    url = f"{base}/oauth/authorize?" + urlencode(
        {
            "response_type": "code",
            "client_id": registered.json()["client_id"],
            "redirect_uri": REDIRECT,
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        }
    )
    assert "code" in (await Browser("dave", "s3cret-pass").login(url)).params
    assert (await Browser("dave", "wrong-password").login(url)).status == 401
