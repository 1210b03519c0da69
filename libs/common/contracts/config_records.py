"""The stored records a configuration file's keys and entities become: what `bastion config apply`
writes and what the admin API's import (`services/admin/api/config_routes.py`) compares and writes,
so both read a file the same way. Neither writes here: only records are built."""

from __future__ import annotations

from libs.common.contracts.config import BastionConfig, ConfigError
from libs.common.contracts.entities import entity_key
from libs.common.contracts.messages import KeyRecord

__all__ = ["CONFIG_SOURCE", "entity_records", "key_records"]

CONFIG_SOURCE = "config"
"""`source` of the records a file put there: `bastion config apply` deletes them when the file no
longer names them (records added at run time are kept)."""


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
            agent=key.agent,
            models=None if key.models is None else list(key.models),
            llm_limits=key.llm_limits,
            code_mode=key.code_mode,
            discovery=key.discovery,
            discovery_pinned=list(key.discovery_pinned),
            content_logging=key.content_logging,
            source=CONFIG_SOURCE,
        )
        if (twin := records.get(record.id)) is not None:
            raise ConfigError(f"keys.{key.name}: has the same secret as key {twin.name!r}; give each key its own")
        records[record.id] = record
    return list(records.values())


def entity_records(config: BastionConfig) -> dict[str, bytes]:
    """KV_POLICY entries (`<kind>.<id>`) for the config's groups, customers, teams and users."""
    entries: dict[str, bytes] = {}
    for kind, items in (
        ("group", config.groups),
        ("customer", config.customers),
        ("team", config.teams),
        ("user", config.users),
    ):
        for item in items:
            name = entity_key(kind, item.id)
            if name in entries:
                raise ConfigError(f"{kind}s: id {item.id!r} is used twice")
            # timestamps would make every apply look like a change
            entries[name] = item.model_dump_json(exclude={"created_at", "updated_at"}).encode()
    return entries
