"""A minimal synchronous MCP client for the benchmark: JSON-RPC over streamable HTTP, 2026-07-28 envelopes.

No session and no SDK machinery, so what the benchmark measures is the gateway's answers, and a
tool call's result is exactly the JSON the gateway sent.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = ["CallFailed", "McpClient", "result_text"]

PROTOCOL = "2026-07-28"
_META = {"io.modelcontextprotocol/protocolVersion": PROTOCOL, "io.modelcontextprotocol/clientCapabilities": {}}


class CallFailed(Exception):
    """A JSON-RPC error, or a tool result with `isError: true`."""


class McpClient:
    def __init__(self, url: str, key: str, headers: dict[str, str] | None = None, timeout: float = 120) -> None:
        self.url = url
        self.http = httpx.Client(
            headers={
                "authorization": f"Bearer {key}",
                "accept": "application/json, text/event-stream",
                "content-type": "application/json",
                "mcp-protocol-version": PROTOCOL,
                **(headers or {}),
            },
            timeout=timeout,
        )
        self.next_id = 0

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        params = {**(params or {}), "_meta": _META}
        headers = {"mcp-method": method, **({"mcp-name": params["name"]} if "name" in params else {})}
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        response = self.http.post(self.url, json=body, headers=headers)
        text = response.text
        if text.startswith("event:") or "\ndata: " in text:  # an SSE answer: the last data line is ours
            text = [line[6:] for line in text.splitlines() if line.startswith("data: ")][-1]
        try:
            answer: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CallFailed(f"{method}: HTTP {response.status_code}: {text[:300]}") from exc
        if "error" in answer:
            raise CallFailed(f"{method}: {answer['error'].get('message')}")
        result: dict[str, Any] = answer["result"]
        return result

    def list_tools(self) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        cursor = None
        for _ in range(1000):  # bounded: a catalog is at most a few thousand tools
            page = self.request("tools/list", {"cursor": cursor} if cursor else None)
            tools += page["tools"]
            cursor = page.get("nextCursor")
            if not cursor:
                return tools
        raise CallFailed("tools/list never ended")

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The raw `CallToolResult` (also when `isError` is set: the caller decides)."""
        return self.request("tools/call", {"name": name, "arguments": arguments})

    def close(self) -> None:
        self.http.close()


def result_text(result: dict[str, Any]) -> str:
    """What a model reads of a tool result: its text content blocks, joined."""
    return "\n".join(block.get("text", "") for block in result.get("content", []) if block.get("type") == "text")
