"""An MCP server's skills (`io.modelcontextprotocol/skills`, docs/skills.md).

`skills/list`, every page, when the server declares the extension. An entry that is malformed or over the
extension's limits (`skills.skill_problem`) is left out, named in the log."""

from __future__ import annotations

import logging
from typing import Any, Final

from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

from libs.common.contracts.skills import EXTENSION, skill_problem

from ...error_mapping import describe_exception
from .upstream_tasks import send_raw

__all__ = ["declares_skills", "list_skills"]

log = logging.getLogger(__name__)

_MAX_PAGES: Final = 20
_MAX_SKILLS: Final = 1000
"""Skills kept per server: each is in the catalog every ingress holds."""


def declares_skills(capabilities: dict[str, Any]) -> bool:
    extensions = capabilities.get("extensions")
    return isinstance(extensions, dict) and isinstance(extensions.get(EXTENSION), dict)


async def list_skills(session: ClientSession, server: str) -> list[dict[str, Any]]:
    skills: list[dict[str, Any]] = []
    cursor: str | None = None
    try:
        for _ in range(_MAX_PAGES):
            page = await send_raw(session, "skills/list", {"cursor": cursor} if cursor else {})
            for entry in page.get("skills") or []:
                if (problem := skill_problem(entry)) is not None:
                    log.warning("upstream %s: skill %r not served: %s", server, _named(entry), problem)
                elif len(skills) < _MAX_SKILLS:
                    skills.append(entry)
            cursor = page.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
    except MCPError as exc:
        log.warning("upstream %s: skills/list failed (%s); listing none", server, describe_exception(exc))
    return skills


def _named(entry: Any) -> Any:
    return entry.get("uri") if isinstance(entry, dict) else entry
