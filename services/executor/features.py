"""What one upstream offers besides tools: its prompts, resources and resource templates.

Listed on connect and again whenever the server announces a change, every page, kept as wire
JSON for the catalog (ingress aggregates and answers the lists from memory). A server that does
not declare a capability is not asked for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import PaginatedRequestParams

from .error_mapping import describe_exception

__all__ = ["Features", "list_features"]

log = logging.getLogger(__name__)

_MAX_PAGES = 100


@dataclass(frozen=True, slots=True)
class Features:
    capabilities: dict[str, Any] = field(default_factory=dict)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    resource_templates: list[dict[str, Any]] = field(default_factory=list)


async def list_features(session: ClientSession, server: str) -> Features:
    caps = session.server_capabilities
    if caps is None:
        return Features()
    capabilities = caps.model_dump(by_alias=True, mode="json", exclude_none=True)
    prompts = resources = templates = []
    if caps.prompts is not None:
        prompts = await _every_page(server, "prompts/list", lambda p: session.list_prompts(params=p), "prompts")
    if caps.resources is not None:
        resources = await _every_page(server, "resources/list", lambda p: session.list_resources(params=p), "resources")
        templates = await _every_page(
            server,
            "resources/templates/list",
            lambda p: session.list_resource_templates(params=p),
            "resource_templates",
        )
    return Features(capabilities, prompts, resources, templates)


async def _every_page(
    server: str, method: str, fetch: Callable[[PaginatedRequestParams | None], Awaitable[Any]], attribute: str
) -> list[dict[str, Any]]:
    """Every page of one listing. A server that declares a capability but fails to list it keeps
    its tools: the listing is logged and left empty rather than failing the whole connection."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    try:
        for _ in range(_MAX_PAGES):
            page = await fetch(PaginatedRequestParams(cursor=cursor) if cursor else None)
            items += [i.model_dump(by_alias=True, mode="json", exclude_none=True) for i in getattr(page, attribute)]
            cursor = page.next_cursor
            if not cursor:
                break
    except MCPError as exc:
        log.warning("upstream %s: %s failed (%s); listing none", server, method, describe_exception(exc))
    return items


LIST_CHANGED = (
    types.ToolListChangedNotification,
    types.PromptListChangedNotification,
    types.ResourceListChangedNotification,
)
"""Notifications after which the executor lists the server again."""
