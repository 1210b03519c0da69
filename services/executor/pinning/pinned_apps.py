"""An MCP App's reads held to its pin (docs/mcp-apps.md, docs/supply-chain.md).

An app is pinned by what its listing read (`ui_apps.app_definition`), and every later read of it is held
to that.

A quarantined app is not listed and a read of it is refused naming the approval it needs. A read of
a served app whose contents hash otherwise than the listed (approved) copy is withheld, and the
server listed again so pinning decides the change: an upstream that changes its app without saying
so gets nothing new past the gateway. In `warn` mode reads pass, as drifted tools do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from libs.common.contracts.pins import PinMode
from libs.common.contracts.ui_apps import SCHEME, app_definition

from .decide import PinOutcome

__all__ = ["PinnedApps"]


@dataclass(frozen=True, slots=True)
class PinnedApps:
    mode: PinMode = "tofu"
    served: Mapping[str, str] = field(default_factory=dict)
    """Upstream URI -> the sha256 of the contents its listing read, for each app served."""
    refusals: Mapping[str, str] = field(default_factory=dict)
    """Upstream URI -> why a read of it is refused (quarantined)."""

    @classmethod
    def of(cls, outcome: PinOutcome, mode: PinMode) -> PinnedApps:
        served = {
            d["uri"]: d["sha256"]
            for d in outcome.served("app")
            if isinstance(d.get("uri"), str) and isinstance(d.get("sha256"), str)
        }
        refusals = {
            decision.name: message
            for decision in outcome.decisions
            if decision.kind == "app" and (message := outcome.refusal("app", decision.name)) is not None
        }
        return cls(mode, served, refusals)

    def refusal(self, uri: Any) -> str | None:
        """Why a read of `uri` is refused before it is sent (None: it may go)."""
        return self.refusals.get(uri) if isinstance(uri, str) else None

    def changed(self, uri: Any, result: Mapping[str, Any]) -> str | None:
        """Why the contents a read of app `uri` got are withheld (None: they are the pinned ones)."""
        if self.mode == "warn" or not isinstance(uri, str) or not uri.startswith(SCHEME):
            return None
        contents = result.get("contents")
        read = app_definition(uri, None, contents if isinstance(contents, list) else [])
        pinned = self.served.get(uri)
        if pinned is None:
            return f"app {uri!r} has no pin: its server neither listed it nor named it from a tool when last listed"
        if read["sha256"] != pinned:
            return f"app {uri!r} changed since its server was listed; listing it again for pinning to decide"
        return None
