"""Pinning on the executor's interceptor seam (docs/supply-chain.md).

Every listing decided against the pins in KV `bastion_pins`, every call checked against that decision.

- `at_listing`: `decide` on the server's tools, prompts and resource templates, in its `pinning`
  mode; what is quarantined is left out of the listing (neither published nor callable), what
  changed is written back (first-use pins, pending versions, removals), and newly seen drift is
  counted (`bastion_pin_drift`) and announced (`subjects.PIN_DRIFT`).
- `before_call`: one dict lookup; a call of a quarantined tool or prompt is refused with the
  approval it needs (a call routed before the catalog caught up, a Code Mode script, the LLM side).
  A user's own listing of a per-user server is held the same way: its refusals are kept per (server,
  user), bounded, and a call of that user's is refused with them too.

The records are watched (`BucketWatch`): an approval or rejection made anywhere (`bastion tools
approve`, a signed catalog) reaches every replica, which lists the server again so its catalog
follows. Writes are compare-and-set on the record's revision, so an executor never overwrites a
person's decision it has not seen yet (it skips its write and re-decides when the watch delivers it).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any, ClassVar, Final

from cachetools import LRUCache
from nats.aio.client import Client as NATS
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.common.bus.kvwatch import BucketWatch, decode_value
from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.pins import DefinitionKind, PinBaseline, PinDrift, PinRecord, baseline_key, pin_key
from libs.common.runtime import metrics

from ..pinning.decide import PinDecision, PinOutcome, decide
from ..pinning.pinned_apps import PinnedApps
from ..pinning.pinned_calls import QuarantinedTemplates, argument_problem, declared_arguments
from .interface import InterceptedCall, InterceptedListing, Interceptor, Refused

__all__ = ["PinningInterceptor", "call_name"]

log = logging.getLogger(__name__)

_CALLED_AS: Mapping[DefinitionKind, str] = {"tool": "", "prompt": "prompt:"}
"""How a call names a definition of that kind (`InterceptedCall.name`); templates are read by URI."""


_USER_REFUSALS: Final = 4096
"""(server, user) listings whose refusals are kept; the least recently used is dropped first."""

_HINT_EVERY = 5.0
"""Seconds between re-listings a refused call may ask for, per server (the schedule runs anyway)."""


def call_name(kind: DefinitionKind, name: str) -> str | None:
    """What `InterceptedCall.name` is for a call of this definition (None: not called by name)."""
    prefix = _CALLED_AS.get(kind)
    return None if prefix is None else prefix + name


class PinningInterceptor(Interceptor):
    name: ClassVar[str] = "pinning"

    def __init__(self, instance: str = "") -> None:
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self._nc: NATS | None = None
        self._kv: KeyValue | None = None
        self._watch: BucketWatch | None = None
        self._records: dict[str, dict[tuple[DefinitionKind, str], tuple[PinRecord, int]]] = {}
        """server -> (kind, name) -> its record and the KV revision it was read (or written) at."""
        self._by_key: dict[str, tuple[str, DefinitionKind, str]] = {}
        self._baselines: dict[str, PinBaseline] = {}
        self._baseline_keys: dict[str, str] = {}
        self._refusals: dict[str, dict[str, str]] = {}
        """server -> call name -> why it is refused: the only thing a call looks at."""
        self._user_refusals: LRUCache[tuple[str, str], dict[str, str]] = LRUCache(maxsize=_USER_REFUSALS)
        """(server, user) -> call name -> why that user's own listing refuses it (none refused: absent)."""
        self._templates: dict[str, QuarantinedTemplates] = {}
        """server -> its quarantined resource templates: a read of a URI under one is refused."""
        self._skills: dict[str, dict[str, str]] = {}
        """server -> quarantined skill (its SKILL.md URI) -> why its `skills/get` is refused."""
        self._apps: dict[str, PinnedApps] = {}
        """server -> its apps' pins: what a read of a `ui://` resource is held to."""
        self._hinted: dict[str, float] = {}
        """server -> when a refused call last made it list the server again (monotonic)."""
        self._pinned: dict[str, dict[str, tuple[Any, frozenset[str] | None]]] = {}
        """server -> tool -> the approved `inputSchema` its calls are held to (tools served as approved), with
        the argument names it declares (`declared_arguments`; None: any), decided once per listing."""
        self.outcomes: dict[str, PinOutcome] = {}
        """server -> the last listing's decisions (tests and `bastion tools pending` read the records)."""

    # ------------------------------------------------------------------ life

    async def start(self, nc: NATS) -> None:
        self._nc = nc
        self._kv = await kv_bucket(nc.jetstream(), subjects.KV_PINS)
        self._watch = BucketWatch(nc, subjects.KV_PINS, self._on_put, self._on_delete)
        await self._watch.start()  # every pin known before the first listing is decided

    async def stop(self) -> None:
        if self._watch is not None:
            await self._watch.stop()
            self._watch = None
        self._nc = self._kv = None

    # ------------------------------------------------------------------ the records, as KV has them

    def _on_put(self, key: str, value: bytes, revision: int) -> None:
        if key.startswith("def."):
            record = decode_value(PinRecord, value, f"pin record {key}")
            if record is not None:
                self._remember(key, record, revision)
        elif key.startswith("baseline."):
            baseline = decode_value(PinBaseline, value, f"pin baseline {key}")
            if baseline is not None:
                self._baselines[baseline.server] = baseline
                self._baseline_keys[key] = baseline.server

    def _on_delete(self, key: str) -> None:
        if key in self._by_key:
            server, kind, name = self._by_key.pop(key)
            if self._records.get(server, {}).pop((kind, name), None) is not None:
                self._decision_changed(server)
        elif key in self._baseline_keys:
            self._baselines.pop(self._baseline_keys.pop(key), None)

    def _remember(self, key: str, record: PinRecord, revision: int) -> None:
        held = self._records.setdefault(record.server, {})
        old = held.get((record.kind, record.name))
        if old is not None and old[1] > revision:
            return  # a re-created watch delivering an older value than one we wrote since
        held[(record.kind, record.name)] = (record, revision)
        self._by_key[key] = (record.server, record.kind, record.name)
        if old is None or _verdict_inputs(old[0]) != _verdict_inputs(record):
            self._decision_changed(record.server)

    def _decision_changed(self, server: str) -> None:
        """What decides a served definition changed (an approval, a rejection, a catalog import).

        List the server again, if this executor serves it."""
        if server in self.outcomes:
            log.info("pins of server %s changed; listing it again", server)
            self.relist(server)

    # ------------------------------------------------------------------ hooks

    async def at_listing(self, listing: InterceptedListing) -> None:
        server, mode = listing.server, listing.config.pinning
        outcome = self._decide(listing)
        written = await self._write(outcome)
        apps = PinnedApps.of(outcome, mode)
        refusals, templates, skills = _apply(listing, outcome, apps, self.name)
        for decision in outcome.drift:
            if (decision.kind, decision.name) in written:  # newly seen: reported once, not on every listing
                await self._report(decision, mode)
        if listing.user is not None:  # the server's calls stay held to its shared listing; the user's to theirs too
            if refusals:
                self._user_refusals[(server, listing.user)] = refusals
            else:
                self._user_refusals.pop((server, listing.user), None)
            return
        self._apps[server] = apps
        self._refusals[server] = refusals
        self._templates[server] = QuarantinedTemplates.of(templates)
        self._skills[server] = skills
        self._pinned[server] = _approved_schemas(outcome) if mode != "warn" else {}
        self.outcomes[server] = outcome
        metrics.PIN_QUARANTINED.labels(server).set(sum(1 for d in outcome.decisions if d.verdict == "quarantined"))

    def _decide(self, listing: InterceptedListing) -> PinOutcome:
        """The pins' decisions on `listing`.

        One user's listing of a per-user server is held to the same records, but it never pins on first
        use (the shared listing set the baseline). No listing of a per-user server marks a definition
        "removed": each account is listed its own, and another may list what this one lacks. What only
        one user is listed and no pin covers is pending like any new definition, for an owner to approve."""
        server, mode = listing.server, listing.config.pinning
        held = self._records.get(server, {})
        baseline = self._baselines.get(server)
        if listing.user is not None and baseline is None:
            baseline = PinBaseline(server=server, established_at=0.0)
        outcome = decide(
            server,
            mode,
            baseline,
            [record for record, _ in held.values()],
            {
                "tool": listing.tools,
                "prompt": listing.prompts,
                "resource_template": listing.resource_templates,
                "app": listing.apps,
                "skill": listing.skills,
            },
            carrying=listing.credentials,
        )
        if not listing.config.per_user:
            return outcome
        # no listing of a per-user server is all it offers (each account is listed its own): none removes
        absent = {(d.kind, d.name) for d in outcome.decisions if d.verdict == "absent"}
        return replace(
            outcome,
            decisions=tuple(d for d in outcome.decisions if d.verdict != "absent"),
            writes=tuple(w for w in outcome.writes if (w.kind, w.name) not in absent),
        )

    async def before_call(self, call: InterceptedCall) -> None:
        refusals = self._refusals.get(call.server)
        message = refusals.get(call.name) if refusals else None
        if message is None and self._user_refusals and (user := call.caller.user_id) is not None:
            message = self._user_refusals.get((call.server, user), {}).get(call.name)
        if message is not None:
            raise Refused(message, rule="quarantined", detail=call.name)
        if call.method == "tools/call":
            pinned = self._pinned.get(call.server)
            held = pinned.get(call.name) if pinned else None
            # one set comparison, in C; the wording of a refusal only when there is one
            if held is not None and held[1] is not None and not held[1].issuperset(call.arguments):
                problem = argument_problem(call.name, held[0], call.arguments)
                if problem is not None:
                    self._look_again(call.server)
                    # an argument problem, answered as one (a tool error the agent can correct)
                    kind = ErrorKind.INVALID_ARGUMENTS
                    raise Refused(problem, rule="unpinned_arguments", detail=call.name, kind=kind)
        elif call.method in ("resources/read", "resources/subscribe"):
            templates = self._templates.get(call.server)
            uri = call.arguments.get("uri")
            apps = self._apps.get(call.server)
            if apps is not None and (message := apps.refusal(uri)) is not None:
                raise Refused(message, rule="quarantined", detail="app")
            if templates is not None and templates.templates and isinstance(uri, str):
                message = templates.refusal(uri)
                if message is not None:
                    raise Refused(message, rule="quarantined", detail="resource template")
        elif call.method == "skills/get":
            uri = call.arguments.get("uri")
            if isinstance(uri, str) and (message := self._skills.get(call.server, {}).get(uri)) is not None:
                raise Refused(message, rule="quarantined", detail="skill")

    after_result_methods: ClassVar[frozenset[str] | None] = frozenset({"resources/read"})

    async def after_result(self, call: InterceptedCall, result: dict[str, Any]) -> dict[str, Any]:
        """A read of an app is held to the contents its pin was decided on (`PinnedApps.changed`)."""
        if call.method == "resources/read" and (apps := self._apps.get(call.server)) is not None:
            message = apps.changed(call.arguments.get("uri"), result)
            if message is not None:
                self._look_again(call.server)
                raise Refused(message, rule="app_changed", detail="app")
        return result

    def _look_again(self, server: str) -> None:
        """Only a changed definition would want a call the approved one refuses.

        List the server now, but at most once per `_HINT_EVERY` so an agent's refused calls cannot keep
        it listing."""
        now = time.monotonic()
        if now - self._hinted.get(server, -math.inf) >= _HINT_EVERY:
            self._hinted[server] = now
            self.relist(server)

    # ------------------------------------------------------------------ writes and reports

    async def _write(self, outcome: PinOutcome) -> set[tuple[DefinitionKind, str]]:
        """Put the outcome's records and the baseline; the (kind, name) of the records written.

        Records are compare-and-set: a record someone else changed since we read it is left to them,
        and decided again when the watch delivers it. The baseline is create-only, so racing replicas
        agree. A failure to write fails the listing: nothing undecided is published."""
        assert self._kv is not None
        kv = self._kv
        held = self._records.setdefault(outcome.server, {})
        written: set[tuple[DefinitionKind, str]] = set()
        for record in outcome.writes:
            key = pin_key(record.server, record.kind, record.name)
            previous = held.get((record.kind, record.name))
            value = record.model_dump_json().encode()
            try:
                revision = await kv.update(key, value, last=previous[1]) if previous else await kv.create(key, value)
            except KeyWrongLastSequenceError:
                log.info("pin %s/%s changed meanwhile; deciding it again when it arrives", record.server, record.name)
                continue
            except Exception as exc:
                if previous is None and "wrong last sequence" in str(exc).lower():
                    continue  # nats-py reports a create that lost a race this way
                raise
            held[(record.kind, record.name)] = (record, revision)
            self._by_key[key] = (record.server, record.kind, record.name)
            written.add((record.kind, record.name))
        if outcome.baseline is not None:
            key = baseline_key(outcome.server)
            try:
                await kv.create(key, outcome.baseline.model_dump_json().encode())
            except KeyWrongLastSequenceError:
                pass  # another replica established it first: same meaning
            except Exception as exc:
                if "wrong last sequence" not in str(exc).lower():
                    raise
            self._baselines.setdefault(outcome.server, outcome.baseline)
            self._baseline_keys[key] = outcome.server
        return written

    async def _report(self, decision: PinDecision, mode: Any) -> None:
        verdict = "absent" if decision.verdict == "absent" else decision.verdict
        metrics.PIN_DRIFT.labels(decision.server, decision.kind, decision.reason, verdict).inc()
        log.warning(
            "pinning: %s %s/%s %s (%s); see `bastion tools pending`",
            decision.kind.replace("_", " "),
            decision.server,
            decision.name,
            verdict,
            decision.reason,
        )
        if self._nc is None or verdict not in ("quarantined", "flagged", "absent"):
            return
        # the event is the decision as the bus says it; PinDrift ignores the aliases (the pin record keeps them)
        event = PinDrift(**asdict(decision), mode=mode, instance=self.instance)
        try:
            await self._nc.publish(subjects.PIN_DRIFT, event.model_dump_json().encode())
        except Exception as exc:  # the record in KV is what counts; the event is a courtesy
            log.warning("pinning: cannot publish a drift event (%s)", exc)


