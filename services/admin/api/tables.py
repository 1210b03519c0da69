"""Typed tables over JetStream KV with optimistic concurrency: the admin API's only access to KV.

Every write is a single KV operation that says what it expects: `create` fails if the key exists,
`update` and `delete` fail if the key's revision moved since it was read. Concurrent admins thus
get `Conflict` (HTTP 409) instead of silently overwriting each other, and every replica of every
service sees each change through its KV watch. No HTTP here: `errors` maps the exceptions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from nats.js import JetStreamContext
from nats.js.errors import APIError, InvalidKeyError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from libs.common.bus.nats import kv_bucket, kv_entries, kv_names

from .changes import ChangeLog

__all__ = ["Buckets", "Conflict", "Guard", "NotFound", "Table", "Versioned", "revoke_replaced"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_WRONG_LAST_SEQUENCE = (10071, 10164)  # JetStream's "expected last subject sequence" mismatch


Guard = Callable[[str, str, BaseModel | None, BaseModel | None], Awaitable[None]]
"""Decides a write before it is made: (the table's label, the record's id, before, after), None for
absent; raises to refuse it (`outcome.Outcome.decide`)."""


class NotFound(LookupError):
    """No such record; the message names it."""


class Conflict(Exception):
    """The record exists already, or changed since it was read; the message says which."""


@dataclass(frozen=True, slots=True)
class Versioned(Generic[M]):
    value: M
    revision: int
    """The KV revision the value was read at (or written with)."""


class Buckets:
    """KV handles, opened on first use (the admin service declares its buckets when it connects)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._open: dict[str, KeyValue] = {}
        self._lock = asyncio.Lock()

    @property
    def js(self) -> JetStreamContext:
        return self._js

    async def get(self, name: str) -> KeyValue:
        if (kv := self._open.get(name)) is None:
            async with self._lock:
                if (kv := self._open.get(name)) is None:
                    kv = self._open[name] = await kv_bucket(self._js, name)
        return kv


