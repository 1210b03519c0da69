"""What an agent is told about configured servers an executor reports unavailable (docs/reliability.md).

Their tools are not listed, so a call of one would otherwise be "Unknown tool": the agent would
conclude the tool does not exist, when the server behind it is down and says why. A call whose name
an unavailable server could own is answered "server X is unavailable: <reason>" instead, once policy
says the key may use that tool (a key without a grant on it still hears "Unknown tool": the reason
may name hosts and paths). `tools/list` names the unavailable servers in its `_meta` (names only).
"""

from __future__ import annotations

import fnmatch
from typing import Any, Final

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import GatewayError, PairList
from services.ingress.catalog.aggregated import Catalog
from services.ingress.context import RequestContext
from services.ingress.sending.request_path import RequestPath

__all__ = [
    "UNAVAILABLE_META_KEY",
    "Unavailable",
    "down_names",
    "health_body",
    "unavailable_call",
    "with_down_servers",
]

UNAVAILABLE_META_KEY: Final = "io.bastion/unavailable"
"""The `tools/list` result's `_meta` key listing the servers that are down (MCP allows a reverse-DNS
prefixed key there; clients that do not know it ignore it)."""


class Unavailable:
    """A call refused because the server that would answer it is down."""

    __slots__ = ("error", "server", "tool")

    def __init__(self, server: str, tool: str, error: GatewayError) -> None:
        self.server, self.tool, self.error = server, tool, error


def down_names(catalog: Catalog, include_servers: tuple[str, ...] | None = None) -> list[str]:
    """The unavailable servers, by name, within the request's narrowing (`X-Bastion-Include-Servers`)."""
    names = sorted(catalog.down)
    if include_servers is None:
        return names
    # the header's items are server-name patterns, matched as policy matches them
    return [name for name in names if any(fnmatch.fnmatchcase(name, pattern) for pattern in include_servers)]


async def unavailable_call(catalog: Catalog, path: RequestPath, ctx: RequestContext, name: str) -> Unavailable | None:
    """Why a call of `name`, which no listed tool answers, cannot run: an unavailable server the key may use owns it.

    None when no such server could own it, or the key may not use it (then the name is unknown to this
    key, as before). A policy that does not answer is said so."""
    owners = catalog.down_owners(name)
    if not owners:
        return None
    answer = await path.visible(ctx.caller, PairList.of(owners), ctx.include_servers, ctx.include_tools)
    if answer.error is not None:
        return Unavailable(owners[0][0], owners[0][1], answer.error)
    if not answer.allowed:
        return None
    server, tool = owners[answer.allowed[0]]
    status = catalog.down[server]
    message = f"server {server!r} is unavailable: {status.error or 'not connected'}"
    if not status.namespace:  # its tools keep their own names: it may or may not offer this one
        message += f" ({name!r} may be one of its tools; they are listed again once it is back)"
    else:
        message += " (its tools are listed again once it is back)"
    return Unavailable(server, tool, GatewayError(kind=ErrorKind.UPSTREAM_UNAVAILABLE, message=message))


def with_down_servers(result: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """`result` with the unavailable servers named in its `_meta`, when there are any."""
    if not names:
        return result
    meta = result.get("_meta")
    return {**result, "_meta": {**(meta if isinstance(meta, dict) else {}), UNAVAILABLE_META_KEY: names}}


def health_body(ready: bool, catalog: Catalog) -> dict[str, Any]:
    """`/healthz`'s answer.

    `starting` until connected and caught up, then `ok`, or `degraded` while a configured server is
    unavailable (still served with 200: the gateway works, for the other servers; a probe must not
    restart it for a server it cannot fix), naming those servers, and those whose whole listing (tools,
    prompts, resources) it serves (`ready`): a configured server in neither list is still starting
    (`bastion up` waits for it before its banner)."""
    down = down_names(catalog)
    status = "starting" if not ready else "degraded" if down else "ok"
    return {"status": status, "tools": len(catalog.entries), "unavailable": down, "ready": sorted(catalog.ready)}
