"""The discovery-mode contract.

`tools/list` offers a small pinned set plus `find_tools`, and the tools an agent finds become listed
(and, as always, callable by name) for the rest of its session.

For agents that do not use Code Mode but face a catalog too large to list (docs/code-mode.md,
"Discovery mode"). Ingress lists `FIND_TOOLS` and sends calls to it to the codemode service, which
searches the caller's view (`CodeModeCall` with tool `find_tools`) and answers the (server, tool)
pairs found; ingress names them as its catalog does and remembers them for the session.
"""

from __future__ import annotations

from typing import Any, Final

from libs.common.contracts.codemode import on_off

__all__ = ["DISCOVERY_HEADER", "FIND_TOOLS", "FIND_TOOLS_NAME", "MAX_FOUND", "discovery_choice"]

DISCOVERY_HEADER: Final = "x-bastion-discovery"
"""Request header `X-Bastion-Discovery: on|off`: overrides the key's `discovery` setting."""

FIND_TOOLS_NAME: Final = "find_tools"
MAX_FOUND: Final = 20

FIND_TOOLS: Final[dict[str, Any]] = {
    "name": FIND_TOOLS_NAME,
    "description": (
        "Search every tool you may use by what you need done (plain words; product names help). "
        "Answers the best matches with their full definitions; call them by name right away. "
        "Found tools are also added to your tool list."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "the need, e.g. 'revert the deployment'"},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_FOUND, "default": 5},
        },
        "required": ["query"],
        "additionalProperties": False,
    },
}


def discovery_choice(header: str | None, key_default: bool) -> bool | str:
    """Whether a request is in discovery mode: the header if given (`on`/`off`), else the key's setting.

    Returns an error message (str) for any other header value."""
    return on_off(header, key_default, "X-Bastion-Discovery")
