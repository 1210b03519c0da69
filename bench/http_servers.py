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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo__echo","arguments":{"text":"hello"}}}'
HEAD = (
    b"POST /mcp HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
    b"accept: application/json, text/event-stream\r\nauthorization: Bearer bench-key-0123456789\r\n"
    b"mcp-protocol-version: 2025-06-18\r\ncontent-length: %d\r\n\r\n"
)
REQUEST = HEAD % len(BODY) + BODY
ANSWER = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "hello"}]}})


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    orjson.loads(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


async def rsgi(scope: Any, protocol: Any) -> None:
    orjson.loads(await protocol())
    protocol.response_bytes(200, [("content-type", "application/json")], ANSWER)


def serve(server: str, port: int) -> None:
    import uvloop

    async def main() -> None:
        if server == "uvicorn":
            import uvicorn

            config = uvicorn.Config(
                asgi, port=port, loop="none", http="httptools", lifespan="off", proxy_headers=False, log_level="error"
            )
            config.access_log = False
            await uvicorn.Server(config).serve()
            return
        from granian.constants import Interfaces  # type: ignore[import-not-found]
        from granian.server.embed import Server  # type: ignore[import-not-found]

        interface, target = (Interfaces.ASGI, asgi) if server == "granian-asgi" else (Interfaces.RSGI, rsgi)
        await Server(target, port=port, interface=interface, log_enabled=False, websockets=False, http="1").serve()

    uvloop.run(main())


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def measure(server: str, port: int, requests: int, strace: bool) -> str:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", server, "--port", str(port)])
    try:
        for _ in range(100):  # until it accepts
            try:
                asyncio.run(_load(port, 1, 1))
                break
            except OSError:
                time.sleep(0.1)
        asyncio.run(_load(port, 16, 50))
        tracer = None
        if strace:
            out = Path(f"/tmp/bastion-http-servers-{server}.strace")
            tracer = subprocess.Popen(["strace", "-f", "-c", "-qq", "-o", str(out), "-p", str(proc.pid)])
            time.sleep(0.5)
        before, start = _cpu(proc.pid), time.perf_counter()
        asyncio.run(_load(port, 16, requests // 16))
        spent, elapsed = _cpu(proc.pid) - before, time.perf_counter() - start
        line = f"{server:14} {spent / requests * 1e6:6.0f} µs CPU per request, {requests / elapsed:7,.0f} requests/s"
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
    parser.add_argument("--port", type=int, default=18767)
    parser.add_argument("--requests", type=int, default=16000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--strace", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    servers = ["uvicorn"]
    if importlib.util.find_spec("granian") is not None:
        servers += ["granian-rsgi", "granian-asgi"]
    else:
        print("granian is not installed here (not a Bastion dependency): uvicorn only")
    for number in range(args.rounds):
        print(f"round {number + 1}, load {os.getloadavg()[0]:.1f}")
        for server in servers:
            print(measure(server, args.port, args.requests, args.strace), flush=True)


if __name__ == "__main__":
    main()
