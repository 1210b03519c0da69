"""An agent written against the OLD `mcp` 1.x SDK client, for protocol-bridging tests.

Run it with the python of a pinned legacy venv (`tests/support/legacy_sdk.py`):

    <venv>/bin/python tests/support/legacy_client.py URL KEY '[["srv__echo", {"text": "hi"}], ...]'

A name `prompt:<name>` in the plan is a `prompts/get` of that prompt instead of a tool call.

It connects over streamable HTTP (the SDK's own `streamablehttp_client`, in every release since 1.8)
with `Authorization: Bearer KEY`, runs the initialize handshake, lists tools, makes each call in
order and prints one JSON object on stdout:

    {"protocolVersion": ..., "serverInfo": {...}, "tools": [names], "calls": [CallToolResult | {"error": ...}]}

A call the gateway answers with a JSON-RPC error is recorded as {"error": {...}} so one bad call
does not hide the others.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def main(url: str, key: str, calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    async with streamablehttp_client(url, headers={"Authorization": f"Bearer {key}"}) as (read, write, _):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            results: list[Any] = []
            for name, arguments in calls:
                try:
                    if name.startswith("prompt:"):  # a prompts/get, not a tool call
                        results.append(_dump(await session.get_prompt(name[len("prompt:") :], arguments)))
                    else:
                        results.append(_dump(await session.call_tool(name, arguments)))
                except McpError as exc:
                    results.append({"error": _dump(exc.error)})
    return {
        "protocolVersion": init.protocolVersion,
        "serverInfo": _dump(init.serverInfo),
        "tools": [tool.name for tool in tools.tools],
        "calls": results,
    }


if __name__ == "__main__":
    url, key, plan = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    print(json.dumps(anyio.run(main, url, key, [(name, args) for name, args in plan])), flush=True)
