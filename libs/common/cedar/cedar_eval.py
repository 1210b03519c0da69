"""One Cedar decision over one tool call.

Allow, deny (naming the policy and its reason), approval (a person decides) or confirm (the agent's own
user decides).

The request Cedar sees: principal `Key::"<key name>"` (attributes `name`, `user`, `team`,
`customer`, "" when none; parents `User::`, `Team::`, `Customer::` so `principal in Team::"support"`
reads naturally), action `Action::"tools/call"`, resource `Tool::"<server>/<tool>"` (attributes
`server`, `tool`, `annotations`: the tool's MCP annotations, `destructiveHint` ...; parent
`Server::"<server>"`) and, for per-call policies, context `arguments` (the call's) and `time`
(`unix`, `hour`, `weekday` in UTC, Monday = 0), `initiator` ("app" for a call an MCP App made
through its host, else "agent") and `decimals`: the arguments again with every
number a Cedar `decimal`, so one comparison (`.greaterThan(decimal("100.0"))`) holds for 50, 20.50
and 500 alike (Cedar compares a Long only with a Long, a decimal only with a decimal).

A tool with aliases (its stable identities: an OpenAPI operation's operationId, the names it
carried before an approved rename; `CatalogTool.aliases`) is asked under each of its names, and
every forbid that matches any of them applies: a rename never takes a tool out of a policy
written against an earlier name.

Pure: the policy service decides calls with it, the admin API's `POST /policies/check` tries a text.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

import cedarpy
import orjson
from cedarpy import _internal as _native

from libs.common.cedar.cedar_policies import BASELINE_ID, CompiledPolicies, PolicyInfo
from libs.common.cedar.context_reads import WHOLE, Reads, pruned
from libs.common.contracts.messages_records import MAX_ALIASES

__all__ = [
    "ALLOWED",
    "Principal",
    "Verdict",
    "call_context",
    "condition_allows",
    "covering",
    "entities",
    "entities_json",
    "evaluate",
    "per_call_applicable",
    "tool_names",
]

_ACTION: Final = {"type": "Action", "id": "tools/call"}


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    user: str | None = None
    team: str | None = None
    customer: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    effect: Literal["allow", "deny", "approval", "confirm"]
    policy: str
    """The policy that decided (`grants` when none forbade)."""
    reason: str | None = None
    approvers: str | None = None
    timeout: float | None = None
    """How long an approval waits (`@timeout`); None: the service's default."""
    question: str | None = None
    """`confirm`: what the agent's user is asked (`@confirm`)."""


ALLOWED = Verdict("allow", BASELINE_ID)
_UNEVALUATED = "the policy could not be evaluated for this call (a value it reads is missing or of another type)"
"""Cedar's own error text is not passed on: it may quote an argument, which audit rows keep only when
content logging is on."""


def _uid(kind: str, value: str) -> dict[str, Any]:
    return {"__entity": {"type": kind, "id": value}}


def _names(tool: str, aliases: tuple[str, ...]) -> tuple[str, ...]:
    """The tool's own name first, then its other names, once each."""
    return tuple(dict.fromkeys((tool, *aliases[:MAX_ALIASES])))


