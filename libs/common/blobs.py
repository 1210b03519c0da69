"""Payloads larger than one NATS message: they travel through a JetStream object store.

A tool result (or a request's arguments) can be larger than the server's max payload (1 MiB by
default, 8 MiB under `bastion up`). The sender stores such a payload as an object and sends its name
in the message instead (`CallOutcome.result_blob`, `ToolCall.arguments_blob`); the receiver takes
it (reads, then deletes it). The bucket keeps objects `BLOB_TTL` seconds at most, so one whose
receiver gave up or died disappears by itself, and holds `BLOB_BUCKET_BYTES` at most.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client as NATS
from nats.js.api import ObjectMeta, ObjectMetaOptions, ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.object_store import ObjectStore

from . import subjects
from .errors import ErrorKind
from .messages import CallOutcome, GatewayError, new_id

__all__ = ["BLOB_BUCKET_BYTES", "BLOB_TTL", "BlobTooLarge", "Blobs", "fits"]

log = logging.getLogger(__name__)

BLOB_TTL = 300.0
"""Seconds an object lives: far longer than a receiver needs to take it, short enough to clean up."""
BLOB_BUCKET_BYTES = 4 * 1024**3
"""Bytes the bucket may hold in all; a store beyond it fails (and the request with a clear error)."""
BLOB_TIMEOUT = 30.0
"""Seconds one store or take may last (a NATS outage must not hold a request forever)."""
MESSAGE_ROOM = 16 * 1024
"""Bytes of a NATS message kept for headers: a payload up to max payload minus this is sent inline."""
_CHUNK = 1024 * 1024


class BlobTooLarge(Exception):
    """The payload is larger than the configured limit; the message names both sizes."""


def fits(nc: NATS, size: int) -> bool:
    """Whether a payload of `size` bytes can travel as one NATS message on `nc`."""
    return size <= nc.max_payload - MESSAGE_ROOM


class Blobs:
    """`await Blobs.open(nc)`; then `put()` on the sending side, `take()` on the receiving one."""

    def __init__(self, nc: NATS, store: ObjectStore) -> None:
        self._nc = nc
        self._store = store

    @classmethod
    async def open(cls, nc: NATS) -> Blobs:
        """The bucket, created if missing (any service may be first)."""
        js = nc.jetstream()
        try:
            store = await js.object_store(subjects.OBJ_BLOBS)
        except BucketNotFoundError:
            config = ObjectStoreConfig(ttl=BLOB_TTL, max_bytes=BLOB_BUCKET_BYTES, storage=StorageType.FILE)
            try:
                store = await js.create_object_store(subjects.OBJ_BLOBS, config=config)
            except Exception:  # another replica created it between our two calls
                store = await js.object_store(subjects.OBJ_BLOBS)
        return cls(nc, store)

    async def put(self, data: bytes, *, what: str) -> str:
        """Store `data`; the name to send instead of it. `what` names the payload in the log."""
        name = f"{what}.{new_id()}"
        chunk = max(min(_CHUNK, self._nc.max_payload - MESSAGE_ROOM), 1024)
        meta = ObjectMeta(name=name, options=ObjectMetaOptions(max_chunk_size=chunk))
        async with asyncio.timeout(BLOB_TIMEOUT):
            await self._store.put(name, data, meta=meta)
        return name

    async def take(self, name: str, limit: int) -> bytes:
        """The payload stored as `name`, which is deleted; `BlobTooLarge` beyond `limit` bytes."""
        async with asyncio.timeout(BLOB_TIMEOUT):
            info = await self._store.get_info(name)
            size = info.size or 0
            if size > limit:
                await self._delete(name)
                raise BlobTooLarge(f"{size:,} bytes, over the limit of {limit:,} bytes")
            data = (await self._store.get(name)).data
        await self._delete(name)
        return data or b""

    async def with_result(self, outcome: CallOutcome, limit: int) -> CallOutcome:
        """`outcome` with its result taken from the store (it was too large to travel in the reply);
        an error outcome that says the call did run if the result is over `limit` or unreadable."""
        if outcome.result_blob is None:
            return outcome
        try:
            raw = await self.take(outcome.result_blob, limit)  # passed on as it is, like an inline result
        except BlobTooLarge as exc:
            error = GatewayError(
                kind=ErrorKind.RESULT_TOO_LARGE,
                message=f"the upstream's result is {exc} (BASTION_MAX_RESULT_BYTES); the request did run upstream",
            )
        except Exception as exc:
            error = GatewayError(
                kind=ErrorKind.GATEWAY_UNAVAILABLE,
                message=f"the upstream's result could not be fetched from the gateway's store ({exc!r}); "
                "the request did run upstream",
            )
        else:
            return outcome.model_copy(update={"raw_result": raw, "result_blob": None})
        return CallOutcome(
            id=outcome.id,
            error=error,
            decided_by=outcome.decided_by,
            upstream_ms=outcome.upstream_ms,
            events=outcome.events,
            execution="ran",
        )

    async def _delete(self, name: str) -> None:
        try:
            async with asyncio.timeout(BLOB_TIMEOUT):
                await self._store.delete(name)
        except Exception as exc:  # the bucket's TTL removes it anyway
            log.warning("blob %s: not deleted (%r); it expires within %.0fs", name, exc, BLOB_TTL)
