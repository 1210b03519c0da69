"""Push the config file into the JetStream KV buckets the services watch.

Declarative and idempotent: after `apply_config` the buckets hold exactly what the file says.
`KV_SERVERS` and `KV_KEYS` may also hold servers and keys created at run time, so only records
marked `source="config"` are ever deleted. Unchanged records
are not rewritten, so watchers see no spurious updates. A key's secret never leaves this process:
only its sha256 (the KV key and `KeyRecord.id`) is written. Server `env`/`headers` values are written
sealed (`libs.common.runtime.sealing`), and every stored server whose values are not sealed under the
first key of `BASTION_SECRETS_KEY` is re-sealed: applying after a key rotation re-encrypts them all.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.common.bus.nats import kv_bucket, kv_snapshot
from libs.common.bus.permissions import ADMIN
from libs.common.bus.stores import declare_owned
from libs.common.cedar.policy_store import active_version, publish, read_version
from libs.common.contracts import subjects
from libs.common.contracts.config import BastionConfig
from libs.common.contracts.config_records import CONFIG_SOURCE, entity_records
from libs.common.contracts.llm import ProviderRecord
from libs.common.contracts.llm_routes import API_SOURCE, ROUTES_KEY, RoutesRecord
from libs.common.contracts.messages import KeyRecord, ServerRecord
from libs.common.runtime.sealing import Sealer, SealingError
from libs.common.settings import StoreSettings
from libs.common.settings.config_file import key_records

__all__ = ["CONFIG_SOURCE", "apply_config", "entity_records", "key_records"]

log = logging.getLogger(__name__)

Entry = KeyValue.Entry

_ROUTE_WRITE_TRIES = 5
"""Reads and revision-checked writes of the routes record before apply gives up (admin writes racing it)."""
_JS_TIMEOUT = 15.0
"""Seconds a JetStream API request may take: apply may run while the server is busy (a start, a backup),
and it is a one-off command, so waiting beats failing at nats-py's 5 s default."""


async def _current(js: JetStreamContext, bucket: str) -> tuple[KeyValue, dict[str, bytes]]:
    """The bucket (declared by `apply_config`) and what it holds now."""
    kv = await kv_bucket(js, bucket)
    return kv, {name: entry.value or b"" for name, entry in (await kv_snapshot(js, bucket)).items()}


def _unchanged(stored: bytes | None, wanted: ServerRecord, sealer: Sealer) -> bool:
    """Whether the stored record already says what the file says, sealed under the current key.

    (Sealing is randomized, so the bytes differ on every write: compare what they open to.)"""
    if stored is None:
        return False
    try:
        old = ServerRecord.model_validate_json(stored)
        return sealer.is_current(old.config) and old.model_copy(update={"config": sealer.open(old.config)}) == wanted
    except (ValueError, SealingError):
        return False


async def _drop_unlisted(
    kv: KeyValue,
    current: dict[str, bytes],
    listed: AbstractSet[str],
    record: type[ServerRecord] | type[ProviderRecord],
    keep: Callable[[str], Awaitable[None]],
) -> None:
    """Records the file no longer names.

    Removed if a file put them there, else kept (`keep`: added at run time through the admin API,
    re-sealed if needed)."""
    for name in current.keys() - listed:
        try:
            managed = record.model_validate_json(current[name]).source == CONFIG_SOURCE
        except ValueError:
            managed = False
        if managed:
            await kv.delete(name)
        else:
            await keep(name)


async def _reseal(kv: KeyValue, name: str, sealer: Sealer) -> None:
    """Re-seal a server added at run time under the first key.

    (Revision-checked: a concurrent admin change wins, and was sealed under the current key by the admin
    API anyway)."""
    try:
        entry = await kv.get(name)
        record = ServerRecord.model_validate_json(entry.value or b"")
        if sealer.is_current(record.config):
            return
        resealed = record.model_copy(update={"config": sealer.reseal(record.config)})
        await kv.update(name, resealed.model_dump_json().encode(), last=entry.revision)
    except (KeyNotFoundError, KeyWrongLastSequenceError, ValueError):
        return  # gone, changed meanwhile, or unreadable (including sealed under a key we no longer have)


