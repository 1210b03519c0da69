"""Error kinds and codes that cross service boundaries.

Services report failures as a `GatewayError` (kind + message). Ingress alone decides how a kind
reaches the agent: a JSON-RPC error with the code below, or an HTTP status before any JSON-RPC
(authentication). One kind may instead become a tool result with `isError: true`: invalid
arguments, for agents on 2025-11-25 and later (SEP-1303; see `services.ingress.protocol`).
The two standard codes are JSON-RPC 2.0's own (the same values as `mcp_types`', written here because
importing that package builds every protocol model, a quarter-second in each process that only needs two
integers); Bastion's own live in -32050..-32079, clear of the codes MCP itself assigns (-32000, -32001,
-32020..-32022, -32042).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["INTERNAL_ERROR", "INVALID_PARAMS", "JSONRPC_CODE", "ErrorKind"]

INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603


class ErrorKind(StrEnum):
    UNKNOWN_TOOL = "unknown_tool"
    INVALID_ARGUMENTS = "invalid_arguments"
    FORBIDDEN = "forbidden"
    KEY_REVOKED = "key_revoked"
    RATE_LIMITED = "rate_limited"
    BUDGET_EXCEEDED = "budget_exceeded"
    APPROVAL_REQUIRED = "approval_required"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_ERROR = "upstream_error"
    CIRCUIT_OPEN = "circuit_open"
    CANCELLED = "cancelled"
    RESULT_TOO_LARGE = "result_too_large"
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
    GATEWAY_TIMEOUT = "gateway_timeout"
    POLICY_UNAVAILABLE = "policy_unavailable"
    INTERNAL = "internal"


JSONRPC_CODE: Final[dict[ErrorKind, int]] = {
    ErrorKind.UNKNOWN_TOOL: INVALID_PARAMS,  # what the MCP spec prescribes for an unknown tool
    ErrorKind.INVALID_ARGUMENTS: INVALID_PARAMS,  # agents before 2025-11-25; later ones get an isError result
    ErrorKind.FORBIDDEN: -32050,
    ErrorKind.KEY_REVOKED: -32051,
    ErrorKind.RATE_LIMITED: -32052,
    ErrorKind.BUDGET_EXCEEDED: -32053,
    ErrorKind.APPROVAL_REQUIRED: -32055,  # parked for a person: call again naming the approval (docs/approvals.md)
    ErrorKind.UPSTREAM_UNAVAILABLE: -32060,
    ErrorKind.UPSTREAM_TIMEOUT: -32061,
    ErrorKind.UPSTREAM_ERROR: -32062,
    ErrorKind.CIRCUIT_OPEN: -32063,  # the executor refused at once: the server failed repeatedly
    ErrorKind.CANCELLED: -32064,  # the agent cancelled the request (it ignores the answer, per the spec)
    ErrorKind.RESULT_TOO_LARGE: -32065,  # the upstream answered, with more than BASTION_MAX_RESULT_BYTES
    ErrorKind.GATEWAY_UNAVAILABLE: -32070,
    ErrorKind.GATEWAY_TIMEOUT: -32071,
    ErrorKind.POLICY_UNAVAILABLE: -32072,  # the active Cedar policies cannot be loaded: refused, not run
    ErrorKind.INTERNAL: INTERNAL_ERROR,
}
"""JSON-RPC code for each kind. An upstream's own JSON-RPC error keeps the upstream's code."""
