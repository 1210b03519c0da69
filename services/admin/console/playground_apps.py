"""The playground as an MCP Apps host.

A tool's definition or result names an app (`_meta.ui.resourceUri`, a `ui://<server>/...` URI): the
playground reads it through the gateway's `/mcp` as the key (grants and pinning apply as to any host),
hands its HTML to a sandboxed frame (`app_frames`), and runs the calls the app makes through the
gateway as the same key, declaring the extension (`io.modelcontextprotocol/ui`) as a host does: the
gateway then lists and lets through the tools only an app may call, and audits such a call with
`initiator: "app"`.

What the app may call is decided here, before anything reaches the gateway: a tool of the app's own
server (the one that served it, named as the server knows it or by its gateway name) that the key is
listed as a host and whose `_meta.ui.visibility` includes `"app"`. Anything else is refused to the app.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from libs.common.contracts.keys import key_id as key_id_of
from libs.common.contracts.ui_apps import APP_MIME_TYPE, EXTENSION, SCHEME, upstream_uri, visible_to_app

from .app_frames import MAX_APP_BYTES, AppFrames
from .mcp_client import connected, failure, list_all_tools

__all__ = ["AppAnswer", "AppHost", "PlaygroundApp", "PlaygroundAppCall", "app_server"]

CALL_SECONDS = 120.0
_MAX_ARGUMENTS = 64


class PlaygroundApp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: SecretStr = Field(min_length=1, max_length=512, description="The virtual key to act as.")
    uri: str = Field(min_length=len(SCHEME) + 1, max_length=2048, description="The app: a gateway `ui://` URI.")


class PlaygroundAppCall(PlaygroundApp):
    tool: str = Field(min_length=1, max_length=256, description="The tool the app calls, as it names it.")
    arguments: dict[str, Any] = Field(default_factory=dict, max_length=_MAX_ARGUMENTS)


class AppAnswer(BaseModel):
    ok: bool
    key_id: str
    started_at: float
    frame: str | None = None
    """The ticket the app's frame loads it by (`GET /console/app-frame/<frame>`), once."""
    ui: dict[str, Any] | None = None
    """The app's `_meta.ui` as the gateway gave it (CSP, permissions, ...)."""
    tool: str | None = None
    """The gateway name a call of the app went to."""
    result: dict[str, Any] | None = None
    error: str | None = None


def app_server(uri: str) -> str:
    """The server that serves the app `uri` (`ui://<server>/...`); ValueError when it names none."""
    return upstream_uri(uri)[0]


def _host() -> list[Any]:
    from mcp.client.extension import advertise  # the SDK loads on first use (see mcp_client.connected)

    return [advertise(EXTENSION, {"mimeTypes": [APP_MIME_TYPE]})]


def _callable(tools: list[dict[str, Any]], wanted: str | None, name: str) -> str | None:
    """Why the app may not call `name` (resolved to `wanted`, a gateway name), or None when it may."""
    if wanted is None:
        return f"{name} is not a tool of the server that served this app"
    tool = next((t for t in tools if t.get("name") == wanted), None)
    if tool is None:
        return f"this key may not call {wanted}"
    if not visible_to_app(tool):
        return f'{wanted} is not visible to apps (its _meta.ui.visibility leaves out "app")'
    return None


class AppHost:
    """Reads apps and runs their calls through `<gateway>/mcp` as a key, declaring the extension."""

    def __init__(self, url: str, frames: AppFrames) -> None:
        self.url = url
        self.frames = frames

    async def open(self, body: PlaygroundApp) -> AppAnswer:
        """Read the app as the key; its frame's ticket and its `_meta.ui`, or why not."""
        return await self._as_host(body.secret, lambda client, answer: self._read(client, answer, body.uri))

    async def call(self, body: PlaygroundAppCall, names: dict[str, str]) -> AppAnswer:
        """Run a call the app made, if the app may make it.

        `names` maps what the app may name (its server's tools, by their upstream and gateway names) to
        gateway names."""
        wanted = names.get(body.tool)

        async def run(client: Any, answer: AppAnswer) -> None:
            refused = _callable(await list_all_tools(client), wanted, body.tool)
            if refused is not None:
                answer.error = f"refused to the app: {refused}"
                return
            answer.tool = wanted
            result = await client.call_tool(wanted, body.arguments)
            answer.result = result.model_dump(mode="json", by_alias=True, exclude_none=True)
            answer.ok = True

        return await self._as_host(body.secret, run)

    async def _read(self, client: Any, answer: AppAnswer, uri: str) -> None:
        contents = (await client.read_resource(uri)).contents
        first = contents[0].model_dump(mode="json", by_alias=True, exclude_none=True) if contents else {}
        html = first.get("text")
        if first.get("mimeType") != APP_MIME_TYPE or not isinstance(html, str):
            answer.error = f"{uri} is not an app ({APP_MIME_TYPE} text)"
            return
        if len(html.encode()) > MAX_APP_BYTES:
            answer.error = f"{uri} is over {MAX_APP_BYTES // 1024 // 1024} MiB"
            return
        meta = first.get("_meta")
        ui: dict[str, Any] = meta["ui"] if isinstance(meta, dict) and isinstance(meta.get("ui"), dict) else {}
        answer.ui = ui
        answer.frame = self.frames.put(html, ui.get("csp"))
        answer.ok = True

    async def _as_host(self, secret: SecretStr, act: Any) -> AppAnswer:
        value = secret.get_secret_value()
        answer = AppAnswer(ok=False, key_id=key_id_of(value), started_at=time.time())
        try:
            async with asyncio.timeout(CALL_SECONDS):
                headers = {"Authorization": f"Bearer {value}"}
                async with connected(self.url, headers, read_seconds=CALL_SECONDS, extensions=_host()) as client:
                    await act(client, answer)
        except TimeoutError:
            answer.error = f"no answer within {CALL_SECONDS:.0f} s"
        except Exception as exc:  # the gateway's refusal (unknown app, not granted, ...) is the answer
            answer.error = failure(exc, self.url).replace(value, "***")
        return answer
