"""CPU per request of a bare echo app under uvicorn (httptools, uvloop) and under granian (Rust, embedded in
the same uvloop loop): what the HTTP server alone costs a Python process, with nothing of Bastion's.

    .venv/bin/python bench/http_servers.py                      # uvicorn, granian RSGI and ASGI, 2 rounds
    .venv/bin/python bench/http_servers.py --requests 8000 --strace   # and the syscalls per request

The app reads a JSON-RPC body, parses it (orjson) and answers a fixed JSON result. 16 keep-alive
connections (a raw asyncio client in this process) send the same POST as `bench/python_floor.py`'s load;
the server's CPU (every thread) is read from /proc around the measured requests. `--strace` runs
`strace -f -c` on the server over the measured requests (its counts, not its inflated times, are the
figure). granian is not a Bastion dependency: `pip install granian` for its rows.
docs/benchmarks.md, "A twelfth round".
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_stack import process_ticks, start_server, ticks_to_us

BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo__echo","arguments":{"text":"hello"}}}'
HEAD = (
    b"POST /mcp HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
    b"accept: application/json, text/event-stream\r\nauthorization: Bearer bench-key-0123456789\r\n"
    b"mcp-protocol-version: 2025-06-18\r\ncontent-length: %d\r\n\r\n"
)
REQUEST = HEAD % len(BODY) + BODY
ANSWER = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "hello"}]}})


async def read_body(receive: Any) -> bytes:
    """An ASGI request's whole body."""
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    orjson.loads(await read_body(receive))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


async def rsgi(scope: Any, protocol: Any) -> None:
    orjson.loads(await protocol())
    protocol.response_bytes(200, [("content-type", "application/json")], ANSWER)


def serve(server: str, asgi_app: Any, rsgi_app: Any, port: int, ready: Callable[[int], None]) -> None:
    """Serve on 127.0.0.1:`port` (0: a free one) with `server` on uvloop: uvicorn with httptools serving
    `asgi_app`, or granian embedded in the loop serving `rsgi_app` (granian-rsgi) or `asgi_app`
    (granian-asgi); `ready(port)` once it listens."""
    import uvloop

    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]

    async def main() -> None:
        if server == "uvicorn":
            import uvicorn

            config = uvicorn.Config(
                asgi_app,
                loop="none",
                http="httptools",
                interface="asgi3",
                lifespan="off",
                proxy_headers=False,  # no middleware: the app is all there is
                log_level="error",
            )
            config.access_log = False
            sock.listen(128)  # connections wait in the backlog until uvicorn accepts
            ready(port)
            await uvicorn.Server(config).serve(sockets=[sock])
            return
        sock.close()  # granian binds the port itself
        from granian.constants import Interfaces  # type: ignore[import-not-found]
        from granian.server.embed import Server  # type: ignore[import-not-found]

        interface, target = (Interfaces.ASGI, asgi_app) if server == "granian-asgi" else (Interfaces.RSGI, rsgi_app)
        embedded = Server(target, port=port, interface=interface, log_enabled=False, websockets=False, http="1")
        task = asyncio.ensure_future(embedded.serve())
        await asyncio.sleep(1.0)  # it says nothing when it listens
        ready(port)
        await task

    uvloop.run(main())


async def _load(port: int, connections: int, each: int) -> None:
    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(each):
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line[15:]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:"))
            await reader.readexactly(length)
        writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))


def measure(server: str, requests: int, strace: bool) -> str:
    proc, url = start_server(__file__, "--serve", server)
    port = urllib.parse.urlsplit(url).port
    assert port is not None
    try:
        asyncio.run(_load(port, 16, 50))  # warm-up
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "strace-c"
            tracer = None
            if strace:
                tracer = subprocess.Popen(["strace", "-f", "-c", "-qq", "-o", str(out), "-p", str(proc.pid)])
                time.sleep(0.5)
            before, start = process_ticks(proc.pid), time.perf_counter()
            asyncio.run(_load(port, 16, requests // 16))
            spent, elapsed = ticks_to_us(process_ticks(proc.pid) - before, requests), time.perf_counter() - start
            line = f"{server:14} {spent:6.0f} µs CPU per request, {requests / elapsed:7,.0f} requests/s"
            if tracer is not None:
                tracer.send_signal(signal.SIGINT)
                tracer.wait()
                line += "\n" + _per_request(out.read_text(), requests)
        return line
    finally:
        proc.terminate()
        proc.wait()


def _per_request(table: str, requests: int) -> str:
    """`strace -c`'s calls column per request (warm-up excluded: the trace starts after it)."""
    rows = []
    for line in table.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            rows.append(f"{parts[-1]} {int(parts[3]) / requests:.2f}")
    return "    syscalls per request: " + ", ".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=16000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--strace", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, asgi, rsgi, 0, lambda port: print(f"READY http://127.0.0.1:{port}/", flush=True))
        return
    servers = ["uvicorn"]
    if importlib.util.find_spec("granian") is not None:
        servers += ["granian-rsgi", "granian-asgi"]
    else:
        print("granian is not installed here (not a Bastion dependency): uvicorn only")
    for number in range(args.rounds):
        print(f"round {number + 1}, load {os.getloadavg()[0]:.1f}")
        for server in servers:
            print(measure(server, args.requests, args.strace), flush=True)


if __name__ == "__main__":
    main()
