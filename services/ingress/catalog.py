"""The aggregated tool catalog, held in memory and answered from memory.

Fed by the KV watch on the executors' per-server catalogs. Names are assigned over the whole
catalog (`assign_names`), so they are collision-free across servers; each tool's definition is
rendered once, with its namespaced name, when the catalog changes, never per request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from bastion_common.kvwatch import decode_value
from bastion_common.messages import ServerCatalog
from bastion_common.naming import assign_names

__all__ = ["Catalog", "CatalogEntry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    name: str
    server: str
    tool: str
    definition: dict[str, Any]
    """The upstream definition with `name` replaced by the namespaced name."""
    fragment: orjson.Fragment
    """`definition` pre-serialized, spliced into `tools/list` answers as is."""


class Catalog:
    def __init__(self) -> None:
        self._servers: dict[str, ServerCatalog] = {}
        self.entries: list[CatalogEntry] = []
        self.by_name: dict[str, CatalogEntry] = {}
        self.pairs: list[tuple[str, str]] = []
        self.revision = 0

    def put(self, server: str, value: bytes, _revision: int = 0) -> None:
        catalog = decode_value(ServerCatalog, value, f"catalog of {server}")
        if catalog is None:
            return
        self._servers[server] = catalog
        self._rebuild()

    def delete(self, server: str) -> None:
        if self._servers.pop(server, None) is not None:
            self._rebuild()

    def server_status(self, server: str) -> ServerCatalog | None:
        return self._servers.get(server)

    def _rebuild(self) -> None:
        definitions = {
            (name, tool.tool): tool.definition
            for name, catalog in self._servers.items()
            if catalog.status == "ready"
            for tool in catalog.tools
        }
        names = assign_names(definitions)
        entries = []
        for name, (server, tool) in sorted(names.items(), key=lambda item: (item[1], item[0])):
            definition = {**definitions[(server, tool)], "name": name}
            entries.append(CatalogEntry(name, server, tool, definition, orjson.Fragment(orjson.dumps(definition))))
        self.entries = entries
        self.by_name = {entry.name: entry for entry in entries}
        self.pairs = [(entry.server, entry.tool) for entry in entries]
        self.revision += 1
        log.info("catalog: %d tools from %d servers", len(entries), len(self._servers))
