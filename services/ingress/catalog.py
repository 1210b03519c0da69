"""The aggregated catalog (tools, prompts, resources, resource templates), held and answered from memory.

Fed by the KV watch on the executors' per-server catalogs. Tool and prompt names are assigned over
the whole catalog, so they are collision-free across servers: `<server>__<name>` (`assign_names`),
or the server's own name for servers configured with `namespace: false`, unless another server
already claims it. Resources keep their URIs (they are addresses, and contents refer to them);
reads are routed by exact URI, then by template. Every definition is rendered once, with its
gateway name, when the catalog changes, never per request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from libs.common.kvwatch import decode_value
from libs.common.messages import PairList, ServerCatalog
from libs.common.naming import VALID_NAME, assign_names

__all__ = ["Catalog", "CatalogEntry", "gateway_names"]

log = logging.getLogger(__name__)

Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    name: str
    """What the agent sees: the gateway name of a tool or prompt, or a resource's URI / template."""
    server: str
    tool: str
    """The upstream's own name (or URI / URI template)."""
    definition: dict[str, Any]
    """The upstream definition with its name replaced by the gateway name."""
    fragment: orjson.Fragment
    """`definition` pre-serialized, spliced into list answers as is."""
    target: str = ""
    """What grants match in the `server/<target>` space: the tool name, `prompt:<name>`, `resource:<uri>`."""


@dataclass(frozen=True, slots=True)
class Listing:
    """One kind of catalog item, in answer order, with what policy needs to filter it."""

    entries: list[CatalogEntry]
    pairs: PairList
    """(server, target) per entry: the question asked of policy, named once per catalog revision."""

    @classmethod
    def of(cls, entries: list[CatalogEntry]) -> Listing:
        return cls(entries, PairList.of([(e.server, e.target or e.tool) for e in entries]))


_EMPTY = Listing([], PairList.of([]))


def gateway_names(pairs: Iterable[Pair], plain: set[str]) -> dict[str, Pair]:
    """Gateway name -> (server, name) for one kind (tools or prompts).

    Servers in `plain` keep their own names when valid and unclaimed. A namespaced name always
    wins over a plain one (it is what the agent was promised for that server), and two plain
    servers offering the same name both fall back to namespacing, so the outcome never depends on
    which server connected first.
    """
    pairs = set(pairs)
    by_plain_name: dict[str, list[Pair]] = {}
    for server, name in pairs:
        if server in plain and VALID_NAME.match(name):
            by_plain_name.setdefault(name, []).append((server, name))
    wanted = {name: owners[0] for name, owners in by_plain_name.items() if len(owners) == 1}
    while True:
        names = assign_names(pair for pair in pairs if pair not in wanted.values())
        taken = [name for name in wanted if name in names]
        if not taken:
            break
        for name in taken:
            del wanted[name]
    for name, owners in by_plain_name.items():
        if name not in wanted:
            servers = ", ".join(sorted(server for server, _ in owners))
            log.warning("catalog: %r is offered by several servers (%s); namespacing it", name, servers)
    return {**names, **wanted}