async def _apply_servers(js: JetStreamContext, config: BastionConfig, sealer: Sealer) -> None:
    """The file's servers are written.

    Servers the file no longer names are removed only if a file put them there (servers added at run time
    through the admin API stay, re-sealed if needed)."""
    kv, current = await _current(js, subjects.KV_SERVERS)
    for name, server in config.mcp_servers.items():
        wanted = ServerRecord(name=name, config=server, source=CONFIG_SOURCE)
        if not _unchanged(current.get(name), wanted, sealer):
            sealed = wanted.model_copy(update={"config": sealer.seal(server)})
            await kv.put(name, sealed.model_dump_json().encode())
    await _drop_unlisted(kv, current, config.mcp_servers.keys(), ServerRecord, lambda name: _reseal(kv, name, sealer))


def _provider_unchanged(stored: bytes | None, wanted: ProviderRecord, sealer: Sealer) -> bool:
    """Whether the stored provider already says what the file says, its key sealed under the current key."""
    if stored is None:
        return False
    try:
        old = ProviderRecord.model_validate_json(stored)
        key = old.config.api_key
        if key is not None and not sealer.current(key):
            return False
        opened = old.config.model_copy(update={"api_key": sealer.open_value(key) if key is not None else None})
        return old.model_copy(update={"config": opened}) == wanted
    except (ValueError, SealingError):
        return False


async def _reseal_provider(kv: KeyValue, name: str, sealer: Sealer) -> None:
    """Re-seal the key of a provider added at run time (as `_reseal` does for servers)."""
    try:
        entry = await kv.get(name)
        record = ProviderRecord.model_validate_json(entry.value or b"")
        key = record.config.api_key
        if key is None or sealer.current(key):
            return
        config = record.config.model_copy(update={"api_key": sealer.seal_value(sealer.open_value(key))})
        resealed = record.model_copy(update={"config": config})
        await kv.update(name, resealed.model_dump_json().encode(), last=entry.revision)
    except (KeyNotFoundError, KeyWrongLastSequenceError, ValueError, SealingError):
        return  # gone, changed meanwhile, or unreadable


async def _apply_providers(js: JetStreamContext, config: BastionConfig, sealer: Sealer) -> None:
    """The file's LLM providers are written (an inline `api_key` sealed) unless already stored as they are.

    (A rewrite would reset the executors' breakers); providers the file no longer names are removed when
    a file put them there, and those added at run time stay (re-sealed if needed)."""
    kv, current = await _current(js, subjects.KV_LLM)
    for name, provider in config.llm.providers.items():
        wanted = ProviderRecord(name=name, config=provider, source=CONFIG_SOURCE)
        if not _provider_unchanged(current.get(name), wanted, sealer):
            key = provider.api_key
            sealed = provider.model_copy(update={"api_key": sealer.seal_value(key) if key is not None else None})
            await kv.put(name, wanted.model_copy(update={"config": sealed}).model_dump_json().encode())
    await _drop_unlisted(
        kv, current, config.llm.providers.keys(), ProviderRecord, lambda name: _reseal_provider(kv, name, sealer)
    )
    await _apply_routes(kv, config)


async def _apply_routes(kv: KeyValue, config: BastionConfig) -> None:
    """The file's `llm.models` replace the routes a file wrote; those added through the admin API stay.

    A route the file names that the admin API wrote too becomes the file's (reported: the file is what
    an operator declared). Written at the revision read, and read again when the admin API wrote meanwhile."""
    for _ in range(_ROUTE_WRITE_TRIES):
        try:
            entry: Entry | None = await kv.get(ROUTES_KEY)
        except KeyNotFoundError:
            entry = None
        stored = _stored_routes(entry)
        kept = stored.by_source(API_SOURCE)
        for name in sorted(kept.keys() & config.llm.models.keys()):
            log.warning("config apply: route %r written through the admin API is replaced by the file's", name)
            del kept[name]
        models = {**kept, **config.llm.models}
        sources = {**{name: API_SOURCE for name in kept}, **{name: CONFIG_SOURCE for name in config.llm.models}}
        wanted = RoutesRecord(models=models, sources=sources)
        try:
            await _write_routes(kv, entry, stored, wanted)
            return
        except KeyWrongLastSequenceError:
            continue
    raise RuntimeError("config apply: the LLM routes kept changing under it; apply again")


