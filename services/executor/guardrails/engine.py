"""The guardrails engine: the rules in force, compiled once, applied to one payload at a time.

Pure and synchronous for the built-in detectors (`Guardrails.inspect`); `Guardrails.ainspect` adds
the rules that ask an external service (`webhook.WebhookClient`). The executor's hooks call it with
`where` = "arguments" before the upstream is called, "result" on the parsed result before it is
encoded, "definition" on each tool, prompt and template definition when the catalog is published.

One payload is serialized once (orjson: its size is what limits count), its distinct strings joined
and lower-cased once; each detector looks there for its anchors, and only the detectors that found
one walk the payload's strings. Findings become decisions (rule, detector, entity, action, where,
JSON pointer; never the matched text), and the strongest action wins: block > redact > warn > log.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Final, NamedTuple

import orjson

from libs.common.contracts.grants import GrantSet
from libs.common.contracts.guardrails import (
    ACTION_ORDER,
    Action,
    GuardrailDecision,
    GuardrailRule,
    GuardrailsSection,
    Where,
    effective_rules,
)
from libs.common.contracts.messages_base import Caller

from .base import Detector, Finding, Scan, Subject
from .chunks import extend_cut, pieces
from .decode import SEPARATOR, Budget, undisguised_strings
from .deep import deep_findings, grouped, inert_joins
from .deny import DenyDetector
from .injection import ExfilLinksDetector, HiddenUnicodeDetector, InjectionDetector
from .pii import PiiDetector
from .secrets import SecretsDetector
from .walk import Path, pointer, rewrite, strings
from .webhook import WebhookClient, webhook_request

__all__ = ["Guardrails", "Inspection", "Subject"]

_WHO: Final = operator.attrgetter("key_id", "key_name", "user_id", "team_id", "customer_id")
"""What of a caller decides which rules cover it (`_Rule.covers_caller`): one C call per payload."""
_SEEN: Final = 16_384
"""(where, server, name, caller) combinations whose applicable rules one engine remembers."""

_BUILTIN: Final[Mapping[str, Callable[[frozenset[str] | None], Detector]]] = {
    "secrets": SecretsDetector,
    "pii": PiiDetector,
    "injection": InjectionDetector,
    "hidden_unicode": HiddenUnicodeDetector,
    "exfil_links": ExfilLinksDetector,
}


_DECODE_FLOOR: Final = 65_536
"""Characters any payload may decode, however small (`decode.Budget`)."""
_DEEP: Final = frozenset({"secrets"})
"""Detectors that also read each string decoded and normalised, and neighbouring strings joined
(`deep`): a credential is one whether the agent reads it plain, encoded or in pieces."""


class Inspection(NamedTuple):
    """What the rules made of one payload; a named tuple like `Subject` (one per payload looked at)."""

    action: Action | None
    """The strongest action a rule took; None when no rule fired."""
    content: Any
    """The payload to pass on: a redacted copy when a rule redacted, else the payload itself."""
    decisions: tuple[GuardrailDecision, ...] = ()

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def warned(self) -> bool:
        return any(d.action == "warn" for d in self.decisions)

    def refusal(self) -> str | None:
        """The error a blocked call or listing gets: which rule, what kind of thing, where; None if not blocked."""
        if not self.blocked:
            return None
        first = next(d for d in self.decisions if d.action == "block")
        what = f"{first.detector}: {first.entity}" if first.entity else first.detector
        at = f" at {first.path}" if first.path else ""
        return f"blocked by guardrail rule {first.rule!r} ({what} in the {first.where}{at})"


@dataclass(slots=True)
class _Rule:
    spec: GuardrailRule
    tools: GrantSet
    detector: Detector | None
    callers: tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]

    def covers_caller(self, caller: Caller | None) -> bool:
        keys, users, teams, customers = self.callers
        if not (keys or users or teams or customers):
            return True
        if caller is None:
            return False
        return (
            caller.key_name in keys
            or caller.key_id in keys
            or caller.user_id in users
            or caller.team_id in teams
            or caller.customer_id in customers
        )


def _compile_rule(rule: GuardrailRule, groups: Mapping[str, Sequence[str]]) -> _Rule:
    patterns = [*rule.tools, *(p for g in rule.groups for p in groups.get(g, ()))]
    detector: Detector | None = None
    if rule.detector in _BUILTIN:
        detector = _BUILTIN[rule.detector](frozenset(rule.entities) if rule.entities is not None else None)
    elif rule.detector == "deny":
        detector = DenyDetector(rule.terms, rule.patterns)
    callers = (frozenset(rule.keys), frozenset(rule.users), frozenset(rule.teams), frozenset(rule.customers))
    return _Rule(rule, GrantSet.compile(patterns), detector, callers)


class _Plan(NamedTuple):
    """The rules that look at one (where, tool, caller), sorted once by what inspecting asks of them."""

    sizes: tuple[_Rule, ...]
    """`size` rules: the JSON's length against their limit."""
    detecting: tuple[_Rule, ...]
    """Rules with a built-in detector (`prepare`, then a scan of the strings)."""
    deep: tuple[_Rule, ...]
    """Of `detecting`, those that also read past disguises and joins (`_DEEP`)."""
    hooks: tuple[_Rule, ...]
    """Rules that ask a webhook (`ainspect`)."""