class Table(Generic[M]):
    """One kind of record: a bucket, a model, and a key prefix (`group.` in the policy bucket)."""

    def __init__(
        self,
        buckets: Buckets,
        bucket: str,
        model: type[M],
        label: str,
        prefix: str = "",
        changes: ChangeLog | None = None,
        hex_ids: bool = False,
        reserved: str | None = None,
    ) -> None:
        self._buckets, self.bucket, self.model, self.label, self.prefix = buckets, bucket, model, label, prefix
        self._changes = changes
        """Told every write made (an audit event each); None for tables the admin API only reads."""
        self._hex_ids = hex_ids
        """Ids that may hold characters KV keys may not (a principal's `@`) are stored hex-encoded."""
        self._reserved = reserved
        """Keys starting with it hold records of another kind in the same bucket (`_routes` beside
        the LLM providers): listed by nobody here."""
        self.guard: Guard | None = None
        """Asked before every write (`AdminStore` sets it: the admin API's one authorization model)."""

    def _key(self, record_id: str) -> str:
        return self.prefix + (record_id.encode("utf-8", "surrogatepass").hex() if self._hex_ids else record_id)

    def _id(self, key: str) -> str:
        found = key[len(self.prefix) :]
        return bytes.fromhex(found).decode("utf-8", "replace") if self._hex_ids else found

    def _changed(self, action: str, record_id: str, before: M | None, after: M | None) -> None:
        if self._changes is not None:
            self._changes.record(self.label.replace(" ", "_"), action, self.prefix + record_id, before, after)

    def missing(self, record_id: str) -> NotFound:
        return NotFound(f"no {self.label} with id {record_id!r}")

    async def find(self, record_id: str) -> Versioned[M] | None:
        kv = await self._buckets.get(self.bucket)
        try:
            entry = await kv.get(self._key(record_id))
        except (KeyNotFoundError, InvalidKeyError):
            return None
        try:
            return Versioned(self.model.model_validate_json(entry.value or b""), entry.revision or 0)
        except ValidationError:
            log.error("%s %s in %s is malformed; treating it as absent", self.label, record_id[:16], self.bucket)
            return None

    async def get(self, record_id: str) -> Versioned[M]:
        if (found := await self.find(record_id)) is None:
            raise self.missing(record_id)
        return found

    async def exists(self, record_id: str) -> bool:
        return await self.find(record_id) is not None

    async def list(self) -> list[tuple[str, Versioned[M]]]:
        """(id, record) of every current, well-formed record.

        Keys come from the bucket's stream (`kv_names`: its per-subject state, every page), then each
        is read. A KV watch would be one pass, but nats-py's watch can report "no more values" before
        delivering one that was already on its way, which made a list right after a create come back
        empty now and then."""
        kv = await self._buckets.get(self.bucket)
        names = await kv_names(self._buckets.js, self.bucket, under=self.prefix)
        if self._reserved is not None:
            names = [key for key in names if not key.startswith(self._reserved)]
        found: list[tuple[str, Versioned[M]]] = []
        for key, entry in (await kv_entries(kv, names)).items():  # deleted ones (tombstone subjects) left out
            try:
                value = self.model.model_validate_json(entry.value or b"")
            except ValidationError:
                log.error("skipping malformed %s %s in %s", self.label, key[:24], self.bucket)
                continue
            found.append((self._id(key), Versioned(value, entry.revision or 0)))
        return sorted(found, key=lambda item: item[0])

    async def create(self, record_id: str, value: M) -> int:
        if self.guard is not None:
            await self.guard(self.label, record_id, None, value)
        kv = await self._buckets.get(self.bucket)
        try:
            revision = await kv.create(self._key(record_id), value.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            raise Conflict(f"a {self.label} with id {record_id!r} already exists") from None
        self._changed("create", record_id, None, value)
        return revision

    async def update(self, record_id: str, value: M, revision: int) -> int:
        """Write `value` only if the record is still at `revision`."""
        kv = await self._buckets.get(self.bucket)
        # read first for the audit trail and the guard: a write at `revision` replaces exactly what is
        # there now, or fails
        before = await self.find(record_id) if self._changes is not None or self.guard is not None else None
        if self.guard is not None:
            if before is None or before.revision != revision:
                raise self.stale(record_id)
            await self.guard(self.label, record_id, before.value, value)
        try:
            written = await kv.update(self._key(record_id), value.model_dump_json().encode(), last=revision)
        except KeyWrongLastSequenceError:
            raise self.stale(record_id) from None
        previous = before.value if before is not None else None
        self._changed(_action_of(previous, value), record_id, previous, value)
        return written

    async def delete(self, record_id: str, revision: int | None = None) -> None:
        """Delete the record; with `revision`, only if it is still at that revision."""
        current = await self.get(record_id)
        expected = current.revision if revision is None else revision
        if self.guard is not None:
            await self.guard(self.label, record_id, current.value, None)
        kv = await self._buckets.get(self.bucket)
        try:
            await kv.delete(self._key(record_id), last=expected)
        except APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                raise self.stale(record_id) from None
            raise
        self._changed("delete", record_id, current.value, None)

    def stale(self, record_id: str) -> Conflict:
        return Conflict(f"{self.label} {record_id!r} was changed by someone else meanwhile; read it again and retry")


def _action_of(before: BaseModel | None, after: BaseModel) -> str:
    """What an update did, as the audit trail names it.

    `revoke` when it revoked a record (a key, a token), which an auditor looks for by name, else
    `update`."""
    if getattr(after, "revoked", False) is True and before is not None and getattr(before, "revoked", None) is False:
        return "revoke"
    return "update"


async def revoke_replaced(
    table: Table[M], old_id: str, old: Versioned[M], revoked: M, new_id: str, new_revision: int
) -> None:
    """The second write of a rotation (a key's, a token's): revoke the old record, revision-checked.

    The new record, written first, exists only for its caller so far: if this fails (a concurrent change:
    `Conflict`; NATS trouble), it is deleted again and the old one keeps working, as if nothing happened.
    Should that delete fail too, what remains is a record nobody holds the secret of: unusable, and
    logged with its id for cleanup."""
    try:
        await table.update(old_id, revoked, old.revision)
    except BaseException:
        try:
            await table.delete(new_id, new_revision)
        except Exception as exc:
            log.error("rotate: could not roll back the unused new %s %s… (%s)", table.label, new_id[:12], exc)
        raise
