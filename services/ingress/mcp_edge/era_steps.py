"""The steps of `/mcp` that place a request.

What its headers ask for (`BuildContext`), which protocol era it speaks and, in the handshake era, which
session it belongs to (`ResolveEra`); and `DELETE /mcp`, which ends a session on every replica
(`EndSession`)."""

from __future__ import annotations

import logging
from typing import Any

from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    NAME_BEARING_METHODS,
    InboundLadderRejection,
    classify_inbound_request,
    decode_header_value,
    find_duplicated_routing_header,
)
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    HEADER_MISMATCH,
    PROTOCOL_VERSION_META_KEY,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, KNOWN_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from libs.common.contracts.codemode import CODE_MODE_HEADER
from libs.common.contracts.discovery import DISCOVERY_HEADER
from libs.common.contracts.ui_apps import HOST, declared_in_request
from services.ingress.context import RequestContext
from services.ingress.field_limits import FieldLimits, Oversized, header_patterns
from services.ingress.mcp_edge.answers import plain
from services.ingress.mcp_edge.chain import Answering, Check, Exchange, Refusal
from services.ingress.mcp_edge.jsonrpc_steps import SESSION_HEADER
from services.ingress.protocol import DEFAULT_LEGACY_VERSION, error_body
from services.ingress.sessions.session_ids import LiveSessions, SessionInfo
from services.ingress.url_elicitation import ELICITS_URLS, request_declares_url_elicitation

__all__ = [
    "SESSION_GONE",
    "SESSION_NOT_FOUND",
    "BuildContext",
    "EndSession",
    "ResolveEra",
    "named_session",
    "positive_float",
]

log = logging.getLogger(__name__)

SESSION_NOT_FOUND = -32001
"""What the SDK answers for an unknown session, with HTTP 404."""
SESSION_GONE = "Session not found: it expired, was ended, belongs to another key or is invalid; send initialize again"


_SERVERS, _TOOLS, _TIMEOUT = "x-bastion-include-servers", "x-bastion-include-tools", "x-bastion-timeout"


def positive_float(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and 0 < number < 1e6 else None


class BuildContext(Check):
    """400 for a narrowing header (`X-Bastion-Include-Servers/-Tools`) with too many or too long items.

    Else the request's context: who asks, what it narrows to, how long it may take (`X-Bastion-Timeout`),
    whether it may stream, the Code Mode override."""

    __slots__ = ("limits",)

    def __init__(self, limits: FieldLimits) -> None:
        self.limits = limits

    def check(self, x: Exchange) -> Answering | None:
        message, headers = x.message, x.headers
        request_id = message["id"]
        include_servers: tuple[str, ...] | None = None  # the usual: neither header, nothing to split
        include_tools: tuple[str, ...] | None = None
        # the headers read here are rarely sent: asked by membership, not by a dict.get call each
        if _SERVERS in headers:
            if isinstance(
                found := header_patterns("X-Bastion-Include-Servers", headers[_SERVERS], self.limits), Oversized
            ):
                return Refusal(400, found.body(request_id))
            include_servers = found
        if _TOOLS in headers:
            if isinstance(found := header_patterns("X-Bastion-Include-Tools", headers[_TOOLS], self.limits), Oversized):
                return Refusal(400, found.body(request_id))
            include_tools = found
        x.method = message["method"]
        x.ctx = RequestContext(
            caller=x.caller,
            version=DEFAULT_LEGACY_VERSION,
            request_id=request_id,
            request_bytes=len(x.body),
            include_servers=include_servers,
            include_tools=include_tools,
            timeout=positive_float(headers[_TIMEOUT]) if _TIMEOUT in headers else None,
            emit=x.answer.event if x.sse_ok else None,
            code_mode=headers[CODE_MODE_HEADER] if CODE_MODE_HEADER in headers else None,
            discovery=headers[DISCOVERY_HEADER] if DISCOVERY_HEADER in headers else None,
        )
        return None


def modern_rejection(x: Exchange) -> InboundLadderRejection | None:
    """Why a 2026-07-28 request is refused.

    (The SDK's inbound ladder: envelope in `_meta`, headers mirroring it, each routing header once), or
    None."""
    if len(x.headers) != len(x.raw_headers):  # some header repeats: is it a routing header?
        pairs = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in x.raw_headers)
        if (duplicated := find_duplicated_routing_header(pairs)) is not None:
            return InboundLadderRejection(code=HEADER_MISMATCH, message=f"{duplicated} header appears more than once")
    if _accepted(x.message, x.headers):
        return None
    verdict = classify_inbound_request(x.message, headers=x.headers)
    return verdict if isinstance(verdict, InboundLadderRejection) else None


