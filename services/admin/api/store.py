"""Every table the admin API reads or writes (`tables` holds the typed, revision-checked table)."""

from __future__ import annotations

import time
from typing import Any

from nats.js import JetStreamContext
from pydantic import BaseModel

from libs.common.contracts import subjects
from libs.common.contracts.entities import ENTITY_KINDS
from libs.common.contracts.keys import generate_key, key_id
from libs.common.contracts.llm import ProviderRecord
from libs.common.contracts.llm_routes import RoutesRecord
from libs.common.contracts.messages import KeyRecord, ServerCatalog, ServerRecord
from libs.common.runtime.sealing import Sealer

from .access_store import AccessStore
from .changes import ChangeLog
from .outcome import Outcome
from .tables import Buckets, Conflict, NotFound, Table, Versioned, revoke_replaced

__all__ = ["LABELS", "AdminStore", "Buckets", "Conflict", "NotFound", "Table", "Versioned"]


LABELS = {"group": "tool group", "customer": "customer", "team": "team", "user": "user"}


class AdminStore:
    """Every table the admin API reads or writes, over one JetStream context.

    `sealer` seals the `env`/`headers` values of servers and the `api_key` of LLM providers before they
    are written; the admin API never opens them (it answers them masked), so a sealed value sent back
    unchanged is stored as it is.

    Every write of its tables is decided first by `outcome` (the admin API's one authorization model),
    as the principal of the request being handled; `authorize=False` is for the owner's own tools and
    tests that write the store directly, with no request and no principal."""

    def __init__(
        self,
        js: JetStreamContext,
        sealer: Sealer | None = None,
        changes: ChangeLog | None = None,
        authorize: bool = True,
    ) -> None:
        self.sealer = sealer or Sealer()
        self.buckets = buckets = Buckets(js)
        self.changes = changes
        """Where every write is reported as an admin audit event (None: not reported, in tests)."""
        self.keys: Table[KeyRecord] = Table(buckets, subjects.KV_KEYS, KeyRecord, "key", changes=changes)
        self.servers: Table[ServerRecord] = Table(buckets, subjects.KV_SERVERS, ServerRecord, "server", changes=changes)
        self.catalog: Table[ServerCatalog] = Table(buckets, subjects.KV_CATALOG, ServerCatalog, "server catalog")
        self.providers: Table[ProviderRecord] = Table(
            buckets, subjects.KV_LLM, ProviderRecord, "llm provider", changes=changes, reserved="_"
        )
        self.routes: Table[RoutesRecord] = Table(buckets, subjects.KV_LLM, RoutesRecord, "llm routes", changes=changes)
        """The one `llm.models` record (`ROUTES_KEY`) beside the providers."""
        self.entities: dict[str, Table[BaseModel]] = {
            kind: Table(buckets, subjects.KV_POLICY, model, LABELS[kind], prefix=f"{kind}.", changes=changes)
            for kind, model in ENTITY_KINDS.items()
        }
        self.access = AccessStore(buckets, changes)
        """Principals, their tokens and sessions, custom roles (KV `bastion_admin`)."""
        self.outcome = Outcome(self.entities)
        if authorize:
            for table in self.tables():
                table.guard = self.outcome.decide

    def tables(self) -> list[Table[Any]]:
        """Every table this store writes."""
        access = self.access
        own: list[Table[Any]] = [self.keys, self.servers, self.catalog, self.providers, self.routes]
        own += self.entities.values()
        return [*own, access.principals, access.tokens, access.roles, access.sessions, access.logins, access.clients]

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

    async def rotate_key(
        self, old_id: str, expected: int | None = None, by: str | None = None
    ) -> tuple[str, Versioned[KeyRecord]]:
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
        # `by` is shown the new secret: it holds the key now (`created_by`)
        fresh = {"revoked": False, "source": None, "created_by": by}
        secret, new = await self.create_key(old.value.model_copy(update=fresh))
        revoked = old.value.model_copy(update={"revoked": True})
        await revoke_replaced(self.keys, old_id, old, revoked, new.value.id, new.revision)
        return secret, new
