"""`cli.ports`: a held port is handed to no one else, yet the server told it binds and listens on it,
as nats-server, uvicorn (asyncio) and the metrics endpoint (`libs.common.runtime.metrics.serve`) do."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

import pytest

from cli.ports import free_ports, hold_addresses, hold_ports
from libs.common.runtime.metrics import serve
from tests.support.port_checks import refused_to_others

pytestmark = pytest.mark.unit


def test_held_ports_are_distinctrefused_to_others_and_never_handed_out() -> None:
    with hold_ports(8) as held:
        assert len(set(held.ports)) == 8
        assert all(refused_to_others(port) for port in held.ports)
        with hold_ports(400) as others:  # 400 more picks of port 0 while ours are held
            assert set(held.ports).isdisjoint(others.ports)
    assert not any(refused_to_others(port) for port in held.ports)  # released


def test_ports_picked_for_the_caller_to_hand_on_are_released_at_once() -> None:
    ports = free_ports(3, taken=set())
    assert len(set(ports)) == 3
    assert not any(refused_to_others(port) for port in ports)


async def test_an_asyncio_server_as_uvicorn_starts_it_listens_on_a_held_port() -> None:
    async def greet(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    with hold_ports(1) as held:
        server = await asyncio.start_server(greet, "127.0.0.1", held.ports[0])
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", held.ports[0])
            assert await reader.read() == b"hello"
            writer.close()
            await writer.wait_closed()
        assert refused_to_others(held.ports[0])  # the server gone, the port is still ours


def test_the_metrics_endpoint_serves_on_a_held_port() -> None:
    with hold_ports(1) as held:
        endpoint = serve("127.0.0.1", held.ports[0])
        try:
            with urllib.request.urlopen(endpoint.url, timeout=5) as response:
                assert b"# TYPE" in response.read()
        finally:
            endpoint.close()


def test_given_addresses_are_held_except_one_something_already_listens_on() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listening, hold_ports(1) as picked:
        busy, free = listening.getsockname()[1], picked.ports[0]
        picked.release()
        with hold_addresses([("127.0.0.1", busy), ("127.0.0.1", free)]) as held:
            assert held.ports == [free]  # the listener's port is left to the server to report
            assert refused_to_others(free)
