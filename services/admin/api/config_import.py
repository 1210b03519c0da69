"""Importing a configuration file through the admin API: what `bastion config apply` reads (the file the
console exports), compared with what is stored and written through the admin API's own tables.

An import upserts: it adds and changes the servers, keys, groups, customers, teams, users and LLM
providers the file names and never deletes what it leaves out. Everything is checked before anything
is written (the file, every `${VAR}`, references between records, names taken by other records), so a
refused import changes nothing. Sections read only when a service starts (`gateway`, `stack`,
`guardrails`) are reported as ignored.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from libs.common.command_servers import owner_only_changes
from libs.common.config import BastionConfig, ConfigError, ServerConfig, parse_config, parse_untrusted_text
from libs.common.config_records import entity_records, key_records
from libs.common.entities import Entity
from libs.common.llm import ProviderRecord
from libs.common.llm_config import ProviderConfig
from libs.common.messages import KeyRecord, ServerRecord

from .errors import AdminError, forbidden
from .identity import Identity
from .models import MASK, unmask
from .store import AdminStore, Conflict, Table

__all__ = ["SECTIONS", "ConfigPlan", "Importer", "SectionPlan"]

SECTIONS = {
    "servers": "servers:write",
    "keys": "keys:write",
    "groups": "groups:write",
    "customers": "directory:write",
    "teams": "directory:write",
    "users": "directory:write",
    "llm_providers": "providers:write",
}
"""Each section of the plan and the permission (held everywhere, not for one team) writing it needs."""

_START_ONLY = ("gateway", "stack", "guardrails", "policies")
"""Sections an import does not write: read when a service starts, or (`policies`) published through
`POST /policies` with its own permission and versions."""
_ENTITY_SECTIONS = {"group": "groups", "customer": "customers", "team": "teams", "user": "users"}
_ENTITY_REFS = {"customer": {"groups": "group"}, "team": {"groups": "group", "customer_id": "customer"}}
_ENTITY_REFS["user"] = {"groups": "group", "team_id": "team"}
_KEY_REFS = {"groups": "group", "user_id": "user", "team_id": "team", "customer_id": "customer"}
_TIMES = {"created_at", "updated_at"}


class SectionPlan(BaseModel):
    added: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)


class ConfigPlan(BaseModel):
    sections: dict[str, SectionPlan] = Field(
        description="per kind: the names the file adds, changes, or holds as stored (nothing is deleted)"
    )
    ignored: list[str] = Field(
        description="sections of the file an import does not write: read only when a service starts, or"
        " `policies` (publish them with `POST /policies`)"
    )
    applied: bool = Field(description="whether the changes were written (false: a plan only)")
    needs_command: dict[str, list[str]] = Field(
        default_factory=dict,
        description="the servers the file adds or changes in an owner-only field (a stdio server's `command`,"
        " `args`, `env`, `cwd`; `sandbox`; `allow_private_hosts`), with those fields: applying them needs"
        " `servers:command`, the owner's",
    )


@dataclass(frozen=True, slots=True)
class _Write:
    table: Table[Any]
    record_id: str
    value: BaseModel
    revision: int | None
    """The stored revision the write replaces; None: a new record."""


def _invalid(message: str) -> AdminError:
    if "environment variable" in message:
        message += (
            " in the admin service's environment: set it there, write the value in the file, or write"
            f" {MASK} to keep the stored value"
        )
    return AdminError(422, "invalid_config", message)


def _ids(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else ([value] if value else [])


class Importer:
    def __init__(self, store: AdminStore) -> None:
        self._store = store

    def read(self, text: str) -> tuple[BastionConfig, list[KeyRecord], list[str]]:
        """The file as `bastion config apply` reads it (422 naming the first problem), and its keys."""
        try:
            raw = parse_untrusted_text(text, "import")
            config = parse_config(raw, "import")
            keys = key_records(config)
            entity_records(config)  # an id used twice in one kind
        except ConfigError as exc:
            raise _invalid(str(exc)) from None
        ignored = [s for s in _START_ONLY if isinstance(raw, dict) and s in raw]
        return config, keys, ignored

    @staticmethod
    def require(identity: Identity, config: BastionConfig) -> None:
        """403 naming the first write permission a section the file fills needs and the principal lacks."""
        filled = {
            "servers": config.mcp_servers,
            "keys": config.keys,
            "groups": config.groups,
            "customers": config.customers,
            "teams": config.teams,
            "users": config.users,
            "llm_providers": config.llm.providers,
        }
        for section, items in filled.items():
            permission = SECTIONS[section]
            if items and identity.grants.scopes(permission) is not None:  # a team's key manager: not here
                raise forbidden(identity, permission)

    async def plan(
        self, config: BastionConfig, keys: list[KeyRecord]
    ) -> tuple[dict[str, SectionPlan], list[_Write], dict[str, list[str]]]:
        """What the import would change, the writes that do it, and the servers among them whose owner-only
        fields it sets (`libs.common.command_servers`); raises before any write is made."""
        sections = {name: SectionPlan() for name in SECTIONS}
        writes: list[_Write] = []
        owner_only: dict[str, list[str]] = {}

        def note(section: str, name: str, write: _Write | None) -> None:
            found = sections[section]
            if write is None:
                found.unchanged.append(name)
            else:
                (found.added if write.revision is None else found.changed).append(name)
                writes.append(write)

        await self._check_refs(config, keys)
        for kind, section in _ENTITY_SECTIONS.items():
            for entity in getattr(config, section):
                note(section, entity.id, await self._entity(kind, entity))
        for name, server in config.mcp_servers.items():
            write, changed = await self._server(name, server)
            note("servers", name, write)
            if write is not None and changed:
                owner_only[name] = changed
        await self._check_models(config)
        for name, provider in config.llm.providers.items():
            note("llm_providers", name, await self._provider(name, provider))
        await self._check_key_names(keys)
        for record in keys:
            note("keys", record.name, await self._key(record))
        return sections, writes, owner_only

    async def write(self, writes: Iterable[_Write]) -> None:
        """Each write revision-checked (a concurrent change is a 409, and what follows is not written);
        every one an admin audit event through its table."""
        for w in writes:
            if w.revision is None:
                await w.table.create(w.record_id, w.value)
            else:
                await w.table.update(w.record_id, w.value, w.revision)

    async def _check_refs(self, config: BastionConfig, keys: list[KeyRecord]) -> None:
        known: dict[str, set[str]] = {}
        for kind, section in _ENTITY_SECTIONS.items():
            known[kind] = {i for i, _ in await self._store.entities[kind].list()}
            known[kind] |= {e.id for e in getattr(config, section)}
        missing: list[str] = []
        named: list[tuple[str, dict[str, str], dict[str, Any]]] = [
            (f"{section}.{e.id}", _ENTITY_REFS.get(kind, {}), e.model_dump())
            for kind, section in _ENTITY_SECTIONS.items()
            for e in getattr(config, section)
        ]
        named += [(f"keys.{k.name}", _KEY_REFS, k.model_dump()) for k in keys]
        for where, refs, values in named:
            for field, kind in refs.items():
                missing += [f"{where}.{field}: {kind} {i!r}" for i in _ids(values.get(field)) if i not in known[kind]]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise AdminError(422, "unknown_reference", f"import: {missing[0]} is neither stored nor in the file{more}")

    async def _entity(self, kind: str, entity: Entity) -> _Write | None:
        table = self._store.entities[kind]
        stored = await table.find(entity.id)
        if stored is None:
            return _Write(table, entity.id, entity, None)
        if stored.value.model_dump(exclude=_TIMES) == entity.model_dump(exclude=_TIMES):
            return None
        times = {"created_at": getattr(stored.value, "created_at", time.time()), "updated_at": time.time()}
        return _Write(table, entity.id, entity.model_copy(update=times), stored.revision)

    async def _server(self, name: str, server: ServerConfig) -> tuple[_Write | None, list[str]]:
        """The write (None: stored as the file says) and the owner-only fields it sets."""
        stored = await self._store.servers.find(name)
        opened = self._store.sealer.open(stored.value.config) if stored is not None else None
        wanted = unmask(server, opened) if opened is not None else server
        if MASK in wanted.secret_values():
            raise _invalid(f"import: mcpServers.{name}: {MASK} keeps a stored value, and this server has none")
        if stored is not None and wanted == opened:
            return None, []
        source = stored.value.source if stored is not None else None  # who manages it does not change
        record = ServerRecord(name=name, config=self._store.sealer.seal(wanted), source=source)
        write = _Write(self._store.servers, name, record, stored.revision if stored is not None else None)
        return write, owner_only_changes(opened, wanted)

    async def _check_models(self, config: BastionConfig) -> None:
        """A model has one provider (a request's `model` names it), as the provider routes require."""
        served: dict[str, str] = {}
        providers = {n: v.value.config for n, v in await self._store.providers.list()}
        for name, provider in {**providers, **config.llm.providers}.items():
            for model in provider.models:
                if (other := served.setdefault(model, name)) != name:
                    raise Conflict(f"import: providers {other!r} and {name!r} both serve {model!r}; a model has one")

    async def _provider(self, name: str, provider: ProviderConfig) -> _Write | None:
        stored = await self._store.providers.find(name)
        sealer = self._store.sealer
        old_key = stored.value.config.api_key if stored is not None else None
        api_key = provider.api_key
        if api_key == MASK:
            if old_key is None:
                raise _invalid(f"import: llm.providers.{name}.api_key: {MASK} keeps a stored key, and there is none")
            api_key = sealer.open_value(old_key)
        if stored is not None:
            opened = stored.value.config.model_copy(update={"api_key": sealer.open_value(old_key) if old_key else None})
            if opened == provider.model_copy(update={"api_key": api_key}):
                return None
        sealed = provider.model_copy(update={"api_key": sealer.seal_value(api_key) if api_key is not None else None})
        source = stored.value.source if stored is not None else None
        record = ProviderRecord(name=name, config=sealed, source=source)
        return _Write(self._store.providers, name, record, stored.revision if stored is not None else None)

    async def _check_key_names(self, keys: list[KeyRecord]) -> None:
        active = {v.value.name: i for i, v in await self._store.keys.list() if not v.value.revoked}
        for record in keys:
            if (other := active.get(record.name)) is not None and other != record.id:
                raise Conflict(f"import: an active key named {record.name!r} already exists ({other[:12]}…)")

    async def _key(self, record: KeyRecord) -> _Write | None:
        stored = await self._store.keys.find(record.id)
        if stored is None:
            return _Write(self._store.keys, record.id, record.model_copy(update={"source": None}), None)
        old = stored.value
        kept = {"created_at": old.created_at, "revoked": old.revoked, "source": old.source}
        wanted = record.model_copy(update=kept)  # a revocation sticks, as with `bastion config apply`
        return None if wanted == old else _Write(self._store.keys, record.id, wanted, stored.revision)
