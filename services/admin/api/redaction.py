"""Secrets out of admin audit events: what a record looked like, with every secret value replaced.

Server `env` and `headers` values (API keys, bearer tokens; sealed or not) and any field whose name
says it holds a credential are replaced by `REDACTED`; names stay, so an auditor still sees *which*
variable or header changed. Key records hold no secret (only its sha256, the key's id).
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["REDACTED", "redacted"]

REDACTED: Final = "<redacted>"
_VALUE_MAPS: Final = frozenset({"env", "headers"})
"""Maps whose every value may be a credential."""
_SECRET_NAME: Final = re.compile(r"secret|token|password|passwd|credential|authorization|api[_-]?key|^key$", re.I)


def redacted(value: Any) -> Any:
    """A copy of a JSON-like `value` with secrets replaced; the input is not changed."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for name, item in value.items():
            if name in _VALUE_MAPS and isinstance(item, dict):
                out[name] = {k: REDACTED for k in item}
            elif isinstance(name, str) and _SECRET_NAME.search(name) and item not in (None, "", [], {}):
                out[name] = REDACTED
            else:
                out[name] = redacted(item)
        return out
    if isinstance(value, list):
        return [redacted(item) for item in value]
    return value
