"""Payloads larger than one NATS message: they travel through a JetStream object store.

A tool result (or a request's arguments) can be larger than the server's max payload (1 MiB by
default, 8 MiB under `bastion up`). The sender stores such a payload as an object and sends its name
in the message instead (`CallOutcome.result_blob`, `ToolCall.arguments_blob`); the receiver takes
it (reads, then deletes it). The bucket keeps objects `BASTION_BLOB_TTL` seconds at most, so one
whose receiver gave up or died disappears by itself, and holds `BASTION_BLOB_STORE_MAX_BYTES` at
most (settings of its owner, the executor, which creates it: `libs.common.bus.stores`).

Every read names the bucket's stream: nats-py's `ObjectStore.get` subscribes to the object's chunks
without it and so first asks the server which stream holds that subject (`$JS.API.STREAM.NAMES`),
a request no role may make (it lists every stream). Refused, it timed out after 5 s and lost every
answer between one message and the 32 MiB cap.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging

from nats.aio.client import Client as NATS
from nats.js.api import ObjectInfo, ObjectMeta, ObjectMetaOptions
from nats.js.errors import BadObjectMetaError, DigestMismatchError
from nats.js.object_store import ObjectStore

from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, GatewayError, new_id

__all__ = ["BlobTooLarge", "Blobs", "fits"]

log = logging.getLogger(__name__)

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
        """The bucket's handle, without a round trip: its owner (the executor) declares it.

        Until it has, a store fails (no stream answers) and a take finds nothing."""
        store = ObjectStore(name=subjects.OBJ_BLOBS, stream=subjects.obj_stream(subjects.OBJ_BLOBS), js=nc.jetstream())
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
            data = await self._chunks(info)
        await self._delete(name)
        return data

    async def _chunks(self, info: ObjectInfo) -> bytes:
        """The object's content, from an ordered consumer on the bucket's own stream.

        (Named, unlike nats-py's `ObjectStore.get`: see the module's doc), checked against its digest."""
        if not info.nuid or not info.digest:
            raise BadObjectMetaError
        if not info.size:
            return b""
        sub = await self._nc.jetstream().subscribe(
            f"{subjects.OBJ_ROOT}.{subjects.OBJ_BLOBS}.C.{info.nuid}",
            stream=subjects.obj_stream(subjects.OBJ_BLOBS),
            ordered_consumer=True,
        )
        parts: list[bytes] = []
        digest = hashlib.sha256()
        try:
            async for msg in sub.messages:
                parts.append(msg.data)
                digest.update(msg.data)
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        if digest.digest() != base64.urlsafe_b64decode(info.digest.split("=", 1)[1]):
            raise DigestMismatchError
        return b"".join(parts)

    async def with_result(self, outcome: CallOutcome, limit: int) -> CallOutcome:
        """`outcome` with its result taken from the store (it was too large to travel in the reply).

        An error outcome that says the call did run if the result is over `limit` or unreadable."""
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
            log.warning("blob %s: not deleted (%r); it expires with the bucket's TTL (BASTION_BLOB_TTL)", name, exc)
