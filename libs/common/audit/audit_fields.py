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

__all__ = ["FieldLimits", "bounded", "cut_utf8"]

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
    if not event.truncated and _within(event.__dict__, limits):
        return event
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
    if not cuts and not foreign:
        return event
    # a producer's own map is text as well: only field names are kept
    truncated = {k: v for k, v in event.truncated.items() if k in _ALL_FIELDS} | {
        k: v for k, v in sizes.items() if k not in event.truncated
    }
    return event.model_copy(update={**cuts, "truncated": truncated})


def _within(values: dict[str, Any], limits: FieldLimits) -> bool:
    """True when no field can need a cut, checked in a few C calls instead of a step per field.

    The fields of each group hold, all together, at most a quarter of its limit in characters (no
    character takes more than 4 bytes). False only sends the event through `bounded`'s own checks."""
    error = values["error"]
    return (
        len("".join(filter(None, _TEXT_VALUES(values)))) * 4 <= limits.text
        and sum(map(len, filter(None, _CONTENT_VALUES(values)))) * 4 <= limits.content
        and (not error or len(error) * 4 <= limits.error)
    )
