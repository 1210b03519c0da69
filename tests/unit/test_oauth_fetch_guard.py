"""The oauth service's SSRF guard (`services.oauth.fetch`): which addresses it refuses, and that a
refused host is never connected to while an allowed one is (the development switch, or an operator's
allow-list of internal hosts), against a real local HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2
import pytest
from pydantic import ValidationError

from libs.common.settings import OAuthSettings
from services.oauth.fetch import AllowList, address_problem, guarded_client, why_unreachable

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "shared"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),  # an IPv4-mapped IPv6 address is its IPv4 address
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 127.0.0.1 and the metadata address in 6to4 and NAT64 forms
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
    ],
)
def test_internal_addresses_are_refused(address: str, kind: str) -> None:
    problem = address_problem(address)
    assert problem is not None and kind in problem and address in problem


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "1.1.1.1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(address) is None


@pytest.fixture
async def local_server() -> AsyncIterator[tuple[int, list[str]]]:
    """A real HTTP server on 127.0.0.1 that records each request line it gets."""
    seen: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append((await reader.readline()).decode().strip())
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], seen


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_host_resolving_to_loopback_is_refused_before_any_connection(
    local_server: tuple[int, list[str]], host: str
) -> None:
    port, seen = local_server
    async with guarded_client(5) as http:
        with pytest.raises(httpx2.ConnectError) as refused:
            await http.get(f"http://{host}:{port}/.well-known/oauth-authorization-server")
    assert why_unreachable(refused.value).startswith(f"refused to connect to {host}: ")
    assert "loopback" in why_unreachable(refused.value)
    assert seen == [], "the guard must refuse before connecting"


async def test_the_development_setting_lets_the_same_fetch_through(local_server: tuple[int, list[str]]) -> None:
    port, seen = local_server
    async with guarded_client(5, allow_private=True) as http:
        answer = await http.get(f"http://127.0.0.1:{port}/doc.json")
    assert answer.status_code == 200 and seen == ["GET /doc.json HTTP/1.1"]


async def test_redirects_are_never_followed() -> None:
    async with guarded_client(5) as http:
        assert http.follow_redirects is False


async def test_an_allow_listed_host_name_passes_and_every_other_internal_host_is_still_refused(
    local_server: tuple[int, list[str]],
) -> None:
    port, seen = local_server
    async with guarded_client(5, allow=AllowList.parse(["localhost"])) as http:
        assert (await http.get(f"http://localhost:{port}/listed.json")).status_code == 200
        with pytest.raises(httpx2.ConnectError) as refused:  # the same server, under a name not listed
            await http.get(f"http://127.0.0.1:{port}/unlisted.json")
    assert "127.0.0.1 is a loopback address" in why_unreachable(refused.value)
    assert seen == ["GET /listed.json HTTP/1.1"]


async def test_an_allow_listed_block_admits_its_addresses_only(local_server: tuple[int, list[str]]) -> None:
    port, seen = local_server
    async with guarded_client(5, allow=AllowList.parse(["127.0.0.1/32"])) as http:
        assert (await http.get(f"http://127.0.0.1:{port}/in-block.json")).status_code == 200
        with pytest.raises(httpx2.ConnectError) as refused:  # loopback too, but outside the block
            await http.get(f"http://127.0.0.2:{port}/outside.json")
    assert "127.0.0.2 is a loopback address" in why_unreachable(refused.value)
    assert seen == ["GET /in-block.json HTTP/1.1"]


def test_allow_list_entries_are_names_patterns_addresses_or_blocks() -> None:
    allow = AllowList.parse(["Auth.Corp.Example.", "*.internal.example", "10.20.0.0/16", "fd00::1", " "])
    assert allow.admits_host("auth.corp.example") and allow.admits_host("mcp.internal.example")
    assert not allow.admits_host("internal.example") and not allow.admits_host("evilinternal.example")
    assert allow.admits_address("10.20.3.4") and allow.admits_address("::ffff:10.20.0.9")
    assert allow.admits_address("fd00::1") and not allow.admits_address("10.21.0.1")
    for setting in ("upstream_oauth_allow_hosts", "client_metadata_allow_hosts"):
        OAuthSettings(**{setting: ["auth.corp.example", "*.corp.example", "10.0.0.0/8", "::1"]})
        with pytest.raises(ValidationError, match="not a host name"):
            OAuthSettings(**{setting: ["http://auth.corp.example/"]})
