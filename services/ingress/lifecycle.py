"""What Bastion says about itself: `initialize`'s answer and 2026-07-28 `server/discover`."""

from __future__ import annotations

from typing import Any

from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from libs.common.contracts.gateway_tasks import LEGACY_TASKS_VERSION, TASKS_EXTENSION
from libs.common.contracts.skills import EXTENSION as SKILLS_EXTENSION
from services.ingress.protocol import SERVER_INFO

__all__ = ["discovery", "initialize_result"]

_INSTRUCTIONS = (
    "Tools and prompts from every upstream MCP server behind this Bastion gateway, namespaced as "
    "<server>__<name>, and their resources under their own URIs. You see only what your key is allowed to use."
)


def capabilities(version: str) -> dict[str, Any]:
    """Everything Bastion proxies, whatever servers are connected right now (lists may be empty).

    2026-07-28 dropped `logging`; its change notifications and resource updates travel on
    `subscriptions/listen` streams. MCP tasks (docs/tasks.md): 2025-11-25's experimental `tasks`, the
    2026-07-28 tasks extension."""
    if version in MODERN_PROTOCOL_VERSIONS:
        return {
            "tools": {"listChanged": True},
            "prompts": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "completions": {},
            "extensions": {TASKS_EXTENSION: {}},
        }
    handshake: dict[str, Any] = {
        "tools": {"listChanged": True},
        "prompts": {"listChanged": True},
        "resources": {"subscribe": True, "listChanged": True},
        "completions": {},
        "logging": {},
    }
    if version == LEGACY_TASKS_VERSION:
        handshake["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    return handshake


def _with_skills(declared: dict[str, Any], skills: bool) -> dict[str, Any]:
    """The Skills extension is declared only when there is a skill to serve (docs/skills.md)."""
    if not skills:
        return declared
    return {**declared, "extensions": {**declared.get("extensions", {}), SKILLS_EXTENSION: {}}}


def initialize_result(version: str, skills: bool = False) -> dict[str, Any]:
    """The result of a handshake in `version` (already negotiated); `skills`: there are skills to serve."""
    return {
        "protocolVersion": version,
        "capabilities": _with_skills(capabilities(version), skills),
        "serverInfo": SERVER_INFO,
        "instructions": _INSTRUCTIONS,
    }


def discovery(skills: bool = False) -> dict[str, Any]:
    """The result of `server/discover`; `skills` as for `initialize_result`."""
    return {
        "supportedVersions": list(MODERN_PROTOCOL_VERSIONS),
        "capabilities": _with_skills(capabilities(MODERN_PROTOCOL_VERSIONS[-1]), skills),
        "instructions": _INSTRUCTIONS,
        "cacheScope": "private",
        "ttlMs": 0,
    }
