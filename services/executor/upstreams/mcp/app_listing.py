"""An MCP server's apps (`ui://` resources, docs/mcp-apps.md) read when it is listed.

So pinning can hold them to what was approved: an app is its HTML, and a changed app is drift like a
changed tool.

Which apps: every `ui://` resource the server lists and every one its tools name
(`_meta.ui.resourceUri`), at most `MAX_APPS`; what is pinned of each: `ui_apps.app_definition`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

from libs.common.contracts.ui_apps import SCHEME, app_definition, linked_app

from ...error_mapping import describe_exception

__all__ = ["MAX_APPS", "read_apps"]

log = logging.getLogger(__name__)

MAX_APPS: Final = 32
"""Apps read per listing: each is one `resources/read` on every listing of the server."""


def _app_uris(tools: Iterable[dict[str, Any]], resources: Iterable[dict[str, Any]]) -> list[str]:
    named = [r["uri"] for r in resources if isinstance(r.get("uri"), str) and r["uri"].startswith(SCHEME)]
    named += [uri for tool in tools if (uri := linked_app(tool)) is not None]
    return list(dict.fromkeys(named))


async def read_apps(
    session: ClientSession, server: str, tools: list[dict[str, Any]], resources: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The pinned definition of each app of the server.

    One it fails to read is left out: it is not served either (a read of it is refused by pinning until
    it reads as approved)."""
    uris = _app_uris(tools, resources)
    if len(uris) > MAX_APPS:
        log.warning("upstream %s names %d apps; pinning reads the first %d", server, len(uris), MAX_APPS)
    listed = {r["uri"]: r for r in resources if isinstance(r.get("uri"), str)}
    apps = []
    for uri in uris[:MAX_APPS]:
        try:
            read = await session.read_resource(uri)
        except MCPError as exc:
            log.warning("upstream %s: reading app %s failed (%s)", server, uri, describe_exception(exc))
            continue
        contents = [c.model_dump(by_alias=True, mode="json", exclude_none=True) for c in read.contents]
        apps.append(app_definition(uri, listed.get(uri), contents))
    return apps
