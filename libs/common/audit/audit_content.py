"""What an audit event records of a request's content: the JSON itself, or only its sha256.

Sizes are always recorded (`request_bytes`, `response_bytes`); the content only when content
logging is on for both the deployment (`BASTION_AUDIT_CONTENT`) and the key (`content_logging`).
The digest is taken over the whole JSON before any size cut, so it identifies the exact content
either way (a value you hold can be checked against it). A value given as JSON bytes (a tool call's
result, which travels from the upstream to the agent unparsed) is recorded and digested as those very
bytes: what the agent received, without parsing it again for the audit.

Given the recorded size limit, content over it is cut here, before it is decoded into the event, so
recording a large result costs its digest plus the limit, not several passes over the whole (the
event's `truncated` map names the field with its size, as the publisher's own cut would).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from libs.common.contracts.messages_base import GatewayError

__all__ = ["content_fields", "error_column", "error_said", "sha256_of", "to_json"]


def to_json(value: Any) -> str:
    """Compact JSON with sorted keys: the same content always gives the same digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_of(value: Any) -> str:
    """The digest an event records of `value` (`*_sha256`): of its bytes, or of its `to_json`."""
    data = value if isinstance(value, bytes) else to_json(value).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def error_column(error: GatewayError | None) -> str | None:
    """The `error` column of a request's event.

    Readable without `audit:payloads`, so it holds our own words only (`GatewayError.logged` when the
    message carries an upstream's text or quotes arguments)."""
    if error is None:
        return None
    return error.logged if error.logged is not None else error.message


def error_said(error: GatewayError | None) -> dict[str, Any] | None:
    """What the agent was answered that `error_column` leaves out.

    As the event's `result` (a payload column, recorded under content logging and shown only with
    `audit:payloads`); None when nothing is."""
    if error is None or error.logged is None:
        return None
    said: dict[str, Any] = {"message": error.message}
    if error.data is not None:
        said["data"] = error.data
    return {"error": said}


def content_fields(
    arguments: Any, result: Any, *, keep: bool, limit: int | None = None, arguments_sha256: str | None = None
) -> dict[str, Any]:
    """`arguments`, `result` and their `*_sha256` for an `AuditEvent`.

    Plus `truncated` for those cut to `limit` UTF-8 bytes; absent values stay None. Either may be JSON
    bytes, recorded as they are. `arguments_sha256`: the digest of those bytes when the caller already
    took it (the journal's R record does), so it is not taken twice."""
    fields: dict[str, Any] = {}
    truncated: dict[str, int] = {}
    for name, value in (("arguments", arguments), ("result", result)):
        if value is None:
            continue
        text = None if isinstance(value, bytes) else to_json(value)
        data = value if text is None else text.encode("utf-8", "surrogatepass")
        known = arguments_sha256 if name == "arguments" and text is None else None
        fields[f"{name}_sha256"] = known or hashlib.sha256(data).hexdigest()
        if not keep:
            fields[name] = None
        elif limit is not None and len(data) > limit:
            fields[name] = data[: _boundary(data, limit)].decode("utf-8", "replace")
            truncated[name] = len(data)
        else:  # decoded again, not `text`: a lone surrogate becomes U+FFFD, which JSON can carry
            fields[name] = data.decode("utf-8", "replace")
    if truncated:
        fields["truncated"] = truncated
    return fields


def _boundary(data: bytes, limit: int) -> int:
    """The largest cut at most `limit` that does not split a UTF-8 character."""
    end = limit
    while end > 0 and limit - end < 3 and data[end] & 0xC0 == 0x80:  # a continuation byte
        end -= 1
    return end if data[end] & 0xC0 != 0x80 else limit
