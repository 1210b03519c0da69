"""Every NATS payload, as one pydantic model each, importable from here whichever module holds it.

`messages_base` (the envelope, ids, `Caller`, `GatewayError`), `messages_routed` (the request path),
`messages_outcome` (its outcome and refunds), `messages_policy` (grants and visible tools),
`messages_codemode` (Code Mode's calls), `messages_records` (KV records and catalogs), `messages_audit`
(audit events and queries).

Request-path messages (`ToolCall`, `CallOutcome`, ...) are serialized with orjson-backed
`model_dump_json` and parsed with `model_validate_json`: both run in pydantic-core, no Python loop.
MCP bodies inside them (tool definitions, call results) stay as the wire dicts of `mcp.types`.
"""

from __future__ import annotations

from libs.common.contracts import (
    messages_audit,
    messages_codemode,
    messages_outcome,
    messages_policy,
    messages_records,
    messages_routed,
)
from libs.common.contracts.messages_audit import *  # noqa: F403
from libs.common.contracts.messages_base import (
    SCHEMA_VERSION,
    Caller,
    Execution,
    GatewayError,
    InterceptorDecision,
    new_id,
)
from libs.common.contracts.messages_codemode import *  # noqa: F403
from libs.common.contracts.messages_outcome import *  # noqa: F403
from libs.common.contracts.messages_policy import *  # noqa: F403
from libs.common.contracts.messages_records import *  # noqa: F403
from libs.common.contracts.messages_routed import *  # noqa: F403

__all__ = ["SCHEMA_VERSION", "Caller", "Execution", "GatewayError", "InterceptorDecision", "new_id"]
__all__ += messages_audit.__all__
__all__ += messages_records.__all__
__all__ += messages_routed.__all__
__all__ += messages_outcome.__all__
__all__ += messages_policy.__all__
__all__ += messages_codemode.__all__
