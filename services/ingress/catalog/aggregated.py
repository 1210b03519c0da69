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

from libs.common.bus.kvwatch import decode_value
from libs.common.contracts.gateway_tasks import HostedTask, hosted_setting
from libs.common.contracts.messages import PairList, ServerCatalog
from libs.common.contracts.naming import SEPARATOR, VALID_NAME, assign_names, server_slug
from libs.common.contracts.skills import SCHEME as SKILL_SCHEME
from libs.common.contracts.skills import entry_for_gateway, skill_path, upstream_skill_uri
from libs.common.contracts.ui_apps import SCHEME, app_only, named_for_gateway, upstream_uri
from services.ingress.catalog.own_skills import GATEWAY, OwnSkills

__all__ = ["Catalog", "CatalogEntry", "entry_of", "gateway_names"]

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
    def __init__(self, own: OwnSkills | None = None) -> None:
        self.own = own or OwnSkills()
        """The gateway's own skills (`own_skills`), listed beside the upstreams'."""
        self._servers: dict[str, ServerCatalog] = {}
        self.tools: Listing = _EMPTY
        """The tools the model may see: every tool but those MCP Apps keep for the app (`app_only`)."""
        self.app_tools: Listing = _EMPTY
        """Every tool, app-only ones included: what a host that declared MCP Apps is listed (it keeps
        them from its model itself, and its apps call them)."""
        self.app_only: frozenset[str] = frozenset()
        """Gateway names of the tools only an app may call."""
        self.by_name: dict[str, CatalogEntry] = {}
        self.hosted_by_name: dict[str, HostedTask] = {}
        """The operator's task setting (`ServerConfig.tasks`) of each tool that has one."""
        self.withheld_by_name: dict[str, CatalogEntry] = {}
        """Tools the executors hold back (`ServerCatalog.withheld`), by the name they would be listed
        under: a call of one is routed so that the executor says what it waits for."""
        self.prompts: Listing = _EMPTY
        self.prompt_by_name: dict[str, CatalogEntry] = {}
        self.withheld_prompt_by_name: dict[str, CatalogEntry] = {}
        """Prompts the executors hold back (`ServerCatalog.withheld_prompts`), routed like withheld tools."""
        self.skills: Listing = _EMPTY
        """Every server's skills (`io.modelcontextprotocol/skills`), their URIs named for agents."""
        self.skill_by_uri: dict[str, CatalogEntry] = {}
        self._skill_roots: dict[str, list[tuple[str, str]]] = {}
        """server -> (upstream skill root with its trailing `/`, the skill's grant target), longest
        first: which skill a file read belongs to."""
        self.resources: Listing = _EMPTY
        self.resource_by_uri: dict[str, CatalogEntry] = {}
        self.templates: Listing = _EMPTY
        self._template_patterns: list[tuple[re.Pattern[str], CatalogEntry]] = []
        self._read_patterns: list[tuple[re.Pattern[str], CatalogEntry]] = []
        """Listed templates and those the executors hold back (`ServerCatalog.withheld_templates`), in
        server order: what a read of a URI is routed by (a held-back one to be refused there)."""
        self.capabilities: dict[str, Any] = {}
        """What the servers behind the gateway offer together: prompts, resources, completions, logging."""
        self.down: dict[str, ServerCatalog] = {}
        """Configured servers an executor reports unavailable, by name: none of their tools is listed,
        and a call of one is answered with why (`down_owners`), not as an unknown tool."""
        self.ready: frozenset[str] = frozenset()
        """Servers an executor reports ready: their tools, prompts and resources are all listed."""
        self.per_user: frozenset[str] = frozenset()
        """Ready servers configured `per_user`: each caller is listed their own listing of them (`user_views`)."""
        self.revision = 0
        self._rebuild_skills({})

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

    def down_owners(self, name: str) -> list[Pair]:
        """(server, upstream tool name) of each unavailable server `name` could be a tool of.

        The namespaced server its prefix names, else every server that keeps its tools' own names (none
        of them is listed while down, so which one offers it cannot be known)."""
        owners: list[Pair] = []
        for server, catalog in sorted(self.down.items()):
            prefix = f"{server_slug(server)}{SEPARATOR}"
            if catalog.namespace and name.startswith(prefix) and len(name) > len(prefix):
                owners.append((server, name[len(prefix) :]))
        if owners:
            return owners
        return [(server, name) for server, catalog in sorted(self.down.items()) if not catalog.namespace]

    def server_offers(self, server: str, capability: str) -> bool:
        catalog = self._servers.get(server)
        return catalog is not None and capability in catalog.capabilities

    def resource_owner(self, uri: str) -> CatalogEntry | None:
        """The resource (or template) `uri` is read from.

        An exact URI first, then the first template it matches, in server order. A held-back template
        keeps its place: a read under it goes to its server (which refuses it, naming the approval), not
        to the next server's."""
        entry = self.resource_by_uri.get(uri)
        if entry is not None:
            return entry
        if uri.startswith(SCHEME):
            return self._app_resource(uri)
        if uri.startswith(f"{SKILL_SCHEME}{GATEWAY}/"):  # a file of the gateway's own skills
            return entry_of(uri, GATEWAY, uri, {}, self.skill_target(GATEWAY, uri)) if uri in self.own.files else None
        if uri.startswith(SKILL_SCHEME):
            return self._skill_file(uri)
        return next((entry for pattern, entry in self._read_patterns if pattern.fullmatch(uri)), None)

    def _app_resource(self, uri: str) -> CatalogEntry | None:
        """An app's `ui://<server>/<path>` its server does not list.

        (The extension lets a server list only what its tools name): read from that server, if it is
        ready. ValueError for a URI that is no gateway ui:// URI."""
        server, upstream = upstream_uri(uri)
        if server not in self.ready:
            return None
        return entry_of(uri, server, upstream, {}, f"resource:{upstream}")

    def _skill_file(self, uri: str) -> CatalogEntry | None:
        """A file of a skill, `skill://<server>/<path>`, read from that server if it is ready.

        Under its skill's grant (`skill:<skill path>`) when a listed skill holds it. ValueError as above."""
        server, upstream = upstream_skill_uri(uri)
        if server not in self.ready:
            return None
        return entry_of(uri, server, upstream, {}, self.skill_target(server, upstream))

    def skill_target(self, server: str, upstream: str) -> str:
        """What grants match for `server`'s file `upstream`: its skill's, else the resource's own."""
        for root, target in self._skill_roots.get(server, ()):
            if upstream.startswith(root):
                return target
        return f"resource:{upstream}"

    def template_owner(self, uri_template: str) -> CatalogEntry | None:
        return next((entry for _, entry in self._template_patterns if entry.tool == uri_template), None)

    def _rebuild_skills(self, ready: dict[str, ServerCatalog]) -> None:
        own = [entry_of(e["uri"], GATEWAY, e["uri"], e, f"skill:{e['frontmatter']['name']}") for e in self.own.entries]
        entries = own + _skill_entries(ready)
        self.skills = Listing.of(entries)
        self.skill_by_uri = {entry.name: entry for entry in entries}
        roots: dict[str, list[tuple[str, str]]] = {}
        for entry in entries:
            roots.setdefault(entry.server, []).append((entry.tool.rsplit("/", 1)[0] + "/", entry.target))
        self._skill_roots = {server: sorted(held, key=lambda r: -len(r[0])) for server, held in roots.items()}

    def _rebuild(self) -> None:
        ready = {name: catalog for name, catalog in self._servers.items() if catalog.status == "ready"}
        self.down = {name: catalog for name, catalog in self._servers.items() if catalog.status == "unavailable"}
        self.ready = frozenset(ready)
        self.per_user = frozenset(name for name, catalog in ready.items() if catalog.per_user)
        plain = {name for name, catalog in ready.items() if not catalog.namespace}
        hosted = {
            (name, tool.tool): setting
            for name, catalog in ready.items()
            if catalog.hosted_tasks
            for tool in catalog.tools
            if (setting := hosted_setting(catalog.hosted_tasks, tool.tool)) is not None
        }
        tools = {
            (name, tool.tool): _offered(named_for_gateway(name, tool.definition), (name, tool.tool) in hosted)
            for name, catalog in ready.items()
            for tool in catalog.tools
        }
        every_tool = _named_entries(tools, plain, "")
        self.app_only = frozenset(entry.name for entry in every_tool if app_only(entry.definition))
        self.app_tools = Listing.of(every_tool)
        model_tools = [entry for entry in every_tool if entry.name not in self.app_only]
        self.tools = Listing.of(model_tools) if self.app_only else self.app_tools
        self.by_name = {entry.name: entry for entry in every_tool}
        self.hosted_by_name = {  # matched once here, not on every call
            entry.name: hosted[pair] for entry in every_tool if (pair := (entry.server, entry.tool)) in hosted
        }
        held = [(name, tool) for name, catalog in ready.items() for tool in catalog.withheld]
        self.withheld_by_name = _withheld(held, plain, "", self.by_name)

        prompts = {(name, p["name"]): p for name, catalog in ready.items() for p in catalog.prompts if "name" in p}
        self.prompts = Listing.of(_named_entries(prompts, plain, "prompt:"))
        self.prompt_by_name = {entry.name: entry for entry in self.prompts.entries}
        held_prompts = [(name, prompt) for name, catalog in ready.items() for prompt in catalog.withheld_prompts]
        self.withheld_prompt_by_name = _withheld(held_prompts, plain, "prompt:", self.prompt_by_name)

        self._rebuild_skills(ready)
        resources: list[CatalogEntry] = []
        seen: dict[str, str] = {}
        for name in sorted(ready):
            for resource in ready[name].resources:
                upstream = resource.get("uri")
                if not isinstance(upstream, str):
                    continue
                named = named_for_gateway(name, resource)  # an app's ui:// gets its server's name in it
                uri = named["uri"]
                if uri in seen:
                    log.warning(
                        "catalog: resource %r is listed by %s and %s; reads go to %s", uri, seen[uri], name, seen[uri]
                    )
                    continue
                seen[uri] = name
                resources.append(entry_of(uri, name, upstream, named, self.skill_target(name, upstream)))
        self.resources = Listing.of(resources)
        self.resource_by_uri = {entry.name: entry for entry in resources}

        templates = [
            entry_of(t["uriTemplate"], name, t["uriTemplate"], t, f"resource:{t['uriTemplate']}")
            for name in sorted(ready)
            for t in ready[name].resource_templates
            if isinstance(t.get("uriTemplate"), str)
        ]
        self.templates = Listing.of(templates)
        self._template_patterns = [(_template_regex(entry.tool), entry) for entry in templates]
        held_templates = [
            (_template_regex(template), entry_of(template, name, template, {}, f"resource:{template}"))
            for name in sorted(ready)
            for template in ready[name].withheld_templates
        ]
        self._read_patterns = sorted(self._template_patterns + held_templates, key=lambda held: held[1].server)

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


