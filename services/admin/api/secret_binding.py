"""A stored secret is released only to the destination it was stored for.

The admin API shows every stored secret as the mask (`***`), and a write that sends the mask back
keeps the stored value. Kept by field name alone, that would let whoever may change an entry point
it elsewhere and have the stored credential sent there: an operator changes a server's `url` to their
own listener, leaves `Authorization: ***`, and the owner's token arrives. So a secret is bound to its
entry's destination (`server_destination`, `provider_destination`): a write that changes the
destination while any secret is kept masked is refused (422 `secret_unbound`, naming the secret, never
its value), and the secret must be given again. Every path that unmasks goes through here: the server
and provider routes, the console's test, a configuration import, a registry update.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.llm_config import ProviderConfig

from .errors import AdminError
from .models import MASK

__all__ = [
    "MASK",
    "destination_changes",
    "fill_masks",
    "provider_destination",
    "require_bound",
    "server_destination",
    "unmask_provider_key",
    "unmask_server",
]


def server_destination(config: ServerConfig) -> dict[str, Any]:
    """Where a server entry's secrets go: the remote URL.

    What a stdio server runs (its `env` is handed to that process); an OpenAPI server's document (its
    `servers` name the API when `base_url` does not), base URL, and the OAuth endpoints its auth talks
    to."""
    openapi = config.openapi
    auth = openapi.auth if openapi is not None else None
    return {
        "url": config.url,
        "command": config.command,
        "args": list(config.args),
        "cwd": config.cwd,
        "openapi.document": openapi.document if openapi is not None else None,
        "openapi.base_url": openapi.base_url if openapi is not None else None,
        "openapi.auth.token_url": getattr(auth, "token_url", None),
        "openapi.auth.resource": getattr(auth, "resource", None),
    }


def provider_destination(config: ProviderConfig) -> dict[str, Any]:
    """Where an LLM provider's key goes.

    Its base URL (every request is `<base_url>/...`), and the token endpoint a key exchanged for access
    tokens is sent to (`token_url`; None: the cloud's own)."""
    return {"base_url": config.base_url, "token_url": config.token_url}


def destination_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The destination fields that differ between two entries (`*_destination` of each)."""
    return [field for field in after if after[field] != before.get(field)]


def require_bound(what: str, kept: Iterable[str], before: dict[str, Any], after: dict[str, Any]) -> None:
    """422 when secrets stored for `before`'s destination would go to `after`'s, a different one.

    `kept` names them as `map_secrets` does; `what` names the entry. The one rule every unmasking path
    applies."""
    kept = list(kept)
    moved = destination_changes(before, after)
    if kept and moved:
        raise AdminError(
            422,
            "secret_unbound",
            f"{what}: {', '.join(kept)} kept as stored ({MASK}) while {', '.join(map(repr, moved))} changed: a"
            " stored secret is released only to the destination it was stored for; give it again",
        )


def _no_stored(what: str, where: str) -> AdminError:
    return AdminError(422, "invalid_mask", f"{what}: {where} is {MASK}, which keeps a stored value, and there is none")


def unmask_server(new: ServerConfig, old: ServerConfig | None, what: str) -> ServerConfig:
    """`new` with each masked secret replaced by the value `old` (opened) stores at the same place.

    When `new` goes where `old` went (`require_bound`); a mask with nothing stored is refused."""
    filled, kept = fill_masks(new, old, what)
    if old is not None:
        require_bound(what, kept, server_destination(old), server_destination(new))
    return filled


def fill_masks(new: ServerConfig, old: ServerConfig | None, what: str) -> tuple[ServerConfig, list[str]]:
    """`new` with each masked secret replaced by the value `old` stores at the same place.

    And the places so kept, for a caller that checks other rights before `require_bound` (a 403 before a
    422); a mask with nothing stored is refused."""
    stored: dict[str, str] = {}
    if old is not None:
        old.map_secrets(lambda where, value: stored.setdefault(where, value))
    kept: list[str] = []

    def keep(where: str, value: str) -> str:
        if value != MASK:
            return value
        if where not in stored:
            raise _no_stored(what, where)
        kept.append(where)
        return stored[where]

    return new.map_secrets(keep), kept


def unmask_provider_key(new: ProviderConfig, old: ProviderConfig | None, old_key: str | None, what: str) -> str | None:
    """The plain key to store for `new`.

    Its own, or for the mask the stored one (`old_key`, opened) when `new` keeps `old`'s base URL
    (`require_bound`)."""
    if new.api_key != MASK:
        return new.api_key
    if old is None or old_key is None:
        raise _no_stored(what, "api_key")
    require_bound(what, ["api_key"], provider_destination(old), provider_destination(new))
    return old_key
