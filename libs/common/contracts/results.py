"""Results as an agent of a given protocol revision must get them, and the wire form they travel in.

The executor shapes an upstream's result for the agent's revision (`shape_result`, told the
revision by `ToolCall.version` / `UpstreamRequest.version`) and encodes it once; ingress splices
those bytes into its JSON-RPC answer without parsing them (`messages.encode_outcome`). Ingress
shapes its own results (`initialize`, lists) with the same function.
"""

from __future__ import annotations

from typing import Any, Final

from mcp_types import SERVER_INFO_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from libs.common.contracts import json_codec

__all__ = ["SERVER_INFO", "encode_result", "shape_result", "unstamped"]

SERVER_INFO: Final = {"name": "bastion", "title": "Bastion MCP gateway", "version": "0.1.0"}

_LATER_RESULT_FIELDS: Final = frozenset(("resultType", "ttlMs", "cacheScope"))
"""A set: whether a result holds any is one C call (`isdisjoint`), no generator."""


def unstamped(result: dict[str, Any]) -> dict[str, Any]:
    """An upstream's result without its own `serverInfo` stamp (copied only where it had one).

    The stamp names who answered, and to the agent that is Bastion: `shape_result` stamps Bastion's own
    or drops it, so the upstream's never travels further. Dropped where the result arrives, it is not
    read by the checks on the way either (the guardrails walked its strings and joined them on every
    call of a modern server)."""
    meta = result.get("_meta")
    if meta.__class__ is not dict or SERVER_INFO_META_KEY not in meta:
        return result
    rest = {key: value for key, value in meta.items() if key != SERVER_INFO_META_KEY}
    if rest:
        return {**result, "_meta": rest}
    return {key: value for key, value in result.items() if key != "_meta"}


def shape_result(result: dict[str, Any], version: str) -> dict[str, Any]:
    """Fit a result (ours or an upstream's, of any revision) to the agent's revision.

    Modern agents get the required `resultType` and Bastion's `serverInfo` stamp (an upstream's
    own stamp would misreport who answered); handshake-era agents get neither, nor cache hints.
    """
    if version in MODERN_PROTOCOL_VERSIONS:
        meta = result.get("_meta")
        stamped = (
            {**meta, SERVER_INFO_META_KEY: SERVER_INFO}
            if isinstance(meta, dict)
            else {SERVER_INFO_META_KEY: SERVER_INFO}
        )
        return {**result, "resultType": result.get("resultType") or "complete", "_meta": stamped}
    if not _LATER_RESULT_FIELDS.isdisjoint(result):
        result = {k: v for k, v in result.items() if k not in _LATER_RESULT_FIELDS}
    return unstamped(result)


def encode_result(result: dict[str, Any]) -> bytes:
    """JSON of an upstream's result. orjson refuses integers beyond 64 bits and nesting past 255 levels.

    Both valid JSON an upstream may send: the standard library encodes those. Raises `ValueError` for
    what neither can encode."""
    try:
        return json_codec.dumps(result)
    except ValueError as exc:
        raise ValueError(f"the result {exc}") from None
