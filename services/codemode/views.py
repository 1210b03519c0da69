"""The catalog as the codemode service sees it, and each key's view of it, cached.

The catalog comes from the KV watch on `bastion_catalog` (ready servers only). What a key may
use is policy's answer to `bastion.policy.list` (every filter layer: grants, groups, request
headers); the toolset, its rendered stub files and its search index are built once per
(catalog revision, allowed set) and shared by every key with the same view.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from libs.common.bus.kvwatch import decode_value
from libs.common.contracts.messages import PairList, ServerCatalog

from .search import SearchIndex
from .stubs import file_path, render_file
from .toolset import Toolset

__all__ = ["CatalogView", "ToolView", "ViewCache"]

_MAX_VIEWS: Final = 256


class CatalogView:
    def __init__(self, on_change: Callable[[Toolset], object] | None = None) -> None:
        self.on_change = on_change
        """Told every ready tool after each change (search embeds the new definitions)."""
        self._servers: dict[str, ServerCatalog] = {}
        self.revision = 0
        self.listed = PairList.of([])
        """(server, upstream tool name) of every listed tool: the question put to policy, named once
        per revision."""
        self.definitions: list[dict[str, Any]] = []

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return self.listed.pairs

    def merged(
        self, per_user: list[str], own: list[tuple[str, dict[str, Any]]]
    ) -> tuple[PairList, list[dict[str, Any]], str]:
        """The listing of a caller whose tools of the `per_user` servers are `own` (server, definition).

        With what names it among views of the same revision: a digest of `own`."""
        servers = set(per_user)
        tools = sorted(
            [
                (server, tool, d)
                for (server, tool), d in zip(self.pairs, self.definitions, strict=True)
                if server not in servers
            ]
            + [(server, d["name"], d) for server, d in own if server in servers and isinstance(d.get("name"), str)],
            key=lambda t: (t[0], t[1]),
        )
        digest = hashlib.sha256(orjson.dumps(sorted(per_user)) + orjson.dumps(own)).hexdigest()
        return PairList.of([(server, tool) for server, tool, _ in tools]), [d for _, _, d in tools], digest

    def put(self, server: str, value: bytes, _revision: int = 0) -> None:
        catalog = decode_value(ServerCatalog, value, f"catalog of {server}")
        if catalog is None:
            return
        previous = self._servers.get(server)
        self._servers[server] = catalog
        if previous is None or not previous.same_listing(catalog):  # a heartbeat changes nothing here
            self._rebuild()

    def delete(self, server: str) -> None:
        if self._servers.pop(server, None) is not None:
            self._rebuild()

    def _rebuild(self) -> None:
        tools = sorted(
            (name, tool.tool, tool.definition)
            for name, catalog in self._servers.items()
            if catalog.status == "ready"
            for tool in catalog.tools
        )
        self.listed = PairList.of([(server, tool) for server, tool, _ in tools])
        self.definitions = [definition for _, _, definition in tools]
        self.revision += 1
        if self.on_change is not None:
            self.on_change(Toolset((server, definition) for server, _, definition in tools))


@dataclass(slots=True)
class ToolView:
    """One allowed set of tools, with what the meta-tools derive from it (built on first use)."""

    toolset: Toolset
    index: SearchIndex | None = None
    """Its search index, built by `searcher.Searcher.index` on the first search (and rebuilt hybrid
    once the view's tools all have vectors)."""
    _files: dict[str, str] = field(default_factory=dict)

    def file(self, path: str) -> str | None:
        """The stub text at `path` (`servers/<module>.py`; `<module>.py` and `<module>` also do).

        Or None if there is no such file."""
        path = path.strip().removeprefix("./")
        if not path.startswith("servers/"):
            path = f"servers/{path}"
        if not path.endswith(".py"):
            path = f"{path}.py"
        if path not in self._files:
            module = next((m for m in self.toolset.modules if file_path(m) == path), None)
            if module is None:
                return None
            self._files[path] = render_file(self.toolset, module)
        return self._files[path]


class ViewCache:
    def __init__(self, catalog: CatalogView) -> None:
        self.catalog = catalog
        self._views: OrderedDict[tuple[int, tuple[int, ...], str | None], ToolView] = OrderedDict()

    def view(
        self,
        revision: int,
        allowed: list[int],
        pairs: list[tuple[str, str]],
        definitions: list[Any],
        own: str | None = None,
    ) -> ToolView:
        """The view of `allowed` (indexes into `pairs` / `definitions` of catalog `revision`).

        `own`: the digest naming a caller's own listing (`CatalogView.merged`); None for the shared one."""
        key = (revision, tuple(allowed), own)
        view = self._views.get(key)
        if view is None:
            view = ToolView(Toolset((pairs[i][0], definitions[i]) for i in allowed))
            self._views[key] = view
            if len(self._views) > _MAX_VIEWS:
                self._views.popitem(last=False)
        else:
            self._views.move_to_end(key)
        return view