_NO_PLAN: Final = _Plan((), (), (), ())
NO_PLAN: Final = _NO_PLAN
"""The plan of a payload no rule looks at (`Guardrails.plan`)."""


@dataclass(slots=True)
class _Found:
    rule: _Rule
    findings: dict[Path, list[Finding]] = field(default_factory=dict)


class Guardrails:
    """The compiled rules of one configuration.

    Build a new one when the configuration or the tool groups change; `inspect` is safe to call from any
    number of tasks."""

    def __init__(self, rules: Sequence[_Rule], max_scan_bytes: int) -> None:
        self._rules = tuple(rules)
        self._max_scan_bytes = max_scan_bytes
        self._seen: dict[tuple[str, str, str, tuple[str | None, ...]], _Plan] = {}

    @classmethod
    def compile(cls, section: GuardrailsSection, groups: Mapping[str, Sequence[str]] | None = None) -> Guardrails:
        """The rules in force for `section` (built-in ones included, `effective_rules`).

        `groups` maps tool-group ids to their grant patterns (the config file's and the admin API's)."""
        groups = groups or {}
        return cls([_compile_rule(r, groups) for r in effective_rules(section)], section.max_scan_bytes)

    @property
    def rules(self) -> tuple[GuardrailRule, ...]:
        return tuple(r.spec for r in self._rules)

    def _applicable(self, where: Where, subject: Subject) -> _Plan:
        return self.plan(where, subject.server, subject.name, subject.caller)

    def plan(self, where: Where, server: str, name: str, caller: Caller | None) -> _Plan:
        """The rules that look at this payload, by what inspecting it asks of them; cached per (where, tool, caller).

        `NO_PLAN` when none does. The interceptor takes it once per payload and hands it to `inspect`:
        one lookup, and no `Subject` built, per payload."""
        who = _WHO(caller) if caller else ()
        cache_key = (where, server, name, who)
        found = self._seen.get(cache_key)
        if found is None:
            rules = tuple(
                r
                for r in self._rules
                if where in r.spec.where
                and r.tools.allows(server, name)
                and (where == "definition" or r.covers_caller(caller))
            )
            detecting = tuple(r for r in rules if r.spec.detector not in ("webhook", "size") and r.detector is not None)
            found = (
                _Plan(
                    tuple(r for r in rules if r.spec.detector == "size" and r.spec.max_bytes is not None),
                    detecting,
                    tuple(r for r in detecting if r.detector.name in _DEEP),  # type: ignore[union-attr]
                    tuple(r for r in rules if r.spec.detector == "webhook"),
                )
                if rules
                else _NO_PLAN
            )
            if len(self._seen) >= _SEEN:
                self._seen.clear()
            self._seen[cache_key] = found
        return found

    def inspect(
        self, where: Where, subject: Subject | None, payload: Any, blob: bytes | None = None, plan: _Plan | None = None
    ) -> Inspection:
        """The built-in rules (every detector but `webhook`) on one payload.

        `blob` is its `encoded` form and `plan` its rules (`plan`), when the caller has them already
        (then `subject` is not read)."""
        if plan is None:
            assert subject is not None, "inspect needs the subject or its plan"
            plan = self._applicable(where, subject)
        if not (plan.sizes or plan.detecting):
            return Inspection(None, payload)
        if blob is None:
            blob = encoded(payload)
        decisions: list[GuardrailDecision] = []
        for rule in plan.sizes:
            if len(blob) > rule.spec.max_bytes:  # type: ignore[operator]  # `_Plan.sizes` have one
                decisions.append(_decision(rule.spec, "too_large", where, ""))
        found: dict[int, _Found] = {}
        if plan.detecting:
            items = strings(payload)
            if len(blob) <= self._max_scan_bytes:
                _scan_piece(plan, items, len(blob), found)
            else:  # too large to scan whole: in pieces, never passed unscanned (`chunks`)
                for piece in pieces(items, self._max_scan_bytes):
                    _scan_piece(plan, piece.items, piece.size, found, piece.offsets, piece.cut)
        if not found and not decisions:
            return Inspection(None, payload)  # the usual case: no detector had anything to look for
        return _settle(where, payload, decisions, [f for f in found.values() if f.findings])

    async def ainspect(
        self, where: Where, subject: Subject, payload: Any, webhooks: WebhookClient, first: Inspection | None = None
    ) -> Inspection:
        """`inspect` (or `first`, its answer when the caller ran it already).

        Then the rules that ask an external service (in rule order, each seeing what the earlier ones
        left: a redacted payload, never the original)."""
        first = self.inspect(where, subject, payload) if first is None else first
        hooks = [r.spec for r in self._applicable(where, subject).hooks]
        if first.blocked or not hooks:
            return first
        content, decisions, action = first.content, list(first.decisions), first.action
        for spec in hooks:
            assert spec.webhook is not None
            verdict = await webhooks.check(spec.webhook, webhook_request(spec.name, where, subject, content))
            if verdict.failed is not None:
                fail_action: Action = "block" if spec.webhook.fail == "closed" else "log"
                decisions.append(_decision(spec, f"unavailable:{verdict.failed}", where, "", fail_action))
            elif verdict.match:
                taken: Action = spec.action
                if taken == "redact":
                    if verdict.has_content:
                        content = verdict.content
                    else:
                        taken = "block"  # asked to redact without saying into what: nothing safe to send
                decisions.append(_decision(spec, verdict.entity, where, "", taken))
            else:
                continue
            action = _stronger(action, decisions[-1].action)
            if action == "block":
                break
        return Inspection(action, content, tuple(decisions))


