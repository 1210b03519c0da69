"""The admin API's check of `libs.common.contracts.command_servers`.

A write of a server entry that sets or changes an owner-only field (what a stdio server runs, how it is
confined, private hosts) needs `servers:command`, held by the owner role alone. Every path that writes or
starts an entry calls it: the server routes, a configuration import, the console's connectivity test."""

from __future__ import annotations

from libs.common.contracts.command_servers import (
    COMMAND_PERMISSION,
    WHY_OWNER_ONLY,
    WHY_PROVIDER_ENV,
    owner_only_changes,
    provider_owner_only_changes,
)
from libs.common.contracts.config import ServerConfig
from libs.common.contracts.llm_config import ProviderConfig
from libs.common.runtime.sealing import Sealer, SealingError

from .errors import forbidden
from .identity import Identity

__all__ = ["comparable", "require_command", "require_fields", "require_provider_fields"]


def comparable(sealer: Sealer, config: ServerConfig) -> ServerConfig:
    """The entry with its secrets opened, to compare with another opened one.

    As stored when a value cannot be opened (then only the same sealed value compares equal: a change, to
    be safe)."""
    try:
        return sealer.open(config)
    except SealingError:
        return config


def require_command(identity: Identity, what: str, before: ServerConfig | None, after: ServerConfig) -> None:
    """403 naming `servers:command` when a write changes an owner-only field without the permission.

    `after` is written over `before` (None: a new entry) by `identity`; `what` names the entry in the
    message."""
    require_fields(identity, what, owner_only_changes(before, after))


def require_fields(identity: Identity, what: str, changed: list[str], why: str = WHY_OWNER_ONLY) -> None:
    """403 naming `servers:command` when a write sets owner-only fields without the permission.

    `changed`: the owner-only fields the write sets; `identity`: who writes."""
    if changed and not identity.grants.allows(COMMAND_PERMISSION):
        fields = ", ".join(repr(name) for name in changed)
        raise forbidden(identity, COMMAND_PERMISSION, why=f"{what} sets {fields}; {why}")


def require_provider_fields(
    identity: Identity, what: str, before: ProviderConfig | None, after: ProviderConfig
) -> None:
    """403 naming `servers:command` (the owner's) when an LLM provider's write reaches the environment.

    That is, it names a variable of the executors' environment (`api_key_env`) or moves one to another
    `base_url`."""
    require_fields(identity, what, provider_owner_only_changes(before, after), WHY_PROVIDER_ENV)