def _stored_routes(entry: Entry | None) -> RoutesRecord:
    """What the routes record holds now (an unreadable one: nothing to keep)."""
    if entry is None or not entry.value:
        return RoutesRecord()
    try:
        return RoutesRecord.model_validate_json(entry.value)
    except ValueError:
        return RoutesRecord()


async def _write_routes(kv: KeyValue, entry: Entry | None, stored: RoutesRecord, wanted: RoutesRecord) -> None:
    """`wanted` over `entry`, only if it is still the latest (nothing written when already so, or both empty)."""
    if entry is None:
        if wanted.models:
            await kv.create(ROUTES_KEY, wanted.model_dump_json().encode())
    elif not wanted.models:
        await kv.delete(ROUTES_KEY, last=entry.revision)
    elif stored.models != wanted.models or {n: stored.source_of(n) for n in stored.models} != wanted.sources:
        await kv.update(ROUTES_KEY, wanted.model_dump_json().encode(), last=entry.revision)


async def _apply_keys(js: JetStreamContext, records: list[KeyRecord]) -> None:
    kv, stored = await _current(js, subjects.KV_KEYS)
    current: dict[str, KeyRecord | None] = {}
    for key_id, raw in stored.items():
        try:
            current[key_id] = KeyRecord.model_validate_json(raw)
        except ValueError:
            current[key_id] = None  # unreadable: overwrite it if the config names it, else leave it
    for record in records:
        old = current.get(record.id)
        if old is not None:
            record.created_at = old.created_at
            record.revoked = old.revoked  # a revocation sticks until the key leaves the config
            record.created_by = old.created_by  # its maker is history, not configuration
            if old == record:
                continue
        await kv.put(record.id, record.model_dump_json().encode())
    wanted = {record.id for record in records}
    for key_id, old in current.items():
        if key_id not in wanted and old is not None and old.source == CONFIG_SOURCE:
            await kv.delete(key_id)


async def _apply_entities(js: JetStreamContext, entries: dict[str, bytes]) -> None:
    """Entities named in the config are written; others (created through the admin API) are kept."""
    kv, current = await _current(js, subjects.KV_POLICY)
    for name, value in entries.items():
        if current.get(name) != value:
            await kv.put(name, value)


async def apply_config(nc: NATS, config: BastionConfig, sealer: Sealer | None = None) -> None:
    """Make KV_SERVERS and the config-managed parts of KV_KEYS and KV_POLICY match `config`.

    `sealer` seals server secrets (none: stored as given). Raises `ConfigError` (see `key_records`)
    before writing anything.
    """
    records = key_records(config)
    entities = entity_records(config)
    js = nc.jetstream(timeout=_JS_TIMEOUT)
    await declare_owned(js, ADMIN, StoreSettings())  # the admin role's buckets: created here if missing
    await _apply_servers(js, config, sealer or Sealer())
    await _apply_entities(js, entities)
    await _apply_keys(js, records)
    await _apply_providers(js, config, sealer or Sealer())
    await _apply_policies(js, config)


async def _apply_policies(js: JetStreamContext, config: BastionConfig) -> None:
    """The file's policies become the active version, as a new one when the active text differs."""
    if config.policies is None:
        return
    kv = await kv_bucket(js, subjects.KV_POLICY)
    active, _ = await active_version(kv)
    current = await read_version(kv, active) if active else None
    if current is None or current.text != config.policies:
        await publish(kv, config.policies, by="config", comment="bastion config apply", source=CONFIG_SOURCE)
