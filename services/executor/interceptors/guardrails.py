"""Guardrails on the executor's interceptor seam (docs/guardrails.md).

The engine's rules on every request's arguments before the upstream is called, on its result before the
agent sees it, and on every definition a server lists. Every protocol and transport, Code Mode's inner
calls and the LLM side's tool calls reach an upstream through the executor, so through here.

Each rule that fires becomes a decision on the request's audit row (`InterceptorDecision`: the
rule, the action, where, and `detector: entity at /json/pointer`, never the matched text) and a
count in `bastion_guardrail_decisions`; a block is a refusal naming the rule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from nats.aio.client import Client as NATS

from libs.common.contracts.guardrails import ACTION_ORDER, Action, GuardrailDecision, GuardrailsSection, Where
from libs.common.contracts.messages_base import Caller
from libs.common.runtime import metrics

from ..guardrails.base import Subject
from ..guardrails.engine import NO_PLAN, Guardrails, Inspection, encoded
from ..guardrails.webhook import WebhookClient
from .interface import InterceptedCall, InterceptedListing, InterceptedMessage, Interceptor, Refused

__all__ = ["GuardrailsInterceptor", "decision_detail"]

log = logging.getLogger(__name__)


def decision_detail(decision: GuardrailDecision) -> str:
    """What an audit row says of a rule that fired: the kind of thing and where, never the thing."""
    what = f"{decision.detector}: {decision.entity}" if decision.entity else decision.detector
    at = f" at {decision.path}" if decision.path else ""
    times = f" ({decision.count}x)" if decision.count > 1 else ""
    return f"{what}{at}{times}"[:512]


_OFF_LOOP = 1 << 20
"""Bytes of JSON from which a payload is inspected off the event loop (a MiB: ~75 ms of scanning)."""


def _unaltered(inspection: Inspection, instead: Action) -> Inspection:
    """Arguments as they came.

    A rule that would have redacted them refuses the call (`block`) or only warns, so the upstream never
    runs on a value nobody sent."""
    if inspection.action != "redact" and not any(d.action == "redact" for d in inspection.decisions):
        return inspection
    decisions = tuple(
        d.model_copy(update={"action": instead}) if d.action == "redact" else d for d in inspection.decisions
    )
    strongest = max((d.action for d in decisions), key=ACTION_ORDER.__getitem__)
    return Inspection(strongest, None, decisions)


class GuardrailsInterceptor(Interceptor):
    name: ClassVar[str] = "guardrails"

    def __init__(self, section: GuardrailsSection, groups: Mapping[str, Sequence[str]] | None = None) -> None:
        self.engine = Guardrails.compile(section, groups)
        self._on_arguments: Action = "block" if section.arguments == "refuse" else "warn"
        self._webhooks: WebhookClient | None = None
        self._asks = any(rule.detector == "webhook" for rule in self.engine.rules)

    async def start(self, nc: NATS) -> None:
        if self._asks and self._webhooks is None:
            self._webhooks = WebhookClient()

    async def stop(self) -> None:
        if self._webhooks is not None:
            await self._webhooks.aclose()
            self._webhooks = None

    async def _inspect(self, where: Where, server: str, name: str, caller: Caller | None, payload: Any) -> Inspection:
        plan = self.engine.plan(where, server, name, caller)  # cached per (where, server, tool, caller)
        if plan is NO_PLAN:
            return Inspection(None, payload)
        blob = encoded(payload)  # once: the engine reads the same bytes
        if len(blob) > _OFF_LOOP:
            # ~75 ms of CPU a MiB (docs/benchmarks.md): in a worker thread, so the executor's other
            # calls keep being served between its slices instead of waiting seconds for a 32 MiB scan
            first = await asyncio.to_thread(self.engine.inspect, where, None, payload, blob, plan)
        else:
            first = self.engine.inspect(where, None, payload, blob, plan)
        if self._webhooks is not None:  # the one path that needs a `Subject`: it names the tool to the hook
            subject = Subject(server, name, caller)
            return await self.engine.ainspect(where, subject, payload, self._webhooks, first)
        return first

    async def before_call(self, call: InterceptedCall) -> None:
        inspection = await self._inspect("arguments", call.server, call.name, call.caller, call.arguments)
        if inspection.action is None:
            return
        self._record(call, _unaltered(inspection, self._on_arguments), "arguments")

    async def after_result(self, call: InterceptedCall, result: dict[str, Any]) -> dict[str, Any]:
        inspection = await self._inspect("result", call.server, call.name, call.caller, result)
        if inspection.action is None:
            return result
        self._record(call, inspection, "result")
        content: dict[str, Any] = inspection.content
        return content

    async def at_message(self, message: InterceptedMessage) -> dict[str, Any]:
        # the rules on results hold for whatever else the upstream sends the agent: it is the same
        # party writing, read by the same reader
        inspection = await self._inspect("result", message.server, message.channel, message.caller, message.payload)
        if inspection.action is None:
            return message.payload
        for decision in inspection.decisions:
            metrics.GUARDRAIL_DECISIONS.labels(decision.rule, decision.action, "result").inc()
            log.info(
                "server %s: guardrails %s on a %s (rule %s: %s)",
                message.server,
                decision.action,
                message.channel,
                decision.rule,
                decision_detail(decision),
            )
        if inspection.blocked:
            raise Refused(inspection.refusal() or "withheld", rule=inspection.decisions[0].rule)
        content: dict[str, Any] = inspection.content
        return content

    def _record(self, call: InterceptedCall, inspection: Inspection, where: Where) -> None:
        """The decisions onto the request (its audit row); a block raised as the chain's refusal."""
        blocking = next((d for d in inspection.decisions if d.action == "block"), None) if inspection.blocked else None
        for decision in inspection.decisions:
            metrics.GUARDRAIL_DECISIONS.labels(decision.rule, decision.action, where).inc()
            if decision is not blocking:
                call.decide(self.name, decision.rule, decision.action, where, decision_detail(decision))
        if blocking is not None:
            message = inspection.refusal() or f"blocked by guardrail rule {blocking.rule!r}"
            raise Refused(message, rule=blocking.rule, detail=decision_detail(blocking))

    async def at_listing(self, listing: InterceptedListing) -> None:
        listing.tools = await self._definitions(listing, listing.tools, "", "name")
        listing.prompts = await self._definitions(listing, listing.prompts, "prompt:", "name")
        listing.resources = await self._definitions(listing, listing.resources, "resource:", "uri")
        listing.resource_templates = await self._definitions(
            listing, listing.resource_templates, "resource:", "uriTemplate"
        )

    async def _definitions(
        self, listing: InterceptedListing, definitions: list[dict[str, Any]], prefix: str, field: str
    ) -> list[dict[str, Any]]:
        kept: list[dict[str, Any]] = []
        for definition in definitions:
            name = f"{prefix}{definition.get(field, '')}"
            inspection = await self._inspect("definition", listing.server, name, None, definition)
            for decision in inspection.decisions:
                metrics.GUARDRAIL_DECISIONS.labels(decision.rule, decision.action, "definition").inc()
                action = "hide" if inspection.blocked else decision.action
                listing.decide(self.name, decision.rule, action, f"{name!r}: {decision_detail(decision)}"[:512])
            if inspection.blocked:
                continue
            kept.append(inspection.content if isinstance(inspection.content, dict) else definition)
        return kept