def _accepted(message: dict[str, Any], headers: dict[str, str]) -> bool:
    """True when the SDK's ladder (`classify_inbound_request`) would accept the request.

    Its rungs asked in a few lookups for the usual request, without the verdict object. False does not
    mean refused: the SDK's ladder then decides, and words the refusal."""
    params = message.get("params")
    if type(params) is not dict:
        return False
    meta = params.get("_meta")
    if type(meta) is not dict or CLIENT_CAPABILITIES_META_KEY not in meta:
        return False
    version = meta.get(PROTOCOL_VERSION_META_KEY)
    if type(version) is not str or version not in MODERN_PROTOCOL_VERSIONS:
        return False
    method = message["method"]
    if headers.get(MCP_PROTOCOL_VERSION_HEADER) != version or headers.get(MCP_METHOD_HEADER) != method:
        return False
    named = NAME_BEARING_METHODS.get(method)
    name = params.get(named) if named is not None else None
    return name is None or decode_header_value(headers.get(MCP_NAME_HEADER)) == name


class ResolveEra(Check):
    """A 2026-07-28 request must carry its envelope (in `_meta`, mirrored in headers).

    A handshake- era one names a version Bastion speaks (400) and, past `initialize`, a live session of
    its key (404): the request then speaks that session's version."""

    __slots__ = ("sessions",)

    def __init__(self, sessions: LiveSessions) -> None:
        self.sessions = sessions

    def check(self, x: Exchange) -> Answering | None:
        ctx = x.ctx
        headers = x.headers  # asked by membership and subscript: no dict.get call a header
        requested = headers[MCP_PROTOCOL_VERSION_HEADER] if MCP_PROTOCOL_VERSION_HEADER in headers else None
        x.modern = modern = requested in MODERN_PROTOCOL_VERSIONS
        if modern:
            if (rejection := modern_rejection(x)) is not None:
                status = ERROR_CODE_HTTP_STATUS.get(rejection.code, 400)
                return Refusal(status, error_body(ctx.request_id, rejection.code, rejection.message, rejection.data))
            ctx.version = requested  # type: ignore[assignment]  # modern: one of the version strings
            params = x.params
            ctx.client = (  # 2026-07-28: the agent resolves input requests itself; the rest is declared per request
                "input_required",
                *((HOST,) if declared_in_request(params) else ()),  # a host of MCP Apps
                *((ELICITS_URLS,) if request_declares_url_elicitation(params) else ()),
            )
        elif requested is not None and requested not in HANDSHAKE_PROTOCOL_VERSIONS:
            data = {"supported": list(KNOWN_PROTOCOL_VERSIONS), "requested": requested}
            message = f"Unsupported protocol version {requested!r}"
            return Refusal(400, error_body(ctx.request_id, UNSUPPORTED_PROTOCOL_VERSION, message, data))
        elif x.method != "initialize":
            if SESSION_HEADER in headers and (session_id := headers[SESSION_HEADER]):
                session = self.sessions.find(session_id, x.caller.key_id)
                if session is None:
                    return Refusal(404, error_body(ctx.request_id, SESSION_NOT_FOUND, SESSION_GONE))
                ctx.version = requested or session.protocol_version
                ctx.session = session.handle
                ctx.client = session.client
            elif requested:
                ctx.version = requested
        return None


def named_session(x: Exchange, sessions: LiveSessions, request: str) -> SessionInfo | Refusal:
    """The live session a `GET` or `DELETE` names (`request` says which, for the refusal), or why not.

    400 without an `Mcp-Session-Id`, 404 for one that is not a live session of this key."""
    session_id = x.headers.get(SESSION_HEADER)
    if not session_id:
        return Refusal(400, {"error": "missing_session", "message": f"{request} needs an Mcp-Session-Id header"})
    session = sessions.find(session_id, x.caller.key_id)
    return session if session is not None else Refusal(404, error_body(None, SESSION_NOT_FOUND, SESSION_GONE))


class EndSession:
    """`DELETE /mcp`: the agent is done with its session; every replica refuses it from now on."""

    __slots__ = ("sessions",)

    def __init__(self, sessions: LiveSessions) -> None:
        self.sessions = sessions

    async def __call__(self, x: Exchange) -> None:
        session = named_session(x, self.sessions, "DELETE")
        if isinstance(session, Refusal):
            await session(x)
            return
        try:
            await self.sessions.state.end(session.handle, session.expires_at)
        except Exception as exc:  # KV unreachable: say so rather than claim the session ended everywhere
            log.warning("cannot record the end of a session (%s)", exc)
            body: dict[str, Any] = {
                "error": "unavailable",
                "message": "the session could not be ended on every replica; retry",
            }
            await plain(x.send, 503, body)
            return
        await plain(x.send, 200, {})
