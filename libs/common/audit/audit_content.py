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
import re
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from libs.common.contracts.messages_base import GatewayError

__all__ = ["content_fields", "error_column", "error_said", "json_bytes", "sha256_of", "to_json"]

_SORTED: Final = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
"""orjson with what it writes unlike `json.dumps(default=str)` handed back as unserializable."""
_UNLIKE_NUMBER: Final = re.compile(rb"0\.0000|\de[-+]")
"""A float orjson may write unlike `repr` (0.00001 for 1e-05, 1e-7 for 1e-07): found anywhere, even in a
string, the standard library writes the value instead."""


def to_json(value: Any) -> str:
    """Compact JSON with sorted keys: the same content always gives the same digest."""
    return json_bytes(value).decode("utf-8", "surrogatepass")


def json_bytes(value: Any) -> bytes:
    """`to_json(value)` as UTF-8 (a lone surrogate kept as it is): what a digest is taken over.

    Written by orjson when it writes exactly what `json.dumps(sort_keys=True, ensure_ascii=False,
    default=str)` does (~5x faster), else by the standard library: keys not strings, integers beyond 64
    bits, lone surrogates, datetimes, dataclasses, subclasses of the JSON types, floats orjson writes
    differently. Two values JSON itself cannot carry differ (every caller's values were decoded from or
    dumped as JSON, so they hold neither): NaN and infinities become null, an `Enum` its value."""
    try:
        data = orjson.dumps(value, option=_SORTED)
    except TypeError:
        data = None
    if data is None or _UNLIKE_NUMBER.search(data) is not None:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return text.encode("utf-8", "surrogatepass")
    return data


def sha256_of(value: Any) -> str:
    """The digest an event records of `value` (`*_sha256`): of its bytes, or of its `to_json`."""
    data = value if isinstance(value, bytes) else json_bytes(value)
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
        given = isinstance(value, bytes)
        data = value if given else json_bytes(value)
        known = arguments_sha256 if name == "arguments" and given else None
        fields[f"{name}_sha256"] = known or hashlib.sha256(data).hexdigest()
        if not keep:
            fields[name] = None
        elif limit is not None and len(data) > limit:
            fields[name] = data[: _boundary(data, limit)].decode("utf-8", "replace")
            truncated[name] = len(data)
        else:  # a lone surrogate becomes U+FFFD, which JSON can carry
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
