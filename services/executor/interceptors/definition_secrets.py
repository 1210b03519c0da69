"""Definitions that carry a credential are held back (docs/guardrails.md, "Credentials in definitions").

Runs at listing, before pinning: every tool, prompt, resource template and resource a server lists
passes the `secrets` guardrail (`guardrails.definitions.DefinitionScreen`, once per definition
version). One that carries a credential is logged with the server, the definition and the field
(never the secret), and:

- with pinning on, tools, prompts and templates are handed to pinning (`listing.credentials`), which
  quarantines them like drift, whatever the server's mode, until an owner approves that exact
  version (`bastion tools approve`); the pending version it records is the redacted copy;
- resources (not pinned), and everything when pinning is off, are withheld while the server lists
  them so; a call of such a tool or prompt by name is refused naming why.
"""

from __future__ import annotations

from typing import Any, ClassVar

from libs.common.contracts.guardrails import GuardrailsSection
from libs.common.contracts.pins import DefinitionKind, definition_name

from ..guardrails.definitions import RULE, DefinitionScreen
from .interface import Action, InterceptedCall, InterceptedListing, Interceptor, Refused

__all__ = ["DefinitionSecretsInterceptor", "WithholdingDefinitionSecrets"]

_CALLED_AS = {"tool": "", "prompt": "prompt:"}


class DefinitionSecretsInterceptor(Interceptor):
    name: ClassVar[str] = "definition_secrets"

    def __init__(self, section: GuardrailsSection, pinned: bool) -> None:
        self.screen = DefinitionScreen(section)
        self._pinned = pinned
        self._refusals: dict[str, dict[str, str]] = {}
        """server -> call name -> why it is refused (what this interceptor withheld itself)."""

    async def at_listing(self, listing: InterceptedListing) -> None:
        refusals: dict[str, str] = {}
        listing.tools = self._screened(listing, "tool", listing.tools, refusals)
        listing.prompts = self._screened(listing, "prompt", listing.prompts, refusals)
        listing.resource_templates = self._screened(listing, "resource_template", listing.resource_templates, refusals)
        listing.resources = self._screened(listing, "resource", listing.resources, refusals)
        self._refusals[listing.server] = refusals

    def _screened(
        self, listing: InterceptedListing, kind: str, definitions: list[dict[str, Any]], refusals: dict[str, str]
    ) -> list[dict[str, Any]]:
        kept: list[dict[str, Any]] = []
        for definition in definitions:
            name = _name(kind, definition)
            carried = self.screen.check(listing.server, name, definition)
            if carried is None:
                kept.append(definition)
                continue
            label = kind.replace("_", " ")
            pinned = self._pinned and kind != "resource"
            for where in carried.where:
                # the pinned route is decided (and logged "hide") by pinning: an approved version is served
                action: Action = "warn" if pinned else "hide"
                listing.decide(self.name, RULE, action, f"{label} {name!r} carries a credential ({where})"[:512])
            if pinned:
                listing.credentials[(kind, name)] = carried.redacted
                kept.append(definition)
                continue
            called = _CALLED_AS.get(kind)
            if called is not None:
                (listing.withheld if kind == "tool" else listing.withheld_prompts).append(name)
                refusals[called + name] = (
                    f"{label} {listing.server + '/' + name!r} is withheld: its definition carries a credential"
                    f" ({', '.join(carried.where)[:300]}); the server must stop listing it"
                )
        return kept


class WithholdingDefinitionSecrets(DefinitionSecretsInterceptor):
    """With pinning off.

    What is withheld is also refused when called by name (with pinning on, pinning refuses the
    quarantined ones, and the calls' path is spared this hook)."""

    def __init__(self, section: GuardrailsSection) -> None:
        super().__init__(section, pinned=False)

    async def before_call(self, call: InterceptedCall) -> None:
        refusals = self._refusals.get(call.server)
        if refusals:
            message = refusals.get(call.name)
            if message is not None:
                raise Refused(message, rule=RULE, detail=call.name)


def _name(kind: str, definition: dict[str, Any]) -> str:
    if kind == "resource":
        uri = definition.get("uri")
        return uri if isinstance(uri, str) else ""
    pinned_kind: DefinitionKind = kind  # type: ignore[assignment]  # tool, prompt or resource_template
    return definition_name(pinned_kind, definition)
