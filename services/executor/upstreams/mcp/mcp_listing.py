"""What one MCP server lists: its tools, prompts, resources and resource templates.

Listed on connect and again whenever the server announces a change, every page, kept as wire
JSON for the catalog (ingress aggregates and answers the lists from memory). A server that does
not declare a capability is not asked for it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import PaginatedRequestParams

from ...error_mapping import describe_exception
from ..interface import Features, Listing
from .app_listing import read_apps
from .skill_listing import declares_skills, list_skills

__all__ = ["LIST_CHANGED", "list_everything", "list_features", "list_tool_definitions"]

log = logging.getLogger(__name__)

_MAX_PAGES = 100
"""A paginating server that never ends its listing must not hang the connection."""


async def list_everything(session: ClientSession, server: str) -> Listing:
    definitions = await list_tool_definitions(session)
    features = await list_features(session, server)
    if "resources" in features.capabilities:  # its apps, read for pinning (docs/mcp-apps.md)
        apps = await read_apps(session, server, definitions, features.resources)
        features = dataclasses.replace(features, apps=apps)
    return Listing(definitions, features)


async def list_tool_definitions(session: ClientSession) -> list[dict[str, Any]]:
    """Every page of `tools/list`, as wire JSON (camelCase, no nulls) for the catalog."""
    definitions: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        definitions += [t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in page.tools]
        cursor = page.next_cursor
        if not cursor:
            break
    return definitions


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
    skills = await list_skills(session, server) if declares_skills(capabilities) else []
    return Features(capabilities, prompts, resources, templates, skills=skills)


async def _every_page(
    server: str, method: str, fetch: Callable[[PaginatedRequestParams | None], Awaitable[Any]], attribute: str
) -> list[dict[str, Any]]:
    """Every page of one listing.

    A server that declares a capability but fails to list it keeps its tools: the listing is logged and
    left empty rather than failing the whole connection."""
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