class Catalog:
    def __init__(self) -> None:
        self._servers: dict[str, ServerCatalog] = {}
        self.tools: Listing = _EMPTY
        self.by_name: dict[str, CatalogEntry] = {}
        self.withheld_by_name: dict[str, CatalogEntry] = {}
        """Tools the executors hold back (`ServerCatalog.withheld`), by the name they would be listed
        under: a call of one is routed so that the executor says what it waits for."""
        self.prompts: Listing = _EMPTY
        self.prompt_by_name: dict[str, CatalogEntry] = {}
        self.resources: Listing = _EMPTY
        self.resource_by_uri: dict[str, CatalogEntry] = {}
        self.templates: Listing = _EMPTY
        self._template_patterns: list[tuple[re.Pattern[str], CatalogEntry]] = []
        self.capabilities: dict[str, Any] = {}
        """What the servers behind the gateway offer together: prompts, resources, completions, logging."""
        self.revision = 0

    def put(self, server: str, value: bytes, _revision: int = 0) -> bool:
        """Take `server`'s entry; True when what it lists changed (not a mere heartbeat)."""
        catalog = decode_value(ServerCatalog, value, f"catalog of {server}")
        if catalog is None:
            return False
        previous = self._servers.get(server)
        self._servers[server] = catalog
        if previous is not None and previous.same_listing(catalog):
            return False
        self._rebuild()
        return True

    def delete(self, server: str) -> None:
        if self._servers.pop(server, None) is not None:
            self._rebuild()

    @property
    def entries(self) -> list[CatalogEntry]:
        """The tools, in answer order."""
        return self.tools.entries

    def server_status(self, server: str) -> ServerCatalog | None:
        return self._servers.get(server)

    def server_offers(self, server: str, capability: str) -> bool:
        catalog = self._servers.get(server)
        return catalog is not None and capability in catalog.capabilities

    def resource_owner(self, uri: str) -> CatalogEntry | None:
        """The resource (or template) `uri` is read from: an exact URI first, then the first
        template it matches, in server order."""
        entry = self.resource_by_uri.get(uri)
        if entry is not None:
            return entry
        return next((entry for pattern, entry in self._template_patterns if pattern.fullmatch(uri)), None)

    def template_owner(self, uri_template: str) -> CatalogEntry | None:
        return next((entry for _, entry in self._template_patterns if entry.tool == uri_template), None)

    def _rebuild(self) -> None:
        ready = {name: catalog for name, catalog in self._servers.items() if catalog.status == "ready"}
        plain = {name for name, catalog in ready.items() if not catalog.namespace}
        tools = {(name, tool.tool): tool.definition for name, catalog in ready.items() for tool in catalog.tools}
        self.tools = Listing.of(_named_entries(tools, gateway_names(tools, plain), "name", ""))
        self.by_name = {entry.name: entry for entry in self.tools.entries}
        held: dict[Pair, dict[str, Any]] = {
            (name, tool): {} for name, catalog in ready.items() for tool in catalog.withheld
        }
        self.withheld_by_name = {
            entry.name: entry
            for entry in _named_entries(held, gateway_names(held, plain), "name", "")
            if entry.name not in self.by_name
        }

        prompts = {(name, p["name"]): p for name, catalog in ready.items() for p in catalog.prompts if "name" in p}
        self.prompts = Listing.of(_named_entries(prompts, gateway_names(prompts, plain), "name", "prompt:"))
        self.prompt_by_name = {entry.name: entry for entry in self.prompts.entries}

        resources: list[CatalogEntry] = []
        seen: dict[str, str] = {}
        for name in sorted(ready):
            for resource in ready[name].resources:
                uri = resource.get("uri")
                if not isinstance(uri, str):
                    continue
                if uri in seen:
                    log.warning(
                        "catalog: resource %r is listed by %s and %s; reads go to %s", uri, seen[uri], name, seen[uri]
                    )
                    continue
                seen[uri] = name
                resources.append(_entry(uri, name, uri, resource, f"resource:{uri}"))
        self.resources = Listing.of(resources)
        self.resource_by_uri = {entry.name: entry for entry in resources}

        templates = [
            _entry(t["uriTemplate"], name, t["uriTemplate"], t, f"resource:{t['uriTemplate']}")
            for name in sorted(ready)
            for t in ready[name].resource_templates
            if isinstance(t.get("uriTemplate"), str)
        ]
        self.templates = Listing.of(templates)
        self._template_patterns = [(_template_regex(entry.tool), entry) for entry in templates]

        self.capabilities = {}
        for catalog in ready.values():
            for capability in ("prompts", "resources", "completions", "logging"):
                if capability in catalog.capabilities:
                    self.capabilities.setdefault(capability, {})
            if (catalog.capabilities.get("resources") or {}).get("subscribe"):
                self.capabilities["resources"]["subscribe"] = True
        self.revision += 1
        log.info(
            "catalog: %d tools, %d prompts, %d resources, %d templates from %d servers",
            len(self.entries),
            len(self.prompts.entries),
            len(resources),
            len(templates),
            len(self._servers),
        )


def _entry(name: str, server: str, upstream: str, definition: dict[str, Any], target: str) -> CatalogEntry:
    return CatalogEntry(name, server, upstream, definition, orjson.Fragment(orjson.dumps(definition)), target)


def _named_entries(
    definitions: dict[Pair, dict[str, Any]], names: dict[str, Pair], field: str, prefix: str
) -> list[CatalogEntry]:
    entries = []
    for name, (server, upstream) in sorted(names.items(), key=lambda item: (item[1], item[0])):
        definition = {**definitions[(server, upstream)], field: name}
        entries.append(_entry(name, server, upstream, definition, f"{prefix}{upstream}"))
    return entries


_EXPRESSION = re.compile(r"\{([+#./;?&]?)([^}]*)\}")


def _template_regex(template: str) -> re.Pattern[str]:
    """An RFC 6570 template as a regex over concrete URIs: simple expressions match one path
    segment, reserved (`{+x}`, `{#x}`) and query forms match the rest."""
    parts, last = [], 0
    for match in _EXPRESSION.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        parts.append("[^/?#]*" if match.group(1) in ("", ".", ";") else ".*")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts))