def encoded(payload: Any) -> bytes:
    """The JSON the rules read `payload` as (its size is what `size` rules and the scan limit count)."""
    try:
        return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # not JSON (a value the codec would refuse too): looked at as its text
        return orjson.dumps(str(payload))


def distinct_strings(items: Sequence[tuple[Path, str | None, str]]) -> str:
    """What detectors look for their anchors in: each distinct string of `items` once, the keys they are under too.

    Joined by `decode.SEPARATOR`. A result's JSON repeats its text (in `content` and in
    `structuredContent`) and holds keys no scan reads; each scan of this text costs about half of
    one of the JSON (2 KiB of text: 2.1 KB against 4.4). The values first, then the keys: what the
    scans ask of this text is which anchors and runs it holds, not where, and the separator keeps
    every string apart. Gathered in C (`map`, `dict.fromkeys`): no Python turn per string."""
    seen = dict.fromkeys(chain(map(_VALUE, items), map(_KEY, items)))
    seen.pop(None, None)  # a list's members are under no key
    return SEPARATOR.join(seen)


_VALUE: Final = operator.itemgetter(2)
_KEY: Final = operator.itemgetter(1)


def _scan_piece(
    plan: _Plan,
    items: Sequence[tuple[Path, str | None, str]],
    size: int,
    found: dict[int, _Found],
    offsets: Mapping[Path, int] | None = None,
    cut: Mapping[Path, tuple[int, str]] | None = None,
) -> None:
    """The rules' findings in `items`.

    (A whole payload's strings, or one piece of them, `size` characters of JSON or text), added to
    `found` (by rule) as spans of the whole strings: `offsets` says where a piece's text starts in its
    string, `cut` where a window ended inside its string (`chunks.extend_cut`)."""
    blob = distinct_strings(items)
    lower = blob.lower()
    scans: list[tuple[_Rule, Scan]] = []
    for rule in plan.detecting:
        scan = rule.detector.prepare(blob, lower)  # type: ignore[union-attr]  # `_Plan.detecting` have one
        if scan is not None:
            scans.append((rule, scan))
    hits: dict[int, dict[Path, list[Finding]]] = {}
    if scans:
        for path, key, value in items:
            for rule, scan in scans:
                spans = scan(value, key)
                if spans:
                    hits.setdefault(id(rule), {}).setdefault(path, []).extend(spans)
    if plan.deep:
        plain = undisguised_strings(blob)
        if not plain or len(items) > 1:  # else one string with nothing to undo or join: no deeper read
            _deeper(items, plan.deep, hits, blob, size, plain)
    if not hits:
        return  # the usual case: nothing found, nothing to merge
    for rule in plan.detecting:
        by_path = hits.get(id(rule))
        if not by_path:
            continue
        target = found.setdefault(id(rule), _Found(rule))
        for path, spans in by_path.items():
            shift = offsets.get(path, 0) if offsets else 0
            if shift or cut:
                spans = [extend_cut(f, shift, cut.get(path) if cut else None) for f in spans]
            have = target.findings.setdefault(path, [])
            seen = {(f.start, f.end) for f in have}
            for finding in spans:
                if finding.end > finding.start and (finding.start, finding.end) not in seen:
                    seen.add((finding.start, finding.end))
                    have.append(finding)


