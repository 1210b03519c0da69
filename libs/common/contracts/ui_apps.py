"""MCP Apps (`io.modelcontextprotocol/ui`) through the gateway.

How an upstream's `ui://` URIs are named to agents, and which tools the extension keeps from the model.

An upstream's `ui://<rest>` is offered as `ui://<server>/<rest>`: still a `ui://` URI (hosts
render only those), unique across servers (a server name is a valid URI host: `config.SERVER_NAME`),
and turned back into the upstream's own URI by cutting the server off again. The rules are
`namespaced_uris`', shared with skills.

Every place the extension names a resource is rewritten the same way: a tool's `_meta.ui.resourceUri`
(and the deprecated flat `_meta["ui/resourceUri"]`), a result's `_meta.ui.resourceUri`, and the
`uri` of each `resources/read` content. CSP, permissions and the other `_meta.ui` fields are not
touched. Pure: ingress names listings with it, the executor answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from libs.common.contracts.namespaced_uris import namespaced_uri, split_namespaced
from libs.common.contracts.pins import definition_sha256
from libs.common.contracts.skills import SCHEME as SKILL_SCHEME

__all__ = [
    "APP_MIME_TYPE",
    "EXTENSION",
    "HOST",
    "SCHEME",
    "app_definition",
    "app_only",
    "declared_in_request",
    "declares_apps",
    "gateway_uri",
    "linked_app",
    "named_for_gateway",
    "result_for_gateway",
    "upstream_uri",
    "visible_to_app",
]

EXTENSION: Final = "io.modelcontextprotocol/ui"
APP_MIME_TYPE: Final = "text/html;profile=mcp-app"
SCHEME: Final = "ui://"
HOST: Final = "apps"
"""How a session's client capabilities (ingress's `RequestContext.client`, `_Routed.client`) say its
client declared the extension: a host that renders apps, lists app-only tools and calls them for its apps."""
_FLAT_KEY: Final = "ui/resourceUri"
"""The flat `_meta` key the extension deprecated in favour of `_meta.ui.resourceUri`; still sent."""


def gateway_uri(server: str, uri: str) -> str:
    """`uri` of `server` as agents see it: `ui://<rest>` -> `ui://<server>/<rest>`; others unchanged."""
    return namespaced_uri(server, uri, SCHEME)


def upstream_uri(uri: str) -> tuple[str, str]:
    """(server, the upstream's own URI) of a gateway `ui://<server>/<rest>`.

    ValueError saying why when `uri` is not one (`namespaced_uris.split_namespaced`)."""
    return split_namespaced(uri, SCHEME)


def app_only(definition: Mapping[str, Any]) -> bool:
    """Whether the extension keeps this tool from the model.

    `_meta.ui.visibility` is a list without "model" (absent: both model and app may use it)."""
    ui = _ui_meta(definition)
    visibility = ui.get("visibility") if ui is not None else None
    return isinstance(visibility, list) and "model" not in visibility


def visible_to_app(definition: Mapping[str, Any]) -> bool:
    """Whether an app may call this tool: `_meta.ui.visibility` names "app" (absent: model and app)."""
    ui = _ui_meta(definition)
    visibility = ui.get("visibility") if ui is not None else None
    return not isinstance(visibility, list) or "app" in visibility


def linked_app(tool: Mapping[str, Any]) -> str | None:
    """The `ui://` URI a tool names as its app (`_meta.ui.resourceUri`, else the deprecated flat key)."""
    ui = _ui_meta(tool)
    meta = tool.get("_meta")
    for uri in (ui.get("resourceUri") if ui else None, meta.get(_FLAT_KEY) if isinstance(meta, dict) else None):
        if isinstance(uri, str) and uri.startswith(SCHEME):
            return uri
    return None


def app_definition(uri: str, listed: Mapping[str, Any] | None, contents: list[Any]) -> dict[str, Any]:
    """What pinning holds of one app (`DefinitionKind` "app", named by its upstream `uri`).

    The listing entry, the first content's MIME type and `_meta` (CSP and permissions, readable in a
    diff) and the sha256 of all its contents (the HTML is not kept in the pin, only its digest)."""
    first = contents[0] if contents and isinstance(contents[0], dict) else {}
    definition: dict[str, Any] = {"uri": uri, "sha256": definition_sha256({"contents": contents})}
    if listed is not None:
        definition["listing"] = dict(listed)
    for field in ("mimeType", "_meta"):
        if field in first:
            definition[field] = first[field]
    return definition


def declares_apps(capabilities: Any) -> bool:
    """Whether a client's `initialize` capabilities declare the extension (`extensions` map)."""
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    return isinstance(extensions, dict) and isinstance(extensions.get(EXTENSION), dict)


def declared_in_request(params: Any) -> bool:
    """Whether a 2026-07-28 request's envelope (`_meta`) declares the extension.

    In that revision `_meta` carries the client's capabilities on every request."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and declares_apps(meta.get("io.modelcontextprotocol/clientCapabilities"))


def named_for_gateway(server: str, item: dict[str, Any]) -> dict[str, Any]:
    """A tool definition.

    Resource (or resource content) of `server` with every `ui://` (and a `skill://` file's URI) it names
    renamed for the gateway; the same object when it names none."""
    renamed = item
    uri = item.get("uri")
    if isinstance(uri, str) and uri.startswith((SCHEME, SKILL_SCHEME)):  # a skill's files are named alike
        renamed = {**renamed, "uri": namespaced_uri(server, uri, SCHEME if uri.startswith(SCHEME) else SKILL_SCHEME)}
    meta = item.get("_meta")
    if isinstance(meta, dict):
        new_meta = _meta_for_gateway(server, meta)
        if new_meta is not meta:
            renamed = {**renamed, "_meta": new_meta}
    return renamed


def result_for_gateway(server: str, result: dict[str, Any]) -> dict[str, Any]:
    """A `tools/call` or `resources/read` result of `server` with its `ui://` URIs renamed."""
    renamed = named_for_gateway(server, result)
    contents = result.get("contents")
    if isinstance(contents, list):
        new = [named_for_gateway(server, c) if isinstance(c, dict) else c for c in contents]
        if any(a is not b for a, b in zip(new, contents, strict=True)):
            renamed = {**renamed, "contents": new}
    return renamed


def _ui_meta(item: Mapping[str, Any]) -> dict[str, Any] | None:
    meta = item.get("_meta")
    ui = meta.get("ui") if isinstance(meta, dict) else None
    return ui if isinstance(ui, dict) else None


def _meta_for_gateway(server: str, meta: dict[str, Any]) -> dict[str, Any]:
    renamed = meta
    flat = meta.get(_FLAT_KEY)
    if isinstance(flat, str) and flat.startswith(SCHEME):
        renamed = {**renamed, _FLAT_KEY: gateway_uri(server, flat)}
    ui = meta.get("ui")
    linked = ui.get("resourceUri") if isinstance(ui, dict) else None
    if isinstance(ui, dict) and isinstance(linked, str) and linked.startswith(SCHEME):
        renamed = {**renamed, "ui": {**ui, "resourceUri": gateway_uri(server, linked)}}
    return renamed
