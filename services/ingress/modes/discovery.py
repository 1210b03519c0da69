"""Discovery mode at the edge (docs/code-mode.md, "Discovery mode").

For a key or request in discovery mode, `tools/list` answers the key's pinned tools, the tools its
session has found, and `find_tools`; a `find_tools` call is searched by the codemode service over the
caller's own view (sent like a Code Mode meta-tool, audited as one) and answered here with the tools'
gateway names and full definitions, which the session's later `tools/list` answers include. A session
whose list grew is told so (`notifications/tools/list_changed` on its stream; sessionless agents on the
`subscriptions/listen` streams of their key): desktop agents offer their model only the tools of their
own copy of the list, refreshed on that notification. Any tool the key may use stays callable by name
whether listed or not (policy decides, as always).

What a session found is remembered by this replica (bounded); an agent without a session (the
2026-07-28 protocol has none) shares what it found with the other sessionless agents of its key, which
lists nothing they could not call anyway. An agent whose next request reaches another replica lists
the pinned set again, and can still call what it found by name.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from mcp_types import INVALID_REQUEST

from libs.common.contracts.discovery import FIND_TOOLS, FIND_TOOLS_NAME, discovery_choice
from services.ingress.auth.keys import KeyDirectory
from services.ingress.catalog.aggregated import Catalog, CatalogEntry
from services.ingress.modes.codemode import CodeModeRouter
from services.ingress.protocol import error_body

__all__ = ["DiscoveryRouter"]

_SESSIONS: Final = 10_000
_FOUND_PER_SESSION: Final = 200


class DiscoveryRouter:
    def __init__(
        self,
        keys: KeyDirectory,
        catalog: Catalog,
        code_mode: CodeModeRouter,
        list_grew: Callable[[str, str], None] = lambda key_id, session: None,
    ) -> None:
        self.keys, self.catalog, self.code_mode = keys, catalog, code_mode
        self._list_grew = list_grew
        """Called with the key and session ("": the key's sessionless agents) whose found tools gained
        one (their streams are told)."""
        self._found: OrderedDict[tuple[str, str], list[str]] = OrderedDict()
        """(key id, session or "") -> gateway names its agent found, oldest first."""

    async def dispatch(
        self, ctx: Any, method: str, params: dict[str, Any], tools_list: Callable[[Any], Awaitable[dict[str, Any]]]
    ) -> tuple[dict[str, Any], Any] | None:
        """The answer (and audit event) when the request is discovery mode's to answer, else None.

        `tools_list` answers `tools/list` with the key's whole view, every filter layer applied."""
        if method not in ("tools/list", "tools/call"):
            return None
        enabled, pinned = self.keys.discovery(ctx.caller.key_id)
        choice = discovery_choice(ctx.discovery, enabled)
        if isinstance(choice, str):
            return error_body(ctx.request_id, INVALID_REQUEST, choice), None
        if not choice:
            return None
        if method == "tools/list":
            return await self._list(ctx, tools_list, set(pinned)), None
        if params.get("name") != FIND_TOOLS_NAME:
            return None  # a tool called by name: policy decides as usual
        body, audit = await self.code_mode.route(ctx, FIND_TOOLS_NAME, params)
        result = body.get("result")
        if isinstance(result, dict) and not result.get("isError"):
            view = await self.code_mode.view(ctx.caller)  # the found tools are named as the caller is listed them
            result.update(
                self._answer(ctx, result, view.by_name if view is not None else self.catalog.by_name)
            )  # the version's own fields (resultType) stay
        return body, audit

    async def _list(
        self, ctx: Any, tools_list: Callable[[Any], Awaitable[dict[str, Any]]], pinned: set[str]
    ) -> dict[str, Any]:
        body = await tools_list(ctx)
        result = body.get("result")
        if not isinstance(result, dict):
            return body
        tools = result["tools"]
        if isinstance(tools, orjson.Fragment):  # the handlers' cached encoding
            tools = orjson.loads(orjson.dumps(tools))
        keep = pinned | set(self._found.get((ctx.caller.key_id, ctx.session or ""), []))
        result["tools"] = [tool for tool in tools if tool.get("name") in keep] + [FIND_TOOLS]
        return body

    def _answer(self, ctx: Any, result: dict[str, Any], listed: dict[str, CatalogEntry]) -> dict[str, Any]:
        found = (result.get("structuredContent") or {}).get("found") or []
        names = {(entry.server, entry.tool): entry for entry in listed.values()}
        entries = [names[(server, tool)] for server, tool in found if (server, tool) in names]
        definitions = [
            {key: entry.definition[key] for key in ("name", "description", "inputSchema") if key in entry.definition}
            for entry in entries
        ]
        self._remember((ctx.caller.key_id, ctx.session or ""), [entry.name for entry in entries])
        lexical = (result.get("structuredContent") or {}).get("lexical_only")
        count = f"{len(entries)} tool{'' if len(entries) == 1 else 's'} found"
        head = f"{count}; call them by name" + (f" (lexical only: {lexical})" if lexical else "")
        lines = [head, *(orjson.dumps(definition).decode() for definition in definitions)]
        return {"content": [{"type": "text", "text": "\n".join(lines)}], "structuredContent": {"tools": definitions}}

    def _remember(self, session: tuple[str, str], names: list[str]) -> None:
        known = self._found.pop(session, [])
        grew = not set(names) <= set(known)
        known = [name for name in known if name not in names] + names
        self._found[session] = known[-_FOUND_PER_SESSION:]
        while len(self._found) > _SESSIONS:
            self._found.popitem(last=False)
        if grew:
            self._list_grew(*session)