def _entities(
    who: Principal, server: str, tool: str, annotations: dict[str, Any], aliases: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    owners = (("User", who.user), ("Team", who.team), ("Customer", who.customer))
    parents = [_uid(kind, value) for kind, value in owners if value]
    principal = {
        "uid": _uid("Key", who.name),
        "attrs": {"name": who.name, "user": who.user or "", "team": who.team or "", "customer": who.customer or ""},
        "parents": parents,
    }
    resources = [
        {
            "uid": _uid("Tool", f"{server}/{name}"),
            "attrs": {"server": server, "tool": name, "annotations": annotations},
            "parents": [_uid("Server", server)],
        }
        for name in _names(tool, aliases)
    ]
    return [principal, *resources, *({"uid": p, "attrs": {}, "parents": []} for p in parents)]


def _request(who: Principal, server: str, tool: str, context: dict[str, Any]) -> dict[str, Any]:
    return _request_of(who.name, server, tool, context)


def _request_of(principal: str, server: str, tool: str, context: dict[str, Any] | str) -> dict[str, Any]:
    # the entity ids as {"type", "id"}, not Cedar text (`Key::"..."`): Cedar parses no syntax for them,
    # ~13 µs less per decision, and no quoting to get right
    return {
        "principal": {"type": "Key", "id": principal},
        "action": _ACTION,
        "resource": {"type": "Tool", "id": f"{server}/{tool}"},
        "context": context,
    }


def call_context(
    arguments: dict[str, Any],
    now: float | None = None,
    initiator: str = "agent",
    decimals: bool = True,
    reads: Reads = WHOLE,
) -> dict[str, Any]:
    """The `context` a call is decided in, with only what the policies `reads` (`context_reads`).

    Cedar parses the context on every decision, in time that grows with it, and every number as a
    Cedar decimal is made for each call: a context of what is read keeps a call's decision cost
    whatever its arguments hold. Without `reads`, the whole context (`decimals` only when asked)."""
    if reads is not WHOLE:
        return _read_context(arguments, now, initiator, reads)
    context = {"initiator": initiator, "arguments": _cedar_value(arguments), "time": _time(now)}
    if decimals:
        context["decimals"] = _cedar_value(arguments, as_decimal=True)
    return context


def _read_context(
    arguments: dict[str, Any], now: float | None, initiator: str, reads: dict[str, Reads]
) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if "initiator" in reads:
        context["initiator"] = initiator
    if "arguments" in reads:
        context["arguments"] = _cedar_value(pruned(arguments, reads["arguments"]))
    if "decimals" in reads:
        context["decimals"] = _cedar_value(pruned(arguments, reads["decimals"]), as_decimal=True)
    if "time" in reads:
        context["time"] = _time(now)
    return context


def _time(now: float | None) -> dict[str, int]:
    at = time.time() if now is None else now
    moment = time.gmtime(at)
    return {"unix": int(at), "hour": moment.tm_hour, "weekday": moment.tm_wday}


_DECIMAL_STEP: Final = Decimal("0.0001")
_DECIMAL_MAX: Final = Decimal("922337203685477.5807")
"""Cedar's `decimal`: a 64-bit integer of ten-thousandths."""


def _cedar_value(value: Any, as_decimal: bool = False) -> Any:
    """JSON as Cedar takes it.

    A whole number as a Long (`150.0` is `150`), a fraction as a `decimal` (compare it with
    `.greaterThan(decimal("100.0"))`), a null as an absent attribute (`has` says so). `as_decimal`: every
    number a `decimal` (`context.decimals`). A number Cedar cannot hold exactly (a fifth digit after the
    point, past a decimal's range) is left out: a policy reading it cannot be evaluated and refuses,
    where rounding `100.00004` to `100.0` would pass a limit of 100."""
    if isinstance(value, dict):
        return {k: v for k, v in ((k, _cedar_value(v, as_decimal)) for k, v in value.items()) if v is not None}
    if isinstance(value, list):
        return [v for v in (_cedar_value(v, as_decimal) for v in value) if v is not None]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if not as_decimal and (-(2**63) <= value < 2**63) and (isinstance(value, int) or value.is_integer()):
        return int(value)
    return _decimal(value)  # past a Long: a decimal cannot hold it either, so it is left out


def _decimal(number: int | float) -> dict[str, Any] | None:
    """`number` as a Cedar decimal, or None when it holds no such exact value."""
    try:
        exact = Decimal(number) if isinstance(number, int) else Decimal(repr(number))
        held = exact.quantize(_DECIMAL_STEP)
    except InvalidOperation:  # infinite, not a number, or too many digits to quantize
        return None
    if held != exact or abs(held) > _DECIMAL_MAX:
        return None
    return {"__extn": {"fn": "decimal", "arg": f"{held:f}"}}


def entities(
    who: Principal, target: tuple[str, str, dict[str, Any]], aliases: tuple[str, ...] = ()
) -> cedarpy.Entities:
    """The entities of `who` calling `target` (under each of its names), parsed once (a pair's calls reuse them)."""
    return cedarpy.Entities.from_json_str(entities_json(who, target, aliases))


def entities_json(who: Principal, target: tuple[str, str, dict[str, Any]], aliases: tuple[str, ...] = ()) -> str:
    """`entities` as the Cedar JSON they are parsed from (what a grant's condition carries)."""
    return json.dumps(_entities(who, *target, aliases), separators=(",", ":"))


def tool_names(tool: str, aliases: tuple[str, ...]) -> tuple[str, ...]:
    """The names a tool is asked under: its own first, then its other names, once each."""
    return _names(tool, aliases)


def condition_allows(
    policies: cedarpy.PolicySet,
    parsed: cedarpy.Entities,
    principal: str,
    target: tuple[str, tuple[str, ...]],
    context: dict[str, Any],
) -> bool:
    """Whether per-call `policies` plainly allow `principal` calling the tool `target` in `context`.

    `target` is the server and the tool's names. Plainly: no forbid matched under any name and none
    failed to evaluate. Anything else (a refusal, an approval, a confirmation, an error) is policy's
    to decide and word."""
    try:
        given = orjson.dumps(context).decode()
    except TypeError:  # an integer past 64 bits, a lone surrogate: written as cedarpy writes them
        given = json.dumps(context)
    for result in _answers(policies, parsed, principal, target, given):
        if result["decision"] != "Allow" or result["diagnostics"]["errors"]:
            return False
    return True


def covering(
    scopes: cedarpy.PolicySet, parsed: cedarpy.Entities, principal: str, target: tuple[str, tuple[str, ...]]
) -> frozenset[str]:
    """The policies of `scopes` (`cedar_policies.scope_set`) whose scope covers the call under any of the tool's names.

    `principal` calling the tool `target`: the server and the tool's names."""
    found: set[str] = set()
    for result in _answers(scopes, parsed, principal, target, "{}"):
        found.update(result["diagnostics"]["reason"])
    return frozenset(found)


def _answers(
    policies: cedarpy.PolicySet,
    parsed: cedarpy.Entities,
    principal: str,
    target: tuple[str, tuple[str, ...]],
    given: str,
) -> list[dict[str, Any]]:
    """Cedar's answers for the call under each of the tool's names, in the context `given` (JSON).

    cedarpy's extension itself, every name in one batch: its Python wrapper would encode the context with
    `json`, decode each answer with `json` and build result objects (~20 µs a call)."""
    server, names = target
    requests = [_request_of(principal, server, name, given) for name in names]
    return [
        orjson.loads(answer) for answer in _native.is_authorized_batch(requests, policies, parsed._inner, None, False)
    ]


def evaluate(
    compiled: CompiledPolicies,
    policies: cedarpy.PolicySet,
    who: Principal,
    target: tuple[str, str, dict[str, Any]],
    context: dict[str, Any],
    parsed: cedarpy.Entities | None = None,
    aliases: tuple[str, ...] = (),
) -> Verdict:
    """`policies`, one of `compiled`'s sets, over `who` calling `target` under each of its names.

    `target` is (server, tool, annotations), named by its own name and each of its `aliases`;
    `parsed`: `entities(who, target, aliases)` when the caller holds them already."""
    server, tool, _ = target
    given = parsed if parsed is not None else _entities(who, *target, aliases)
    matched: list[PolicyInfo] = []
    for name in _names(tool, aliases):
        result = cedarpy.is_authorized(_request(who, server, name, context), policies, given)
        for error in result.diagnostics.errors:
            # a forbid whose condition cannot be evaluated (an argument missing or of another type)
            # refuses: skipping it, as Cedar does, would let an agent pass a limit by leaving it out
            failed = _failed_policy(error)
            if failed in compiled.policies:
                return Verdict("deny", failed, _UNEVALUATED)
        if result.decision == cedarpy.Decision.Allow:
            continue
        found = [compiled.policies[p] for p in result.diagnostics.reasons if p in compiled.policies]
        if not found:  # the baseline permit always applies: only a broken set gets here, so refuse
            return Verdict("deny", BASELINE_ID, "the policies could not be evaluated for this call")
        matched += [p for p in found if p not in matched]
    return _combined(matched) if matched else ALLOWED


def _combined(matched: list[PolicyInfo]) -> Verdict:
    """The verdict of the forbids that matched.

    A plain one refuses, else a person approves, else the agent's own user confirms."""
    plain = [p for p in matched if p.approval is None and p.confirm is None]
    if plain:
        return _deny(plain[0])
    # a person's approval outranks the user's own confirmation: asking the user too would add nothing
    approving = [p for p in matched if p.approval is not None]
    if not approving:
        first = matched[0]
        return Verdict("confirm", first.id, first.reason, question=first.confirm)
    timeouts = [p.timeout for p in approving if p.timeout is not None]
    first = approving[0]
    return Verdict("approval", first.id, first.reason, _approvers(approving), min(timeouts, default=None))


def per_call_applicable(
    compiled: CompiledPolicies, who: Principal, target: tuple[str, str, dict[str, Any]], aliases: tuple[str, ...] = ()
) -> frozenset[str]:
    """The per-call policies whose scope covers `who` calling `target` under any of its names.

    A scope is the principal, the action and the resource."""
    scopes = compiled.per_call_scopes
    if scopes is None:
        return frozenset()
    server, tool, _ = target
    return covering(scopes, entities(who, target, aliases), who.name, (server, _names(tool, aliases)))


def _failed_policy(error: str) -> str:
    """The policy id in one of Cedar's evaluation errors ("error while evaluating policy `x`: ...")."""
    _, tick, rest = error.partition("`")
    return rest.partition("`")[0] if tick else ""


def _deny(policy: PolicyInfo) -> Verdict:
    return Verdict("deny", policy.id, policy.reason)


def _approvers(matched: list[PolicyInfo]) -> str:
    return ", ".join(dict.fromkeys(p.approval or "" for p in matched))
