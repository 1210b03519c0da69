"""Validation messages that say what was refused and where, never the value itself.

A refused value may be a credential (a header, a key, an environment value), and a message travels
further than the request did: into a response a viewer reads, a log line, an audit row. So a message
names the field (its path) and the rule, and any text of the refused input that a validator or
pydantic itself (a tagged union's unknown tag, say) put in the message is cut out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MIN_SCRUBBED", "refusal_text"]

MIN_SCRUBBED = 4
"""Shorter inputs are left in a message: too short to be a secret, and cutting them would cut words."""

_VALUE_ERROR_PREFIXES = ("Value error, ", "Assertion error, ")
_OWN_CHECKS = frozenset({"value_error", "assertion_error"})


def refusal_text(error: Mapping[str, Any]) -> str:
    """One pydantic error's message (`ValidationError.errors()` entry) without the text of its input."""
    message = str(error.get("msg", "invalid"))
    for prefix in _VALUE_ERROR_PREFIXES:
        message = message.removeprefix(prefix)
    refused = error.get("input")
    # a field's own value, the entries of a list field (hosts, paths, grants), and for pydantic's own
    # checks of a model (a tagged union's unknown tag) its values; our models' checks name fields, and
    # their messages are written not to quote values
    values: list[Any] = [refused] if isinstance(refused, str) else refused if isinstance(refused, list) else []
    if isinstance(refused, dict) and error.get("type") not in _OWN_CHECKS:
        values = list(refused.values())
    for value in values[:1000]:
        if isinstance(value, str) and len(value) >= MIN_SCRUBBED:
            for written in (value, repr(value)[1:-1]):  # as is, or as `!r` escaped it
                message = message.replace(written, "<the value>")
    return message
