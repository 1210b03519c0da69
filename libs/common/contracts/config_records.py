"""The stored records a configuration file's entities become.

What `bastion config apply` writes and what the admin API's import
(`services/admin/api/config_routes.py`) compares and writes, so both read a file the same way. Neither
writes here: only records are built (a key's record needs its secret, which may come from the
environment: `libs.common.settings.config_file.key_records`)."""

from __future__ import annotations

from libs.common.contracts.config import BastionConfig, ConfigError
from libs.common.contracts.entities import entity_key

__all__ = ["CONFIG_SOURCE", "entity_records"]

CONFIG_SOURCE = "config"
"""`source` of the records a file put there: `bastion config apply` deletes them when the file no
longer names them (records added at run time are kept)."""


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
