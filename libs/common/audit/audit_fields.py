"""Size limits of audit events: every text field is cut to a configured size, and the event says so.

An audit event must always be publishable, whatever a request carried: a 4 MB tool name (or an
error message quoting it) would otherwise make the event larger than a NATS message may be. Pure
functions, no I/O: the publisher applies them before it serializes an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

from libs.common.contracts.messages import AuditEvent

__all__ = ["FieldLimits", "bounded", "cut_utf8", "measured"]

_TEXT_FIELDS: Final = (
    "event_id",
    "trace_id",
    "key_id",
    "key_name",
    "server",
    "tool",
    "name",
    "error_kind",
    "parent_id",
    "user_id",
    "team_id",
    "customer_id",
    "actor",
    "actor_role",
    "actor_address",
    "action",
    "target",
    "credential",
)
"""Identifiers and names: short in every honest request."""
_LONG_FIELDS: Final = ("error",)
"""Free text: upstream error messages may be long and still useful."""
_CONTENT_FIELDS: Final = ("arguments", "result", "before", "after")
"""Recorded content (JSON text): its sha256 is taken before any cut, so it always names the whole."""
_ALL_FIELDS: Final = frozenset(_TEXT_FIELDS + _LONG_FIELDS + _CONTENT_FIELDS)
# each group's values read from the model's field dict in one C call (an attribute per field costs ~5x)
_TEXT_VALUES: Final = itemgetter(*_TEXT_FIELDS)
_CONTENT_VALUES: Final = itemgetter(*_CONTENT_FIELDS)


@dataclass(frozen=True, slots=True)
class FieldLimits:
    """Largest size, in UTF-8 bytes, of one field of an audit event."""

    text: int = 1024
    """Names and identifiers (`name`, `tool`, `server`, `key_name`, `trace_id`, ...)."""
    error: int = 8192
    """The error message."""
    content: int = 64 * 1024
    """Arguments, result, and an admin change's before/after."""

    def __post_init__(self) -> None:
        if min(self.text, self.error, self.content) < 64:
            raise ValueError("audit field limits must be at least 64 bytes, or events lose their meaning")


def cut_utf8(text: str, limit: int) -> tuple[str, int]:
    """`text` cut to at most `limit` UTF-8 bytes (never inside a character), and its original size."""
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes: fits without encoding it
        return text, len(text)
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text, len(data)
    return data[:limit].decode("utf-8", "ignore"), len(data)


def bounded(event: AuditEvent, limits: FieldLimits) -> AuditEvent:
    """`event` with every text field within `limits`.

    The same object when nothing had to be cut, else a copy whose `truncated` map names each field cut
    with its original size."""
    return measured(event, limits)[0]


def measured(event: AuditEvent, limits: FieldLimits) -> tuple[AuditEvent, int]:
    """`bounded(event, limits)` and the characters of text it holds, from one measure of its fields.

    (What the publisher counts an event it holds by: the same lengths its bound is checked with.)"""
    size = _text_size(event.__dict__, limits)
    if size is not None and not event.truncated:
        return event, size
    cuts: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for fields, limit in (
        (_TEXT_FIELDS, limits.text),
        (_LONG_FIELDS, limits.error),
        (_CONTENT_FIELDS, limits.content),
    ):
        for field in fields:
            value = getattr(event, field)
            if value is None or len(value) * 4 <= limit:
                continue
            cut, size = cut_utf8(value, limit)
            if size > limit:
                cuts[field], sizes[field] = cut, size
    foreign = any(k not in _ALL_FIELDS for k in event.truncated)
    if cuts or foreign:
        # a producer's own map is text as well: only field names are kept
        truncated = {k: v for k, v in event.truncated.items() if k in _ALL_FIELDS} | {
            k: v for k, v in sizes.items() if k not in event.truncated
        }
        event = event.model_copy(update={**cuts, "truncated": truncated})
    return event, _text_size(event.__dict__, None) or 0


def _text_size(values: dict[str, Any], limits: FieldLimits | None) -> int | None:
    """Characters of text in an event's fields, measured in a few C calls instead of a step per field.

    None when `limits` are given and a field may need a cut: the fields of some group hold, all together,
    more than a quarter of its limit in characters (no character takes more than 4 bytes). None only
    sends the event through `measured`'s own checks."""
    text = len("".join(filter(None, _TEXT_VALUES(values))))
    content = sum(map(len, filter(None, _CONTENT_VALUES(values))))
    error = len(values["error"] or "")
    if limits is not None and (text * 4 > limits.text or content * 4 > limits.content or error * 4 > limits.error):
        return None
    return text + content + error
