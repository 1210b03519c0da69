"""Size caps on what a JSON-RPC request names.

Method, id, tool / prompt name, resource URI, `_meta`, and the items of the narrowing headers.

A request is held to them before it reaches a handler, so nothing oversized is looked up,
forwarded to policy, written into an audit event, or compiled into a pattern. A refusal names
the field, its size and the limit. Pure functions: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from mcp_types import INVALID_PARAMS, INVALID_REQUEST

from services.ingress.protocol import error_body

__all__ = ["FieldLimits", "Oversized", "header_patterns", "oversized"]

_INT64 = (-(2**63), 2**64 - 1)
"""What an integer id may be: orjson, and most JSON-RPC peers, stop at 64 bits."""


@dataclass(frozen=True, slots=True)
class FieldLimits:
    method_chars: int = 128
    id_chars: int = 256
    name_chars: int = 256
    uri_chars: int = 8192
    meta_bytes: int = 16 * 1024
    include_patterns: int = 64
    pattern_chars: int = 256


@dataclass(frozen=True, slots=True)
class Oversized:
    field: str
    size: int
    limit: int
    unit: str = "characters"

    def describe(self) -> str:
        return f"{self.field} is {self.size} {self.unit} long; this gateway accepts at most {self.limit}"

    def body(self, request_id: Any) -> dict[str, Any]:
        code = INVALID_REQUEST if self.field in ("method", "id") or self.field.startswith("header") else INVALID_PARAMS
        data = {"field": self.field, "size": self.size, "limit": self.limit, "unit": self.unit}
        return error_body(request_id, code, self.describe(), data)


def oversized(message: dict[str, Any], limits: FieldLimits) -> Oversized | None:
    """The first field of a JSON-RPC message over its cap, or None.

    Each field looked up once, by membership and subscript rather than `dict.get` (a call each, seven a
    request); the usual request names no `ref`: one pass over its params. JSON values are of their
    exact types, so `type(...) is` asks what `isinstance` would."""
    if "method" in message and type(method := message["method"]) is str and len(method) > limits.method_chars:
        return Oversized("method", len(method), limits.method_chars)
    request_id = message["id"] if "id" in message else None
    if type(request_id) is str:
        if len(request_id) > limits.id_chars:
            return Oversized("id", len(request_id), limits.id_chars)
    elif type(request_id) is int and not _INT64[0] <= request_id <= _INT64[1]:
        return Oversized("id", request_id.bit_length(), 64, "bits")
    if "params" not in message or type(params := message["params"]) is not dict:
        return None
    named: tuple[tuple[str, dict[str, Any]], ...] = (("params", params),)
    if "ref" in params and type(ref := params["ref"]) is dict:
        named = (("params", params), ("params.ref", ref))
    for where, fields in named:
        if "name" in fields and type(name := fields["name"]) is str and len(name) > limits.name_chars:
            return Oversized(f"{where}.name", len(name), limits.name_chars)
        if "uri" in fields and type(uri := fields["uri"]) is str and len(uri) > limits.uri_chars:
            return Oversized(f"{where}.uri", len(uri), limits.uri_chars)
    if "_meta" in params and (meta := params["_meta"]) is not None:
        if (size := _json_size(meta, limits.meta_bytes)) > limits.meta_bytes:
            return Oversized("params._meta", size, limits.meta_bytes, "bytes")
    return None


def header_patterns(name: str, value: str | None, limits: FieldLimits) -> tuple[str, ...] | Oversized | None:
    """A comma-separated narrowing header (`X-Bastion-Include-*`) as its items.

    None when absent (an empty header narrows to nothing); an `Oversized` when it has too many or too
    long items."""
    if value is None:
        return None
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    if len(items) > limits.include_patterns:
        return Oversized(f"header {name}", len(items), limits.include_patterns, "items")
    for item in items:
        if len(item) > limits.pattern_chars:
            return Oversized(f"header {name} item", len(item), limits.pattern_chars)
    return items


def _json_size(value: Any, limit: int) -> int:
    try:
        return len(orjson.dumps(value))
    except TypeError:  # too deep or an integer beyond 64 bits: over any sane cap
        return limit + 1
