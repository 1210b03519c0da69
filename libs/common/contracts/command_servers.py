"""Which changes of an upstream server's entry are an owner's to make.

The rule the admin API applies on every path that writes a server (its routes, a configuration import,
the console's test) and the CLI can read before it asks.

A stdio server is a command the executors run as the gateway's user, the user that owns the data
directory: the owner's token, the secrets key, the Valkey password, every upstream credential. Who
may choose what runs may take all of that, so choosing it needs `servers:command`, which only the
owner role holds; `servers:write` covers the rest of an entry (URLs, headers, prices, limits, tool
filters, `disabled`) and deleting any server. Some fields of a remote entry open as much (reaching
private hosts from inside the network): they are in `OWNER_ONLY_SERVER_FIELDS` too, and so is an
OpenAPI document that names a local file (`LOCAL_DOCUMENT`).

Entries are compared by their dumped dicts, so a field named here that the model does not have (yet)
reads as absent on both sides and changes nothing, and one added later is checked as soon as it exists.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel

__all__ = [
    "COMMAND_PERMISSION",
    "LOCAL_DOCUMENT",
    "OWNER_ONLY_SERVER_FIELDS",
    "WHY_OWNER_ONLY",
    "WHY_PROVIDER_ENV",
    "needs_command",
    "owner_only_changes",
    "provider_owner_only_changes",
]

COMMAND_PERMISSION: Final = "servers:command"

OWNER_ONLY_SERVER_FIELDS: Final = ("command", "args", "env", "cwd", "sandbox", "allow_private_hosts")
"""The fields of an `mcpServers` entry only `servers:command` may set or change: what a stdio server
runs and with what (`command`, `args`, `env`, `cwd`), how it is confined (`sandbox`), and whether a
remote server may be a private address (`allow_private_hosts`)."""

WHY_OWNER_ONLY: Final = (
    "a stdio server's command runs as the gateway's user, which holds every credential of the "
    "deployment, so only an owner may choose what runs and how it is confined"
)


LOCAL_DOCUMENT: Final = "openapi.document"
"""An OpenAPI `document` naming a local file, not an http(s) URL: the executor reads it with every
right of its box, so choosing it tells whether any file it can read exists and what it holds
(docs/openapi.md). Owner-only like a command; a URL stays an operator's (its egress rules apply)."""


def _local_document(dumped: dict[str, Any]) -> str | None:
    openapi = dumped.get("openapi")
    document = openapi.get("document") if isinstance(openapi, dict) else None
    if not isinstance(document, str) or document.lower().startswith(("http://", "https://")):
        return None
    return document


WHY_PROVIDER_ENV: Final = (
    "'api_key_env' sends a variable of the executors' environment, which holds the deployment's "
    "credentials, to the provider's 'base_url', so only an owner may name one or point it elsewhere"
)


def provider_owner_only_changes(before: BaseModel | None, after: BaseModel | None) -> list[str]:
    """The owner-only fields a write of an LLM provider sets (`libs.common.contracts.llm_config.ProviderConfig`).

    `api_key_env` when it is set or changed, and `base_url` or `token_url` when it changes while
    `api_key_env` names a variable (where that variable would be sent). None `before`: a new provider."""
    if after is None:
        return []
    wanted = after.model_dump(mode="json")
    stored = before.model_dump(mode="json") if before is not None else {}
    changed = []
    if wanted.get("api_key_env") != stored.get("api_key_env"):
        changed.append("api_key_env")
    for destination in ("base_url", "token_url"):  # where the variable would be sent
        if wanted.get("api_key_env") is not None and wanted.get(destination) != stored.get(destination):
            changed.append(destination)
    return changed


def _owner_only(entry: BaseModel) -> dict[str, Any]:
    dumped = entry.model_dump(mode="json")
    return {**{name: dumped.get(name) for name in OWNER_ONLY_SERVER_FIELDS}, LOCAL_DOCUMENT: _local_document(dumped)}


def owner_only_changes(before: BaseModel | None, after: BaseModel | None) -> list[str]:
    """The owner-only fields that differ between the stored entry (`before`, None: a new server) and the one to write.

    (`after`, None: a deletion, which needs no more than `servers:write`).

    A new entry is compared with the model's defaults (`model_construct()`: every field at its default,
    unvalidated), so creating a stdio server names at least `command`. Compare entries whose secrets
    are in the same form (both opened, or both as stored): a sealed value never equals its plain text."""
    if after is None:
        return []
    wanted = _owner_only(after)
    stored = _owner_only(before if before is not None else type(after).model_construct())
    return [name for name in (*OWNER_ONLY_SERVER_FIELDS, LOCAL_DOCUMENT) if wanted[name] != stored[name]]


def needs_command(before: BaseModel | None, after: BaseModel | None) -> bool:
    """Whether writing `after` over `before` needs `servers:command` (`owner_only_changes` is not empty)."""
    return bool(owner_only_changes(before, after))
