"""Every NATS payload, as one pydantic model each, importable from here whichever module holds it:
`messages_base` (the envelope, ids, `Caller`, `GatewayError`), `messages_routed` (the request path
and Code Mode), `messages_records` (KV records and catalogs), `messages_audit` (audit events and
queries).

Request-path messages (`ToolCall`, `CallOutcome`, ...) are serialized with orjson-backed
`model_dump_json` and parsed with `model_validate_json`: both run in pydantic-core, no Python loop.
MCP bodies inside them (tool definitions, call results) stay as the wire dicts of `mcp.types`.
"""

from __future__ import annotations

from .messages_audit import (
    AuditBatch,
    AuditEvent,
    AuditKind,
    AuditQuery,
    AuditRows,
    AuditVerdict,
    AuditVerify,
    ChainVoucher,
    FlaggedEvent,
    TamperKind,
    audit_events,
)
from .messages_base import SCHEMA_VERSION, Caller, Execution, GatewayError, InterceptorDecision, new_id
from .messages_records import BreakerStatus, CatalogTool, KeyRecord, ServerCatalog, ServerRecord
from .messages_routed import (
    REFUNDED,
    CallOutcome,
    CancelCall,
    CancelExecution,
    ClientReply,
    CodeModeAnswer,
    CodeModeCall,
    Grant,
    PairList,
    Refund,
    ResourceUpdated,
    RoutedHead,
    StreamEvent,
    ToolCall,
    UpstreamRequest,
    VisibleTools,
    VisibleToolsQuery,
    decode_outcome,
    encode_outcome,
    pairs_digest,
)

__all__ = [
    "REFUNDED",
    "SCHEMA_VERSION",
    "AuditBatch",
    "AuditEvent",
    "AuditKind",
    "AuditQuery",
    "AuditRows",
    "AuditVerdict",
    "AuditVerify",
    "BreakerStatus",
    "CallOutcome",
    "Caller",
    "CancelCall",
    "CancelExecution",
    "CatalogTool",
    "ChainVoucher",
    "ClientReply",
    "CodeModeAnswer",
    "CodeModeCall",
    "Execution",
    "FlaggedEvent",
    "GatewayError",
    "Grant",
    "InterceptorDecision",
    "KeyRecord",
    "PairList",
    "Refund",
    "ResourceUpdated",
    "RoutedHead",
    "ServerCatalog",
    "ServerRecord",
    "StreamEvent",
    "TamperKind",
    "ToolCall",
    "UpstreamRequest",
    "VisibleTools",
    "VisibleToolsQuery",
    "audit_events",
    "decode_outcome",
    "encode_outcome",
    "new_id",
    "pairs_digest",
]
