"""Reading an MCP Registry (the `/v0.1/servers` API, docs/registry.md).

Search its servers, fetch one version's `server.json`, and learn its latest version.

A registry is named in the configuration by an operator, so its address is trusted as the admin
service's own (no egress check); what it answers is not: answers are size-bounded and their shape is
checked before use, and a failure is one `RegistryUnreachable` naming the registry and what failed.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

import httpx

__all__ = ["LATEST_META", "RegistryClient", "RegistryUnreachable", "ServerNotFound"]

MAX_ANSWER_BYTES: Final = 4 * 1024 * 1024
LATEST_META: Final = "io.modelcontextprotocol.registry/official"


class RegistryUnreachable(Exception):
    """The registry did not answer as the API says (down, an error status, not its JSON)."""


class ServerNotFound(Exception):
    """The registry answered 404 for a server or one of its versions."""


class RegistryClient:
    """The configured registries, by name (`AdminSettings.registries`)."""

    def __init__(self, registries: dict[str, str], timeout: float) -> None:
        self.registries = {name: url.rstrip("/") for name, url in registries.items()}
        self.timeout = timeout

    def url_of(self, registry: str) -> str:
        """The base URL of `registry`; KeyError naming the configured ones for another name."""
        if registry not in self.registries:
            known = ", ".join(sorted(self.registries)) or "none"
            raise KeyError(f"no registry {registry!r} is configured (configured: {known})")
        return self.registries[registry]

    async def search(self, registry: str, text: str, cursor: str | None, limit: int) -> dict[str, Any]:
        """One page of `GET /v0.1/servers` (latest versions, names containing `text`), as answered."""
        params: dict[str, str | int] = {"version": "latest", "limit": limit}
        if text:
            params["search"] = text
        if cursor:
            params["cursor"] = cursor
        answer = await self._get(registry, "/v0.1/servers", params)
        if not isinstance(answer.get("servers"), list):
            raise RegistryUnreachable(f"registry {registry!r}: /v0.1/servers answered no 'servers' list")
        return answer

    async def version(self, registry: str, server: str, version: str = "latest") -> dict[str, Any]:
        """`GET /v0.1/servers/{server}/versions/{version}`: its `ServerResponse` (`server`, `_meta`)."""
        path = f"/v0.1/servers/{quote(server, safe='')}/versions/{quote(version, safe='')}"
        try:
            answer = await self._get(registry, path, {})
        except ServerNotFound:
            raise ServerNotFound(f"registry {registry!r} has no server {server!r} at version {version!r}") from None
        detail = answer.get("server")
        if not isinstance(detail, dict) or not isinstance(detail.get("version"), str):
            raise RegistryUnreachable(f"registry {registry!r}: {server!r} answered without a server.json")
        return answer

    async def _get(self, registry: str, path: str, params: dict[str, str | int]) -> dict[str, Any]:
        url = self.url_of(registry) + path
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout, follow_redirects=True, trust_env=False) as http,
                http.stream("GET", url, params=params, headers={"Accept": "application/json"}) as response,
            ):
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise RegistryUnreachable(f"registry {registry!r}: {path} answered over 4 MiB")
        except httpx.HTTPError as exc:
            shown = httpx.URL(url).copy_with(userinfo=b"", query=None)  # never a credential in an error
            raise RegistryUnreachable(f"registry {registry!r} ({shown}): {type(exc).__name__}") from None
        if response.status_code == 404:
            raise ServerNotFound(f"registry {registry!r}: {path} answered 404")
        if response.status_code != 200:
            raise RegistryUnreachable(f"registry {registry!r}: {path} answered HTTP {response.status_code}")
        try:
            answer = httpx.Response(200, content=bytes(body)).json()
        except ValueError:
            raise RegistryUnreachable(f"registry {registry!r}: {path} answered something other than JSON") from None
        if not isinstance(answer, dict):
            raise RegistryUnreachable(f"registry {registry!r}: {path} answered JSON that is not an object")
        return answer
