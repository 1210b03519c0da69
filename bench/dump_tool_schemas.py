"""Dump a real MCP server's `tools/list` into tests/data/tool-schemas/<name>.json.

    python bench/dump_tool_schemas.py NAME -- COMMAND [ARGS...]
    python bench/dump_tool_schemas.py google-maps --env GOOGLE_MAPS_API_KEY=dummy -- npx server-google-maps

Speaks JSON-RPC over the server's stdio itself (initialize, initialized, every page of
`tools/list`), so what is written is the wire JSON exactly as the server sent it, unknown fields
included, not a round trip through an SDK's models. Lines that are not JSON (servers that log to
stdout) are skipped. The file is `{"tools": [...]}` with two-space indents, like the other dumps.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "tool-schemas"
PROTOCOL = "2025-06-18"


class _Server:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.next_id = 0

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        await self.process.stdin.drain()

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        await self.send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        assert self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the server closed its output before answering {method}")
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a log line on stdout
            if not isinstance(message, dict):
                continue
            if message.get("id") == ident and ("result" in message or "error" in message):
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            if message.get("method") == "ping" and "id" in message:
                await self.send({"jsonrpc": "2.0", "id": message["id"], "result": {}})
            elif "method" in message and "id" in message:  # a request of the server's: this client offers nothing
                error = {"code": -32601, "message": "not supported by this client"}
                await self.send({"jsonrpc": "2.0", "id": message["id"], "error": error})


async def dump(command: list[str], env: dict[str, str], wait: float) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None if os.environ.get("DUMP_STDERR") else asyncio.subprocess.DEVNULL,
        env={**os.environ, **env},
        limit=64 * 1024 * 1024,
        start_new_session=True,  # npm wrappers start the real server as a child: stop the whole group
    )
    server = _Server(process)
    try:
        info = {"name": "bastion-dump", "version": "1"}
        capabilities: dict[str, Any] = {}
        hello = {"protocolVersion": PROTOCOL, "capabilities": capabilities, "clientInfo": info}
        await asyncio.wait_for(server.request("initialize", hello), wait)
        await server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"cursor": cursor} if cursor else {}
            page = await asyncio.wait_for(server.request("tools/list", params), wait)
            tools.extend(page.get("tools") or [])
            cursor = page.get("nextCursor")
            if not cursor:
                return tools
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the dump's file stem, which is the server's name in the query sets")
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the server (dummy credentials)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=OUT)
    argv = sys.argv[1:]
    if "--" not in argv:
        parser.error("no server command after --")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1 :]
    if not command:
        parser.error("no server command after --")
    env = dict(item.split("=", 1) for item in args.env)
    tools = asyncio.run(dump(command, env, args.timeout))
    if not tools:
        sys.exit(f"{args.name}: the server listed no tools")
    path = args.out / f"{args.name}.json"
    path.write_text(json.dumps({"tools": tools}, indent=2, ensure_ascii=False) + "\n")
    print(f"{path}: {len(tools)} tools")


if __name__ == "__main__":
    main()
