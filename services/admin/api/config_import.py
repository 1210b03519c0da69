"""Importing a configuration file through the admin API.

What `bastion config apply` reads (the file the console exports), compared with what is stored and
written through the admin API's own tables.

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

from libs.common.cedar.cedar_policies import check_config_policies
from libs.common.contracts.command_servers import COMMAND_PERMISSION, owner_only_changes, provider_owner_only_changes
from libs.common.contracts.config import BastionConfig, ConfigError, ServerConfig, parse_untrusted_text
from libs.common.contracts.config_records import entity_records
from libs.common.contracts.entities import Entity
from libs.common.contracts.llm import ProviderRecord
from libs.common.contracts.llm_config import ProviderConfig
from libs.common.contracts.messages import KeyRecord, ServerRecord
from libs.common.settings.config_file import env_references, key_records, parse_config

from .errors import AdminError, forbidden
from .identity import Identity
from .models import MASK
from .secret_binding import fill_masks, require_bound, server_destination, unmask_provider_key
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
    providers_need_command: dict[str, list[str]] = Field(
        default_factory=dict,
        description="the LLM providers the file adds or changes in an owner-only field (`api_key_env`, or"
        " `base_url` while `api_key_env` is set: where a variable of the executors' environment is sent),"
        " with those fields: applying them needs `servers:command`, the owner's",
    )


@dataclass(frozen=True, slots=True)
class _Write:
    table: Table[Any]
    record_id: str
    value: BaseModel
    revision: int | None
    """The stored revision the write replaces; None: a new record."""


_SECTION_KEYS = {
    "servers": ("mcpServers", "mcp_servers"),
    "keys": ("keys",),
    "groups": ("groups",),
    "customers": ("customers",),
    "teams": ("teams",),
    "users": ("users",),
}
_NOT_EXPANDED = (
    "is a ${VAR}, which is expanded only from the owner's configuration file on disk (`bastion config"
    f" apply`), never from the API: write the value itself, or {MASK} to keep the stored one"
)


def _invalid(message: str) -> AdminError:
    return AdminError(422, "invalid_config", message)


def _filled(raw: Any) -> list[str]:
    """The sections of the plan a parsed document fills, before any of it is validated."""
    if not isinstance(raw, dict):
        return []
    filled = [section for section, keys in _SECTION_KEYS.items() if any(raw.get(k) for k in keys)]
    llm = raw.get("llm")
    if isinstance(llm, dict) and llm.get("providers"):
        filled.append("llm_providers")
    return filled


def _ids(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else ([value] if value else [])


class Importer:
    def __init__(self, store: AdminStore, identity: Identity) -> None:
        self._store = store
        self._identity = identity

    def read(self, text: str) -> tuple[BastionConfig, list[KeyRecord], list[str]]:
        """The file as `bastion config apply` reads it, without expanding anything from this service's environment.

        403 for a section the principal may not write (before the file is validated), 422 naming the
        first problem (its field, never its value), and its keys."""
        try:
            raw = parse_untrusted_text(text, "import")
        except ConfigError as exc:
            raise _invalid(str(exc)) from None
        self.require(self._identity, _filled(raw))
        try:
            if where := env_references(raw):
                raise ConfigError(f"import: {where[0]} {_NOT_EXPANDED}")
            config = parse_config(raw, "import", expand=False)
            check_config_policies(config.policies, "import")  # not written here, but never accepted broken
            if named := [k.name for k in config.keys if k.key_env is not None]:
                raise ConfigError(
                    f"import: keys (name {named[0]!r}).key_env names a variable of the admin service's"
                    " environment, read only from the owner's file on disk: give key_sha256 (or key)"
                )
            if config.llm.models:
                raise ConfigError(
                    "import: llm.models (routed models, docs/llm-routing.md) are applied from the owner's file"
                    " with `bastion config apply`; they cannot be imported through the API yet"
                )
            keys = key_records(config)
            entity_records(config)  # an id used twice in one kind
        except ConfigError as exc:
            raise _invalid(str(exc)) from None
        ignored = [s for s in _START_ONLY if isinstance(raw, dict) and s in raw]
        return config, keys, ignored

    @staticmethod
    def require(identity: Identity, filled: list[str]) -> None:
        """403 naming the first write permission a section the file fills needs and the principal lacks."""
        for section in SECTIONS:
            permission = SECTIONS[section]
            if section in filled and identity.grants.scopes(permission) is not None:  # a team's key manager: not here
                raise forbidden(identity, permission)

    async def plan(
        self, config: BastionConfig, keys: list[KeyRecord]
    ) -> tuple[dict[str, SectionPlan], list[_Write], dict[str, list[str]], dict[str, list[str]]]:
        """What the import would change, the writes that do it.

        And the servers and the LLM providers among them whose owner-only fields it sets
        (`libs.common.contracts.command_servers`); raises before any write is made."""
        sections = {name: SectionPlan() for name in SECTIONS}
        writes: list[_Write] = []
        owner_only: dict[str, list[str]] = {}
        providers_owner_only: dict[str, list[str]] = {}

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
            write, changed = await self._provider(name, provider)
            note("llm_providers", name, write)
            if write is not None and changed:
                providers_owner_only[name] = changed
        await self._check_key_names(keys)
        for record in keys:
            note("keys", record.name, await self._key(record))
        return sections, writes, owner_only, providers_owner_only

    async def write(self, writes: Iterable[_Write]) -> None:
        """Each write revision-checked (a concurrent change is a 409, and what follows is not written).

        Every one an admin audit event through its table."""
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
                # the field and the kind, not the id: a message never repeats a value it refused
                missing += [f"{where}.{field}: a {kind}" for i in _ids(values.get(field)) if i not in known[kind]]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise AdminError(
                422, "unknown_reference", f"import: {missing[0]} that is neither stored nor in the file{more}"
            )

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
        what = f"import: mcpServers.{name}"
        wanted, kept = fill_masks(server, opened, what)
        changed = owner_only_changes(opened, wanted)
        # without `servers:command` a plan names the owner's fields and an apply refuses them (403) first
        if opened is not None and (not changed or self._identity.grants.allows(COMMAND_PERMISSION)):
            require_bound(what, kept, server_destination(opened), server_destination(wanted))
        if stored is not None and wanted == opened:
            return None, []
        source = stored.value.source if stored is not None else None  # who manages it does not change
        record = ServerRecord(name=name, config=self._store.sealer.seal(wanted), source=source)
        write = _Write(self._store.servers, name, record, stored.revision if stored is not None else None)
        return write, changed

    async def _check_models(self, config: BastionConfig) -> None:
        """A model has one provider (a request's `model` names it), as the provider routes require."""
        served: dict[str, str] = {}
        providers = {n: v.value.config for n, v in await self._store.providers.list()}
        for name, provider in {**providers, **config.llm.providers}.items():
            for model in provider.models:
                if (other := served.setdefault(model, name)) != name:
                    raise Conflict(f"import: providers {other!r} and {name!r} both serve {model!r}; a model has one")

    async def _provider(self, name: str, provider: ProviderConfig) -> tuple[_Write | None, list[str]]:
        """The write (None: stored as the file says) and the owner-only fields it sets (`api_key_env`)."""
        stored = await self._store.providers.find(name)
        sealer = self._store.sealer
        old = stored.value.config if stored is not None else None
        old_key = sealer.open_value(old.api_key) if old is not None and old.api_key else None
        api_key = unmask_provider_key(provider, old, old_key, f"import: llm.providers.{name}")
        if old is not None and old.model_copy(update={"api_key": old_key}) == provider.model_copy(
            update={"api_key": api_key}
        ):
            return None, []
        sealed = provider.model_copy(update={"api_key": sealer.seal_value(api_key) if api_key is not None else None})
        source = stored.value.source if stored is not None else None
        record = ProviderRecord(name=name, config=sealed, source=source)
        write = _Write(self._store.providers, name, record, stored.revision if stored is not None else None)
        return write, provider_owner_only_changes(old, provider)

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
        # a revocation sticks, as with `bastion config apply`; who made the key (an approval's judge
        # reads it) is the record's history, not configuration a file carries
        kept = {"created_at": old.created_at, "revoked": old.revoked, "source": old.source}
        kept["created_by"] = old.created_by
        wanted = record.model_copy(update=kept)
        return None if wanted == old else _Write(self._store.keys, record.id, wanted, stored.revision)