def _apply(
    listing: InterceptedListing, outcome: PinOutcome, apps: PinnedApps, interceptor: str
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Leave in `listing` what `outcome` serves; the refusals of quarantined calls, templates and skills."""
    listing.tools = _served(outcome, "tool")
    listing.prompts = _served(outcome, "prompt")
    listing.resource_templates = _served(outcome, "resource_template")
    listing.apps = _served(outcome, "app")
    listing.skills = _served(outcome, "skill")
    if apps.refusals:  # a quarantined app is not listed (its reads are refused in before_call)
        listing.resources = [r for r in listing.resources if r.get("uri") not in apps.refusals]
    _add_aliases(listing.aliases, outcome)
    refusals: dict[str, str] = {}
    templates: dict[str, str] = {}
    skills: dict[str, str] = {}
    for decision in outcome.decisions:
        if decision.verdict == "quarantined":
            called = call_name(decision.kind, decision.name)
            message = outcome.refusal(decision.kind, decision.name)
            if called is not None and message is not None:
                refusals[called] = message
            elif decision.kind == "resource_template" and message is not None:
                templates[decision.name] = message
            elif decision.kind == "skill" and message is not None:
                skills[decision.name] = message
            withheld = {"tool": listing.withheld, "prompt": listing.withheld_prompts}
            withheld["resource_template"] = listing.withheld_templates
            if decision.kind in withheld:
                withheld[decision.kind].append(decision.name)
            listing.decide(interceptor, decision.reason, "hide", _detail(decision))
        elif decision.verdict == "flagged":
            listing.decide(interceptor, decision.reason, "warn", _detail(decision))
    return refusals, templates, skills


def _approved_schemas(outcome: PinOutcome) -> dict[str, tuple[Any, frozenset[str] | None]]:
    """Tool -> the `inputSchema` of each tool served because it hashes as its approved version.

    (So the listed copy is the approved one, byte for byte), and the argument names it declares."""
    schemas: dict[str, tuple[Any, frozenset[str] | None]] = {}
    for definition in outcome.served("tool"):
        name = definition.get("name")
        decision = outcome.decision("tool", name) if isinstance(name, str) else None
        if decision is not None and decision.verdict == "served" and decision.sha256 == decision.approved_sha256:
            schema = definition.get("inputSchema")
            schemas[decision.name] = (schema, declared_arguments(schema))
    return schemas


def _verdict_inputs(record: PinRecord) -> tuple[str | None, frozenset[str]]:
    """What in a record can change a definition's verdict without the server changing."""
    return (record.approved.sha256 if record.approved is not None else None, frozenset(record.rejected))


def _served(outcome: PinOutcome, kind: DefinitionKind) -> list[dict[str, Any]]:
    return [d if isinstance(d, dict) else dict(d) for d in outcome.served(kind)]


def _detail(decision: PinDecision) -> str:
    text = f"{decision.kind.replace('_', ' ')} {decision.name!r}"
    if decision.renamed_from:
        text += f" (renamed from {decision.renamed_from!r})"
    return text[:512]


def _add_aliases(aliases: dict[str, tuple[str, ...]], outcome: PinOutcome) -> None:
    """The names served tools carried before a rename join their other stable names (Cedar's)."""
    for decision in outcome.decisions:
        if decision.kind == "tool" and decision.served and decision.aliases:
            held = aliases.get(decision.name, ())
            aliases[decision.name] = tuple(dict.fromkeys((*held, *decision.aliases)))