def _deeper(
    items: Sequence[tuple[Path, str | None, str]],
    rules: Sequence[_Rule],
    hits: dict[int, dict[Path, list[Finding]]],
    blob: str,
    size: int,
    plain: bool,
) -> None:
    """The deep rules' findings past encodings and splits (`deep.deep_findings`), added to what their plain scan found.

    (A span found twice counts once when they are merged). Nothing to read when no string has a
    disguise to take off (`undisguised_strings`, a few C-level scans of `blob`, the distinct strings)
    and none has a neighbour to be joined with (one text per content block), or the joined neighbours
    hold nothing a rule could find (`inert_joins`, the same scans of their joined text: a server's
    `name` and `version`)."""
    groups = grouped(items, size) if len(items) > 1 else []
    if plain:  # `plain`: `undisguised_strings(blob)`, as the caller found it
        if not groups:
            return  # the usual arguments: one string, nothing to undo, nothing to join
        # a loop, not a comprehension: no call of its own when (as usual) every rule's joins are inert
        kept: list[_Rule] = []
        for rule in rules:
            if not inert_joins(rule.detector, groups):  # type: ignore[arg-type]
                kept.append(rule)
        if not kept:
            return
        rules = kept
    # what a payload of `size` bytes can decode to, nested and re-read around joins, stays under
    # four times its size: a budget that large cannot be exhausted by decoy runs placed before the
    # real one, and the work stays linear in the payload (one piece of at most `max_scan_bytes`)
    budget = Budget(max_bytes=_DECODE_FLOOR + 4 * size)
    for rule in rules:
        assert rule.detector is not None
        extra = deep_findings(rule.detector, items, budget, groups=groups, plain=plain)
        for path, findings in extra.items():
            hits.setdefault(id(rule), {}).setdefault(path, []).extend(findings)


def _decision(
    rule: GuardrailRule, entity: str | None, where: Where, path: str, action: Action | None = None, count: int = 1
) -> GuardrailDecision:
    return GuardrailDecision(
        rule=rule.name,
        detector=rule.detector,
        entity=entity,
        action=action or rule.action,
        where=where,
        path=path,
        count=count,
    )


def _stronger(a: Action | None, b: Action) -> Action:
    return b if a is None or ACTION_ORDER[b] > ACTION_ORDER[a] else a


_MARK: Final = "[REDACTED:{}]"


def _redacted(text: str, findings: Sequence[Finding]) -> str:
    """`text` with every finding's span replaced by a marker naming its entity.

    Overlapping spans merge (the first one's entity names the merged span)."""
    spans = sorted((f.start, f.end, f.entity) for f in findings)
    out, at = [], 0
    merged: list[list[Any]] = []
    for start, end, entity in spans:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, entity])
    for start, end, entity in merged:
        out.append(text[at:start])
        out.append(_MARK.format(entity))
        at = end
    out.append(text[at:])
    return "".join(out)


def _settle(where: Where, payload: Any, decisions: list[GuardrailDecision], found: Sequence[_Found]) -> Inspection:
    if not decisions and not found:
        return Inspection(None, payload)  # the usual case: no rule fired
    action: Action | None = None
    for decision in decisions:
        action = _stronger(action, decision.action)
    to_redact: dict[Path, list[Finding]] = {}
    for item in found:
        spec = item.rule.spec
        for path, findings in item.findings.items():
            counts: dict[str, int] = {}
            for finding in findings:
                counts[finding.entity] = counts.get(finding.entity, 0) + 1
            where_at = pointer(path)
            decisions.extend(_decision(spec, entity, where, where_at, count=n) for entity, n in sorted(counts.items()))
            if spec.action == "redact":
                to_redact.setdefault(path, []).extend(findings)
        action = _stronger(action, spec.action)
    if action == "block" or not to_redact:
        return Inspection(action, payload, tuple(decisions))
    changes = {path: _redacted(_at(payload, path), findings) for path, findings in to_redact.items()}
    return Inspection(action, rewrite(payload, changes), tuple(decisions))


def _at(value: Any, path: Path) -> str:
    for part in path:
        value = value[part]
    assert isinstance(value, str)
    return value
