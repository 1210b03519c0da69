"""What a plain lean `tools/call` of one tool sends, worked out once and kept (`lean_session`).

The SDK session's stamp (`ClientSession._stamp`) adds the era's `_meta` (protocol version, client info,
capabilities, a default log level) and the `Mcp-*` headers (version, method, the tool's name, and
`Mcp-Param-*` mirrored from the arguments) to every request: ~18 Python calls per call, every time
with the same outcome for the same tool, except the `Mcp-Param-*` headers of a tool whose schema
declares some (those calls keep the SDK's stamp per call). So the stamp is run once per tool on a probe
and its outcome kept, with the request's head around it, for as long as the session keeps that stamp.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.client.session import ClientSession
from mcp.shared.dispatcher import CallOptions

from ...answer_limits import answer_cutoff
from .lean import HttpLink
from .lean_results import result_checks

__all__ = ["ToolPlan", "plan_tool_call"]

_MARK = object()
"""A `_meta` value of the second probe: the stamp left it where it only sets a default."""
_PARAMS = frozenset(("name", "arguments", "_meta"))
"""All a `tools/call`'s params may hold after stamping for the stamp to be kept."""


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """A tool's stamp and request head on one session, for one `authorization` (the head: HTTP only)."""

    stamp: Callable[[dict[str, Any], CallOptions], None]
    """The session's stamp it was worked out from: a renegotiated session has another one."""
    forced: dict[str, Any]
    """`_meta` the stamp sets over the caller's."""
    defaults: dict[str, Any]
    """`_meta` the stamp sets where the caller set none."""
    meta: dict[str, Any] | None
    """The whole `_meta` of a call that brings none (None: the stamp adds none, as before 2026-07-28)."""
    headers: dict[str, str]
    """The POST's headers (`HttpLink.headers`): for the general path and for resuming a cut SSE answer."""
    before: bytes
    after: bytes
    """The POST's head around its content-length value (`HttpPool.head`)."""
    version: str
    """The session's protocol version: which result checks apply (`lean_results.checked`)."""
    validate: Callable[..., Any] | None
    foreign: frozenset[str]
    """`lean_results.result_checks` for `version`: what a result with no `ttlMs` needs."""
    cutoff: int | None
    """Bytes of a JSON answer read at most (`answer_limits.answer_cutoff`), None: no limit."""


def plan_tool_call(
    session: ClientSession, link: HttpLink | None, tool: str, authorization: str | None
) -> ToolPlan | None:
    """`tool`'s plan on `session`, or None when the stamp does something a kept plan cannot repeat.

    `link` None: a pipe's (stdio, SSE) call, which has no HTTP head."""
    stamp = session._stamp
    opts: CallOptions = {}
    first: dict[str, Any] = {"method": "tools/call", "params": {"name": tool, "arguments": {}}}
    stamp(first, opts)
    params = first["params"]
    meta = params.get("_meta", {})
    if first.keys() != {"method", "params"} or not _PARAMS.issuperset(params) or not isinstance(meta, dict):
        return None
    second: dict[str, Any] = {"method": "tools/call", "params": {"name": tool, "arguments": {}, "_meta": {}}}
    second["params"]["_meta"] = dict.fromkeys(meta, _MARK)
    stamp(second, {})
    kept = second["params"]["_meta"]
    headers = link.headers(authorization, opts.get("headers")) if link is not None else {}
    version = session.protocol_version or "2025-11-25"
    forced = {key: value for key, value in meta.items() if kept.get(key) is not _MARK}
    defaults = {key: value for key, value in meta.items() if kept.get(key) is _MARK}
    cutoff = None if link is None or link.max_result is None else answer_cutoff(link.max_result)
    head, checks = link.http.head(headers) if link is not None else (b"", b""), result_checks("tools/call", version)
    return ToolPlan(stamp, forced, defaults, meta or None, headers, *head, version, *checks, cutoff)