def _skill_entries(ready: dict[str, ServerCatalog]) -> list[CatalogEntry]:
    entries = []
    for server in sorted(ready):
        for skill in ready[server].skills:
            upstream = skill["uri"]
            named = entry_for_gateway(server, skill)
            entries.append(entry_of(named["uri"], server, upstream, named, f"skill:{skill_path(upstream) or upstream}"))
    return entries


def _offered(definition: dict[str, Any], hosted: bool) -> dict[str, Any]:
    """A tool the gateway may host as a task (`ServerConfig.tasks`) says it takes one.

    (`execution.taskSupport`, which 2025-11-25 agents read before asking for a task)."""
    if not hosted or "execution" in definition:
        return definition
    return {**definition, "execution": {"taskSupport": "optional"}}


def entry_of(name: str, server: str, upstream: str, definition: dict[str, Any], target: str) -> CatalogEntry:
    """An entry listing `definition` (rendered once, here) as `name`."""
    return CatalogEntry(name, server, upstream, definition, orjson.Fragment(orjson.dumps(definition)), target)


def _named_entries(definitions: dict[Pair, dict[str, Any]], plain: set[str], prefix: str) -> list[CatalogEntry]:
    """The definitions of one kind (tools or prompts) under their gateway names (`gateway_names`)."""
    entries = []
    names = gateway_names(definitions, plain)
    for name, (server, upstream) in sorted(names.items(), key=lambda item: (item[1], item[0])):
        definition = {**definitions[(server, upstream)], "name": name}
        entries.append(entry_of(name, server, upstream, definition, f"{prefix}{upstream}"))
    return entries


def _withheld(
    held: list[Pair], plain: set[str], prefix: str, listed: dict[str, CatalogEntry]
) -> dict[str, CatalogEntry]:
    """Held-back definitions by gateway name, but for a name a listed definition already has."""
    entries = _named_entries({pair: {} for pair in held}, plain, prefix)
    return {entry.name: entry for entry in entries if entry.name not in listed}


_EXPRESSION = re.compile(r"\{([+#./;?&]?)([^}]*)\}")


def _template_regex(template: str) -> re.Pattern[str]:
    """An RFC 6570 template as a regex over concrete URIs.

    Simple expressions match one path segment, reserved (`{+x}`, `{#x}`) and query forms match the rest."""
    parts, last = [], 0
    for match in _EXPRESSION.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        parts.append("[^/?#]*" if match.group(1) in ("", ".", ";") else ".*")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts))
