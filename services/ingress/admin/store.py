"""The admin API's only access to JetStream KV: typed tables with optimistic concurrency.

Every write is a single KV operation that says what it expects: `create` fails if the key exists,
`update` and `delete` fail if the key's revision moved since it was read. Concurrent admins thus
get `Conflict` (HTTP 409) instead of silently overwriting each other, and every replica of every
service sees each change through its KV watch. No HTTP here: `routes` maps the exceptions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

from nats.js import JetStreamContext
from nats.js.errors import APIError, InvalidKeyError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from libs.common import subjects
from libs.common.entities import ENTITY_KINDS
from libs.common.keys import generate_key, key_id
from libs.common.llm import ProviderRecord
from libs.common.messages import KeyRecord, ServerCatalog, ServerRecord
from libs.common.nats import kv_bucket
from libs.common.sealing import Sealer

from .changes import ChangeLog

__all__ = ["AdminStore", "Conflict", "NotFound", "Table", "Versioned"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_WRONG_LAST_SEQUENCE = (10071, 10164)  # JetStream's "expected last subject sequence" mismatch
LABELS = {"group": "tool group", "customer": "customer", "team": "team", "user": "user"}


class NotFound(LookupError):
    """No such record; the message names it."""


class Conflict(Exception):
    """The record exists already, or changed since it was read; the message says which."""


@dataclass(frozen=True, slots=True)
class Versioned(Generic[M]):
    value: M
    revision: int
    """The KV revision the value was read at (or written with)."""


class _Buckets:
    """KV handles, opened on first use (the admin role declares its buckets when it connects)."""

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
        buckets: _Buckets,
        bucket: str,
        model: type[M],
        label: str,
        prefix: str = "",
        changes: ChangeLog | None = None,
    ) -> None:
        self._buckets, self.bucket, self.model, self.label, self.prefix = buckets, bucket, model, label, prefix
        self._changes = changes
        """Told every write made (an audit event each); None for tables the admin API only reads."""

    def _changed(self, action: str, record_id: str, before: M | None, after: M | None) -> None:
        if self._changes is not None:
            self._changes.record(self.label.replace(" ", "_"), action, self.prefix + record_id, before, after)

    def _missing(self, record_id: str) -> NotFound:
        return NotFound(f"no {self.label} with id {record_id!r}")

    async def find(self, record_id: str) -> Versioned[M] | None:
        kv = await self._buckets.get(self.bucket)
        try:
            entry = await kv.get(self.prefix + record_id)
        except (KeyNotFoundError, InvalidKeyError):
            return None
        try:
            return Versioned(self.model.model_validate_json(entry.value or b""), entry.revision or 0)
        except ValidationError:
            log.error("%s %s in %s is malformed; treating it as absent", self.label, record_id[:16], self.bucket)
            return None

    async def get(self, record_id: str) -> Versioned[M]:
        if (found := await self.find(record_id)) is None:
            raise self._missing(record_id)
        return found

    async def exists(self, record_id: str) -> bool:
        return await self.find(record_id) is not None

    async def list(self) -> list[tuple[str, Versioned[M]]]:
        """(id, record) of every current, well-formed record.

        Keys come from the bucket's stream (its per-subject state), then each is read. A KV watch
        would be one pass, but nats-py's watch can report "no more values" before delivering one
        that was already on its way (it races consumer info against delivery), which made a list
        right after a create come back empty now and then."""
        kv = await self._buckets.get(self.bucket)
        root = f"$KV.{self.bucket}."
        info = await self._buckets.js.stream_info(f"KV_{self.bucket}", subjects_filter=f"{root}{self.prefix}>")
        found: list[tuple[str, Versioned[M]]] = []
        for subject in sorted((info.state.subjects or {}) if info.state else {}):
            key = subject[len(root) :]
            try:
                entry = await kv.get(key)
                value = self.model.model_validate_json(entry.value or b"")
            except (KeyNotFoundError, InvalidKeyError):
                continue  # deleted meanwhile (a delete leaves a tombstone subject)
            except ValidationError:
                log.error("skipping malformed %s %s in %s", self.label, key[:24], self.bucket)
                continue
            found.append((key[len(self.prefix) :], Versioned(value, entry.revision or 0)))
        return sorted(found, key=lambda item: item[0])

    async def create(self, record_id: str, value: M) -> int:
        kv = await self._buckets.get(self.bucket)
        try:
            revision = await kv.create(self.prefix + record_id, value.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            raise Conflict(f"a {self.label} with id {record_id!r} already exists") from None
        self._changed("create", record_id, None, value)
        return revision

    async def update(self, record_id: str, value: M, revision: int) -> int:
        """Write `value` only if the record is still at `revision`."""
        kv = await self._buckets.get(self.bucket)
        # read first for the audit trail: a write at `revision` replaces exactly what is there now, or fails
        before = await self.find(record_id) if self._changes is not None else None
        try:
            written = await kv.update(self.prefix + record_id, value.model_dump_json().encode(), last=revision)
        except KeyWrongLastSequenceError:
            raise self.stale(record_id) from None
        self._changed("update", record_id, before.value if before is not None else None, value)
        return written

    async def delete(self, record_id: str, revision: int | None = None) -> None:
        """Delete the record; with `revision`, only if it is still at that revision."""
        current = await self.get(record_id)
        expected = current.revision if revision is None else revision
        kv = await self._buckets.get(self.bucket)
        try:
            await kv.delete(self.prefix + record_id, last=expected)
        except APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                raise self.stale(record_id) from None
            raise
        self._changed("delete", record_id, current.value, None)

    def stale(self, record_id: str) -> Conflict:
        return Conflict(f"{self.label} {record_id!r} was changed by someone else meanwhile; read it again and retry")


class AdminStore:
    """Every table the admin API reads or writes, over one JetStream context.

    `sealer` seals the `env`/`headers` values of servers and the `api_key` of LLM providers before they
    are written; the admin API never opens them (it answers them masked), so a sealed value sent back
    unchanged is stored as it is."""

    def __init__(self, js: JetStreamContext, sealer: Sealer | None = None, changes: ChangeLog | None = None) -> None:
        self.sealer = sealer or Sealer()
        buckets = _Buckets(js)
        self.keys: Table[KeyRecord] = Table(buckets, subjects.KV_KEYS, KeyRecord, "key", changes=changes)
        self.servers: Table[ServerRecord] = Table(buckets, subjects.KV_SERVERS, ServerRecord, "server", changes=changes)
        self.catalog: Table[ServerCatalog] = Table(buckets, subjects.KV_CATALOG, ServerCatalog, "server catalog")
        self.providers: Table[ProviderRecord] = Table(
            buckets, subjects.KV_LLM, ProviderRecord, "llm provider", changes=changes
        )
        self.entities: dict[str, Table[BaseModel]] = {
            kind: Table(buckets, subjects.KV_POLICY, model, LABELS[kind], prefix=f"{kind}.", changes=changes)
            for kind, model in ENTITY_KINDS.items()
        }

    async def missing(self, kind: str, ids: list[str]) -> list[str]:
        """Which of `ids` name no `kind` entity (checked one by one: lists here are short)."""
        table = self.entities[kind]
        return [i for i in dict.fromkeys(ids) if not await table.exists(i)]

    async def create_key(self, record: KeyRecord) -> tuple[str, Versioned[KeyRecord]]:
        """Store `record` under a fresh secret; return the secret (never stored) and what was written."""
        secret = generate_key()
        stored = record.model_copy(update={"id": key_id(secret), "created_at": time.time()})
        revision = await self.keys.create(stored.id, stored)
        return secret, Versioned(stored, revision)

    async def rotate_key(self, old_id: str, expected: int | None = None) -> tuple[str, Versioned[KeyRecord]]:
        """Replace a key by a new secret with the same metadata, and revoke the old one.

        Two writes, ordered so that every intermediate state is safe: (1) create the new record, whose
        secret exists only in this process so far; (2) revoke the old record, revision-checked. If (2)
        fails (a concurrent change: `Conflict`; NATS trouble), the new record is deleted again and the
        old key keeps working, as if nothing happened. Should that delete fail too, what remains is a
        record nobody holds the secret of: unusable, and logged with its id for cleanup.
        """
        old = await self.keys.get(old_id)
        if expected is not None and expected != old.revision:
            raise self.keys.stale(old_id)
        if old.value.revoked:
            raise Conflict(f"key {old_id[:12]}… is revoked; create a new key instead of rotating it")
        # the new key is runtime-managed: a config-managed (source="config") copy would be deleted by the
        # next `bastion config apply`, since its id is not in the file
        secret, new = await self.create_key(old.value.model_copy(update={"revoked": False, "source": None}))
        try:
            await self.keys.update(old_id, old.value.model_copy(update={"revoked": True}), old.revision)
        except BaseException:
            try:
                await self.keys.delete(new.value.id, new.revision)
            except Exception as exc:
                log.error("rotate: could not roll back the unused new key %s… (%s)", new.value.id[:12], exc)
            raise
        return secret, new
