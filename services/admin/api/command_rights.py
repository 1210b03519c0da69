"""The admin API's check of `libs.common.command_servers`: a write of a server entry that sets or
changes an owner-only field (what a stdio server runs, how it is confined, private hosts) needs
`servers:command`, held by the owner role alone. Every path that writes or starts an entry calls it:
the server routes, a configuration import, the console's connectivity test."""

from __future__ import annotations

from libs.common.command_servers import COMMAND_PERMISSION, WHY_OWNER_ONLY, owner_only_changes
from libs.common.config import ServerConfig
from libs.common.sealing import Sealer, SealingError

from .errors import forbidden
from .identity import Identity

__all__ = ["comparable", "require_command", "require_fields"]


def comparable(sealer: Sealer, config: ServerConfig) -> ServerConfig:
    """The entry with its secrets opened, to compare with another opened one; as stored when a value
    cannot be opened (then only the same sealed value compares equal: a change, to be safe)."""
    try:
        return sealer.open(config)
    except SealingError:
        return config


def require_command(identity: Identity, what: str, before: ServerConfig | None, after: ServerConfig) -> None:
    """403 naming `servers:command` when writing `after` over `before` (None: a new entry) changes an
    owner-only field and `identity` lacks the permission; `what` names the entry in the message."""
    require_fields(identity, what, owner_only_changes(before, after))


def require_fields(identity: Identity, what: str, changed: list[str]) -> None:
    """403 naming `servers:command` when `changed` (owner-only fields a write sets) is not empty and
    `identity` lacks the permission."""
    if changed and not identity.grants.allows(COMMAND_PERMISSION):
        fields = ", ".join(repr(name) for name in changed)
        raise forbidden(identity, COMMAND_PERMISSION, why=f"{what} sets {fields}; {WHY_OWNER_ONLY}")
