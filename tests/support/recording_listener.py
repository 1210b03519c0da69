"""An attacker's endpoint for tests of where secrets go: a TCP server on a port the system picks that
keeps every byte sent to it and answers each connection with HTTP 500."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["Ear", "recording"]


@dataclass
class Ear:
    """A recording listener: `heard` holds what each connection sent (its first 64 KiB)."""

    port: int = 0
    heard: list[bytes] = field(default_factory=list)

    def url(self, path: str = "mcp") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"


@contextlib.asynccontextmanager
async def recording() -> AsyncIterator[Ear]:
    ear = Ear()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            ear.heard.append(await reader.read(65536))
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)  # a port the system picks and holds
    ear.port = server.sockets[0].getsockname()[1]
    try:
        yield ear
    finally:
        server.close()
        await server.wait_closed()
