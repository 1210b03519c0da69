"""Tasks the gateway hosts itself.

A piece of work (a slow tool call, or a call waiting for a person's approval: `approval_tasks`) becomes a
task; this replica runs it, or waits for it, in the background, and stores its state and result on the
bus (`task_store`), where any replica answers for it.

The seam is `HostedTasks.host(record, work, after)`: `work` is any coroutine function ending in a
`TaskEnding` (a wire result or a JSON-RPC error); if it ends within `after` seconds the caller gets
the ending (no task), else the record is stored and returned, and the ending lands in it later.
A cancel is heard by every replica (`bastion.tasks.cancel`); the one running the work cancels it.
A task's ttl bounds its work: past it the work is cancelled and the task fails. A replica that
dies leaves its tasks `working` until their ttl, after which they read as unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from libs.common.contracts import subjects
from libs.common.contracts.gateway_tasks import CancelTask, TaskRecord, task_key
from services.ingress.tasks.task_store import TaskStore

__all__ = ["HostedTasks", "TaskEnding", "Work"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaskEnding:
    result: dict[str, Any] | None = None
    """The request's wire result (a tool result with `isError` included)."""
    error: dict[str, Any] | None = None
    """The JSON-RPC error the request ended in."""
    cancelled: bool = False


Work = Callable[[], Coroutine[Any, Any, TaskEnding]]
Finished = Callable[[TaskRecord, TaskEnding], None]


class HostedTasks:
    def __init__(self, nc: NATS, store: TaskStore, instance: str, finished: Finished | None = None) -> None:
        self.nc, self.store, self.instance = nc, store, instance
        self.finished = finished
        """Told of each hosted task's end (its audit event)."""
        self._running: dict[str, asyncio.Task[TaskEnding]] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.nc.subscribe(subjects.TASK_CANCEL, cb=self._on_cancel)

    async def stop(self) -> None:
        for runner in list(self._running.values()):
            runner.cancel()
        for watcher in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def host(self, record: TaskRecord, work: Work, after: float) -> TaskEnding | TaskRecord:
        """Run `work`; its ending when it ends within `after` seconds.

        Else `record`, stored (the caller answers with it) while the work goes on. `TooManyTasks` from
        the store propagates only before the work starts."""
        await self.store.check_room(record.key_id)
        runner: asyncio.Task[TaskEnding] = asyncio.create_task(work())
        done, _ = await asyncio.wait({runner}, timeout=after)
        if runner in done:
            return runner.result()
        record.replica = self.instance
        try:
            await self.store.create(record)
        except BaseException:
            runner.cancel()
            raise
        key = task_key(record.key_id, record.task_id)
        self._running[key] = runner
        watcher = asyncio.create_task(self._watch(key, record, runner))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return record

    async def cancel(self, record: TaskRecord) -> None:
        """Ask whichever replica runs the task to stop it."""
        cancel = CancelTask(record=task_key(record.key_id, record.task_id))
        await self.nc.publish(subjects.TASK_CANCEL, cancel.model_dump_json().encode())

    async def _on_cancel(self, msg: Msg) -> None:
        cancel = CancelTask.parsed(msg.data)
        runner = self._running.get(cancel.record) if cancel is not None else None
        if runner is not None:
            runner.cancel()

    async def _watch(self, key: str, record: TaskRecord, runner: asyncio.Task[TaskEnding]) -> None:
        remaining = max(0.0, record.expires_at - time.time())
        done, _ = await asyncio.wait({runner}, timeout=remaining)
        expired = runner not in done
        if expired:
            runner.cancel()
        try:
            ending = await runner
        except asyncio.CancelledError:
            ending = TaskEnding(cancelled=True)
        except Exception:
            log.exception("a hosted task failed")
            ending = TaskEnding(error={"code": -32603, "message": "internal gateway error; see the ingress log"})
        finally:
            self._running.pop(key, None)
        if expired:
            ending = TaskEnding(error={"code": -32001, "message": f"the task outlived its ttl ({record.ttl_ms} ms)"})
        await self._settle(record, ending)

    async def _settle(self, record: TaskRecord, ending: TaskEnding) -> None:
        if ending.cancelled:
            record.status, record.status_message = "cancelled", "cancelled by request"
        elif ending.error is not None:
            record.status, record.error = "failed", ending.error
            record.status_message = str(ending.error.get("message", "failed"))
        else:
            size = len(orjson.dumps(ending.result))
            if size > self.store.limits.max_result_bytes:
                record.status = "failed"
                record.status_message = (
                    f"the result ({size} bytes) is larger than a task may keep "
                    f"({self.store.limits.max_result_bytes} bytes, BASTION_TASK_MAX_RESULT_BYTES)"
                )
                record.error = {"code": -32065, "message": record.status_message}
            else:
                record.status, record.result = "completed", ending.result
        try:
            await self.store.save(record)
        except Exception as exc:  # the bus is away: the task reads as working until its ttl
            log.warning("cannot store the end of a hosted task (%s)", exc)
        if self.finished is not None:
            self.finished(record, ending)
