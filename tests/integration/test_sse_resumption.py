"""A call whose SSE answer the upstream cuts mid-call is resumed with `Last-Event-ID`, through the
gateway's lean path as the SDK's own transport resumes it: the conformance fixture's `test_reconnection`
(a real SDK server with an event store, which closes the call's stream and answers on the resumed
one) answers through Bastion; a server that keeps cutting with nothing new is given up on after a
bounded number of tries, its error saying so."""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from cli.ports import hold_ports
from tests.support.gateway import ADMIN_KEY, Gateway, gateway_on_own_servers
from tests.support.polling import poll_until
from tests.support.processes import serving_process

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "conformance" / "fixture_server.py"


@pytest.fixture(scope="module")
def fixture_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The conformance fixture over streamable HTTP (it prints no READY line: its port is polled)."""
    import subprocess

    with hold_ports(1) as held:  # no one else's until the fixture stops (`cli.ports`)
        (port,) = held.ports
        log = (tmp_path_factory.mktemp("fixture") / "fixture.log").open("wb")
        proc = subprocess.Popen([sys.executable, str(FIXTURE), "--port", str(port)], stdout=log, stderr=log)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()


@pytest.fixture(scope="module")
def cutting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("cutting")
    with serving_process([sys.executable, "-m", "tests.support.cutting_server", str(folder)], "cutting server") as url:
        yield url, folder / "resumptions"


@pytest.fixture(scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory, fixture_url: str, cutting: tuple[str, Path]
) -> AsyncIterator[Gateway]:
    await poll_until(lambda: _listening(fixture_url), "the conformance fixture to listen", 30)
    config = {
        "mcpServers": {
            "fx": {"url": fixture_url, "protocol": "legacy", "namespace": False},
            "cut": {"url": cutting[0], "protocol": "legacy", "timeout": 30},
        },
        "keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["*"]}],
    }
    async with gateway_on_own_servers(tmp_path_factory.mktemp("resume"), config) as gw:
        await gw.wait_for_servers("fx", "cut")
        yield gw


def _listening(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
    except OSError:
        return False
    return True


async def test_a_cut_stream_is_resumed_and_the_call_answers(gateway: Gateway) -> None:
    async with gateway.client() as client:
        result = await client.call_tool("test_reconnection", {})
    assert not result.is_error, result
    assert "Reconnection test completed" in str(result.content)


async def test_a_server_that_keeps_cutting_is_given_up_on_after_bounded_tries(
    gateway: Gateway, cutting: tuple[str, Path]
) -> None:
    _, resumptions = cutting
    async with gateway.client() as client:
        try:
            result = await client.call_tool("cut__never", {})
        except MCPError as exc:
            message = str(exc)
        else:
            assert result.is_error, result
            message = str(result.content)
    assert "reconnection attempts were exhausted" in message
    assert resumptions.read_text().splitlines() == ["1", "1"]  # two tries with the last id, then no more
