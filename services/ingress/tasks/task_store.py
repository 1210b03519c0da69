"""The tasks agents hold through the gateway, on the bus (KV `bastion_tasks`).

Any replica reads and updates them, so a task started on one replica is polled, cancelled or fetched on
another, and outlives the replica that started it.

A record is found only by its owner's key id and the task id together (`gateway_tasks.task_key`):
another caller who learned a task id finds nothing, exactly as for an id that never existed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from libs.common.bus.nats import kv_entries, kv_keys
from libs.common.contracts.gateway_tasks import TERMINAL, TaskRecord, owner_prefix, task_key

__all__ = ["TaskLimits", "TaskStore", "TooManyTasks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaskLimits:
    max_per_caller: int = 100
    """Unfinished tasks one key may hold at once; one more is refused (finished ones stay readable
    until their ttl and do not count)."""
    max_ttl_ms: int = 86_400_000
    """The longest a task is kept; an agent asking for more gets this."""
    min_ttl_ms: int = 1000
    default_ttl_ms: int = 3_600_000
    """An agent that asks for no ttl gets this."""
    max_result_bytes: int = 512 * 1024
    """A hosted task's stored result at most (it lives in one KV message): larger fails the task."""
    poll_interval_ms: int = 500
    """What the gateway suggests agents wait between polls, and how often it polls an upstream."""

    def ttl(self, requested: object) -> int:
        """The ttl a task gets for what the agent asked (ms, clamped into the bounds)."""
        if not isinstance(requested, int) or isinstance(requested, bool):
            return self.default_ttl_ms
        return max(self.min_ttl_ms, min(requested, self.max_ttl_ms))


class TooManyTasks(Exception):
    """The caller already holds `TaskLimits.max_per_caller` live tasks."""


class TaskStore:
    def __init__(self, kv: KeyValue, limits: TaskLimits) -> None:
        self.kv = kv
        self.limits = limits

    async def check_room(self, key_id: str) -> None:
        """Raise `TooManyTasks` when the caller already holds the most unfinished tasks it may."""
        unfinished = sum(1 for record in await self.owned(key_id) if record.status not in TERMINAL)
        if unfinished >= self.limits.max_per_caller:
            raise TooManyTasks(
                f"this key already holds {self.limits.max_per_caller} unfinished tasks, the most it may "
                "(BASTION_TASK_MAX_PER_CALLER); wait for one to finish or expire, or cancel one"
            )

    async def create(self, record: TaskRecord) -> None:
        """Store a new task, durably (the agent is told its id only after this returned)."""
        await self.kv.create(task_key(record.key_id, record.task_id), record.model_dump_json().encode())

    async def find(self, key_id: str, task_id: str) -> TaskRecord | None:
        """The caller's task, or None: unknown, another caller's, expired or unreadable."""
        try:
            entry = await self.kv.get(task_key(key_id, task_id))
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        try:
            record = TaskRecord.model_validate_json(entry.value)
        except ValidationError:
            log.warning("ignoring an unreadable task record")
            return None
        if record.key_id != key_id or record.task_id != task_id or record.expired():
            return None
        return record

    async def save(self, record: TaskRecord) -> None:
        record.updated_at = time.time()
        await self.kv.put(task_key(record.key_id, record.task_id), record.model_dump_json().encode())

    async def owned(self, key_id: str) -> list[TaskRecord]:
        """The caller's live tasks, oldest first."""
        records: list[TaskRecord] = []
        for entry in (await kv_entries(self.kv, await self._keys(key_id))).values():
            if entry.value is None:
                continue
            try:
                record = TaskRecord.model_validate_json(entry.value)
            except ValidationError:
                continue
            if record.key_id == key_id and not record.expired():
                records.append(record)
        return sorted(records, key=lambda r: r.created_at)

    async def _keys(self, key_id: str) -> list[str]:
        """The caller's keys, read from its own subjects only (not every key of the bucket)."""
        return await kv_keys(self.kv, under=f"{owner_prefix(key_id)}.")
