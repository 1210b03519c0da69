"""Push the config file into the JetStream KV buckets the services watch.

Declarative and idempotent: after `apply_config` the buckets hold exactly what the file says.
`KV_SERVERS` and `KV_KEYS` may also hold servers and keys created at run time, so only records
marked `source="config"` are ever deleted. Unchanged records
are not rewritten, so watchers see no spurious updates. A key's secret never leaves this process:
only its sha256 (the KV key and `KeyRecord.id`) is written.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from bastion_common import subjects
from bastion_common.config import BastionConfig, ConfigError
from bastion_common.entities import entity_key
from bastion_common.messages import KeyRecord, ServerRecord
from bastion_common.nats import kv_bucket

__all__ = ["CONFIG_SOURCE", "apply_config", "entity_records", "key_records"]

CONFIG_SOURCE = "config"


def key_records(config: BastionConfig) -> list[KeyRecord]:
    """The KV records for the config's keys; also the checks the schema alone cannot make.

    Raises `ConfigError` if a `key_env` variable is unset, two keys share a secret, or a server
    name cannot be a KV key (a trailing '.').
    """
    for name in config.mcp_servers:
        if name.endswith("."):
            raise ConfigError(f"mcpServers.{name}: a server name cannot end with '.'")
    records: dict[str, KeyRecord] = {}
    for key in config.keys:
        record = KeyRecord(
            id=key.key_hash(),
            name=key.name,
            grants=list(key.tools),
            groups=list(key.groups),
            user_id=key.user,
            team_id=key.team,
            customer_id=key.customer,
            budget=key.budget,
            rate_limit=key.rate_limit,
            source=CONFIG_SOURCE,
        )
        if (twin := records.get(record.id)) is not None:
            raise ConfigError(f"keys.{key.name}: has the same secret as key {twin.name!r}; give each key its own")
        records[record.id] = record
    return list(records.values())


async def _current(kv: KeyValue) -> dict[str, bytes]:
    try:
        names = await kv.keys()
    except NoKeysError:
        return {}
    values: dict[str, bytes] = {}
    for name in names:
        try:
            values[name] = (await kv.get(name)).value or b""
        except KeyNotFoundError:  # deleted between the listing and the read
            continue
    return values


async def _apply_servers(kv: KeyValue, config: BastionConfig) -> None:
    """The file's servers are written; servers the file no longer names are removed only if a file
    put them there (servers added at run time through the admin API stay)."""
    current = await _current(kv)
    for name, server in config.mcp_servers.items():
        value = ServerRecord(name=name, config=server, source=CONFIG_SOURCE).model_dump_json().encode()
        if current.get(name) != value:
            await kv.put(name, value)
    for name in current.keys() - config.mcp_servers.keys():
        try:
            managed = ServerRecord.model_validate_json(current[name]).source == CONFIG_SOURCE
        except ValueError:
            managed = False
        if managed:
            await kv.delete(name)


async def _apply_keys(kv: KeyValue, records: list[KeyRecord]) -> None:
    current: dict[str, KeyRecord | None] = {}
    for key_id, raw in (await _current(kv)).items():
        try:
            current[key_id] = KeyRecord.model_validate_json(raw)
        except ValueError:
            current[key_id] = None  # unreadable: overwrite it if the config names it, else leave it
    for record in records:
        old = current.get(record.id)
        if old is not None:
            record.created_at = old.created_at
            record.revoked = old.revoked  # a revocation sticks until the key leaves the config
            if old == record:
                continue
        await kv.put(record.id, record.model_dump_json().encode())
    wanted = {record.id for record in records}
    for key_id, old in current.items():
        if key_id not in wanted and old is not None and old.source == CONFIG_SOURCE:
            await kv.delete(key_id)


def entity_records(config: BastionConfig) -> dict[str, bytes]:
    """KV_POLICY entries (`<kind>.<id>`) for the config's groups, customers, teams and users."""
    entries: dict[str, bytes] = {}
    for kind, items in (("group", config.groups), ("customer", config.customers), ("team", config.teams),
                        ("user", config.users)):
        for item in items:
            name = entity_key(kind, item.id)
            if name in entries:
                raise ConfigError(f"{kind}s: id {item.id!r} is used twice")
            # timestamps would make every apply look like a change
            entries[name] = item.model_dump_json(exclude={"created_at", "updated_at"}).encode()
    return entries


async def _apply_entities(kv: KeyValue, entries: dict[str, bytes]) -> None:
    """Entities named in the config are written; others (created through the admin API) are kept."""
    current = await _current(kv)
    for name, value in entries.items():
        if current.get(name) != value:
            await kv.put(name, value)


async def apply_config(nc: NATS, config: BastionConfig) -> None:
    """Make KV_SERVERS and the config-managed parts of KV_KEYS and KV_POLICY match `config`.

    Raises `ConfigError` (see `key_records`) before writing anything.
    """
    records = key_records(config)
    entities = entity_records(config)
    js = nc.jetstream()
    await _apply_servers(await kv_bucket(js, subjects.KV_SERVERS), config)
    await _apply_entities(await kv_bucket(js, subjects.KV_POLICY), entities)
    await _apply_keys(await kv_bucket(js, subjects.KV_KEYS), records)
