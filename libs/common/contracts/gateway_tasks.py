"""MCP tasks as the gateway keeps them.

One record per task on the bus (KV `bastion_tasks`), so any ingress replica answers `tasks/get`,
`tasks/result`, `tasks/cancel` and `tasks/update` for it.

A task is either an upstream's (the gateway passes it through: `upstream_task_id` names it
there) or the gateway's own (`hosted`: a call the gateway runs, or waits for, in the background and
whose state and result it stores here). Agents see only the gateway's task id, a random token; the
record's key joins it to the caller's key id, so another caller's id names no record at all.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import time
from typing import Any, Final, Literal

from pydantic import BaseModel, Field

from libs.common.contracts.messages_base import BusMessage

__all__ = [
    "LEGACY_TASKS_VERSION",
    "TASKS_EXTENSION",
    "TERMINAL",
    "CancelTask",
    "HostedTask",
    "TaskRecord",
    "TaskStatus",
    "hosted_setting",
    "new_task_id",
    "owner_prefix",
    "task_key",
]

TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"
"""The 2026-07-28 tasks extension (SEP-2663): `resultType: "task"`, `tasks/get|update|cancel`."""
LEGACY_TASKS_VERSION: Final = "2025-11-25"
"""The revision whose experimental tasks are `params.task`, `tasks/get|result|list|cancel`."""

TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]
TERMINAL: Final = frozenset(("completed", "failed", "cancelled"))


class HostedTask(BaseModel):
    """A tool the gateway turns into a task of its own when a call outlasts `after_ms`.

    (`ServerConfig.tasks`), for agents that speak tasks; others wait for the result as before."""

    after_ms: int = Field(default=2000, ge=0, le=600_000)
    """How long the call runs before the agent gets a task instead of waiting."""
    ttl_ms: int = Field(default=3_600_000, ge=1000, le=86_400_000)
    """How long the task and its result are kept after it was created."""


def hosted_setting(settings: dict[str, HostedTask], tool: str) -> HostedTask | None:
    """The setting `ServerConfig.tasks` has for `tool` (its own name).

    An exact entry, else the longest matching pattern."""
    if tool in settings:
        return settings[tool]
    matches = [pattern for pattern in settings if fnmatch.fnmatchcase(tool, pattern)]
    return settings[max(matches, key=len)] if matches else None


class CancelTask(BusMessage):
    """ingress -> every ingress: an agent cancelled a gateway-hosted task; the replica running it stops it."""

    record: str
    """The task record's KV key (`task_key`): names the task without its id."""


class TaskRecord(BusMessage):
    task_id: str
    """The gateway's id, the only one an agent sees."""
    key_id: str
    """The caller the task belongs to: every request about it must come from this key."""
    server: str
    tool: str
    name: str
    """The tool's gateway name (for audit rows)."""
    kind: Literal["upstream", "hosted"]
    upstream_task_id: str | None = None
    call_event: str | None = None
    """The audit event id of the call that made the task: its whole life is audited under it."""
    status: TaskStatus = "working"
    status_message: str | None = None
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    ttl_ms: int
    poll_interval_ms: int = 1000
    result: dict[str, Any] | None = None
    """A hosted task's result once `completed` (wire JSON, shaped for no revision)."""
    error: dict[str, Any] | None = None
    """A hosted task's JSON-RPC error once `failed`."""
    replica: str | None = None
    """The ingress instance running a hosted task (a cancel is heard by every replica; it acts)."""
    cancel_requested: bool = False

    @property
    def expires_at(self) -> float:
        return self.created_at + self.ttl_ms / 1000

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.expires_at


def new_task_id() -> str:
    """An unguessable id (192 random bits): it names a task, and is worth nothing to another caller."""
    return secrets.token_urlsafe(24)


def owner_prefix(key_id: str) -> str:
    """The KV key prefix of one caller's tasks (a digest: key ids stay out of subject names)."""
    return hashlib.sha256(key_id.encode()).hexdigest()[:32]


def task_key(key_id: str, task_id: str) -> str:
    """The record's KV key.

    The caller's prefix and a digest of the task id, so a task id sent by another caller looks up a key
    that does not exist, and any text is a valid key."""
    return f"{owner_prefix(key_id)}.{hashlib.sha256(task_id.encode()).hexdigest()[:40]}"
