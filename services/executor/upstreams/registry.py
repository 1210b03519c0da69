"""Which implementation serves which kind of server: one entry per kind, keyed by `ServerConfig.transport`.

A new kind is its module (a `ConnectorFactory`) and one line here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from libs.common.contracts.config import ServerConfig

from .a2a import connector as a2a
from .interface import Connector, ConnectorFactory, SessionHooks
from .mcp import sse, stdio, streamable_http
from .openapi import connector as openapi

__all__ = ["KINDS", "connector_for"]

KINDS: Mapping[str, ConnectorFactory] = MappingProxyType(
    {
        "stdio": stdio.connector,
        "http": streamable_http.connector,
        "sse": sse.connector,
        "openapi": openapi.connector,  # a REST API served from its OpenAPI document
        "a2a": a2a.connector,  # an A2A agent, its skills as tools
    }
)


def connector_for(name: str, config: ServerConfig, hooks: SessionHooks) -> Connector:
    """The connector of `config`'s kind; `KeyError` naming the kinds known for one that is not."""
    factory = KINDS.get(config.transport)
    if factory is None:
        raise KeyError(f"server {name!r}: no upstream kind {config.transport!r} (known: {', '.join(sorted(KINDS))})")
    return factory(name, config, hooks)
