"""What an audit event records of a request's content: the JSON itself, or only its sha256.

Sizes are always recorded (`request_bytes`, `response_bytes`); the content only when content
logging is on for both the deployment (`BASTION_AUDIT_CONTENT`) and the key (`content_logging`).
The digest is taken over the whole JSON before any size cut, so it identifies the exact content
either way (a value you hold can be checked against it). A value given as JSON bytes (a tool call's
result, which travels from the upstream to the agent unparsed) is recorded and digested as those very
bytes: what the agent received, without parsing it again for the audit.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["content_fields", "to_json"]


def to_json(value: Any) -> str:
    """Compact JSON with sorted keys: the same content always gives the same digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_fields(arguments: Any, result: Any, *, keep: bool) -> dict[str, str | None]:
    """`arguments`, `result` and their `*_sha256` for an `AuditEvent`; absent values stay None. Either
    may be JSON bytes, recorded as they are."""
    fields: dict[str, str | None] = {}
    for name, value in (("arguments", arguments), ("result", result)):
        if value is None:
            continue
        data = value if isinstance(value, bytes) else to_json(value).encode("utf-8", "surrogatepass")
        fields[f"{name}_sha256"] = hashlib.sha256(data).hexdigest()
        fields[name] = data.decode("utf-8", "replace") if keep else None
    return fields
