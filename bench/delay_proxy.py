"""A TCP proxy that makes a NATS member slow, not dead: every byte, either way, arrives `delay` seconds
late (a congested link, a member starved of CPU). The failover benchmark's slow-member fault.

    python bench/delay_proxy.py --control slow.json 127.0.0.1:4222 127.0.0.1:4223

It prints one JSON line, `{"127.0.0.1:4222": <port>, ...}` (each target's listening port on
127.0.0.1), then proxies until killed. The control file holds the JSON list of the targets slowed
now (read every 0.1 s; missing or unreadable: none), so one member is slow while the others are not.
A separate process: the benchmark's own event loop (the load) is not the proxy's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 64 * 1024


@dataclass
class Delay:
    seconds: float
    slowed: frozenset[str] = frozenset()
    """The targets slowed now (`watch`)."""

    def now(self, target: str) -> float:
        return self.seconds if target in self.slowed else 0.0

    async def watch(self, control: Path) -> None:
        while True:
            self.slowed = _slowed(control)
            await asyncio.sleep(0.1)


def _slowed(control: Path) -> frozenset[str]:
    try:
        return frozenset(json.loads(control.read_text()))
    except (OSError, ValueError):
        return frozenset()


@dataclass
class Pipe:
    """One direction of one connection: what was read, each chunk sent once its time has come, in order."""

    delay: Delay
    target: str
    chunks: asyncio.Queue[tuple[float, bytes]] = field(default_factory=asyncio.Queue)

    async def read(self, source: asyncio.StreamReader) -> None:
        while data := await source.read(CHUNK):
            self.chunks.put_nowait((time.monotonic() + self.delay.now(self.target), data))
        self.chunks.put_nowait((time.monotonic() + self.delay.now(self.target), b""))

    async def write(self, sink: asyncio.StreamWriter) -> None:
        while True:
            due, data = await self.chunks.get()
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if not data:
                return
            sink.write(data)
            await sink.drain()


async def relay(
    delay: Delay, target: tuple[str, int], client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
) -> None:
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    name = f"{target[0]}:{target[1]}"
    up, down = Pipe(delay, name), Pipe(delay, name)
    tasks = [up.read(client_r), up.write(server_w), down.read(server_r), down.write(client_w)]
    with contextlib.suppress(Exception):
        await asyncio.gather(*tasks)
    for writer in (client_w, server_w):
        writer.close()


async def serve(targets: list[str], delay: Delay, control: Path) -> None:
    ports: dict[str, int] = {}
    servers = []
    for target in targets:
        host, _, port = target.rpartition(":")
        address = (host, int(port))

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, address: tuple[str, int] = address) -> None:
            await relay(delay, address, r, w)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        ports[target] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    await delay.watch(control)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", help="host:port to proxy, one listener each")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds each byte to or from a slowed target is held")
    parser.add_argument("--control", type=Path, required=True, help="file holding the JSON list of targets slowed now")
    args = parser.parse_args()
    asyncio.run(serve(args.targets, Delay(args.delay), args.control))
    return 0


if __name__ == "__main__":
    sys.exit(main())
