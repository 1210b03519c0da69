"""An upstream's task id, where an upstream's words quote it, turned into the gateway's (docs/tasks.md).

The agent knows a task by the gateway's id only: an upstream's id is a handle into that upstream,
stored on the bus beside the record and never handed out. Upstreams name their tasks in their own
words, though ("task 3f2c... is already completed", a status message, a failed result's text), so
every string of what an upstream answers about a task (its error's message and data, its status
message, its result) has the upstream's id replaced by the gateway's before the agent reads it.
The audit row keeps the upstream's error as it came, for the operator who reads the upstream's logs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from libs.common.contracts.gateway_tasks import TaskRecord
from libs.common.contracts.messages import GatewayError

__all__ = ["namespaced", "namespaced_error"]


def namespaced(value: Any, record: TaskRecord) -> Any:
    """`value` with the record's upstream task id replaced by its gateway task id wherever it stands alone.

    `value` is a string or parsed JSON; returned as is when the record has no upstream id."""
    upstream = record.upstream_task_id
    if not upstream:
        return value
    # standalone: an id inside a longer word or id (`abc` in `abcdef`) is some other thing; an
    # upstream that means to leak its id can always encode it, this is for the honest ones
    pattern = re.compile(rf"(?<![\w-]){re.escape(upstream)}(?![\w-])")
    gateway_id = record.task_id
    return _walk(value, lambda text: pattern.sub(lambda _: gateway_id, text))


def namespaced_error(error: GatewayError, record: TaskRecord) -> GatewayError:
    """The upstream's error as the agent may read it: message and data namespaced."""
    return error.model_copy(
        update={"message": namespaced(error.message, record), "data": namespaced(error.data, record)}
    )


def _walk(value: Any, sub: Callable[[str], str]) -> Any:
    """A copy of `value` with `sub` applied to every string, keys included.

    By a loop, not recursion, so an answer nested as deep as JSON allows is walked whole."""
    if isinstance(value, str):
        return sub(value)
    if not isinstance(value, dict | list):
        return value
    root: Any = {} if isinstance(value, dict) else [None] * len(value)
    pending: list[tuple[Any, Any]] = [(value, root)]
    while pending:
        source, copy = pending.pop()
        pairs = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in pairs:
            if isinstance(item, dict | list):
                inner: Any = {} if isinstance(item, dict) else [None] * len(item)
                pending.append((item, inner))
            else:
                inner = sub(item) if isinstance(item, str) else item
            copy[sub(key) if isinstance(key, str) else key] = inner
    return root
