"""A grant's per-call policies decided in Python where they compare a call's arguments with constants.

Exactly as Cedar decides them, or not at all.

Cedar decides a call's per-call policies (`cedar_eval.condition_allows`) in ~23 µs on a warm core, and
in 80-110 µs inside a busy gateway, where its code and data have left the CPU's caches between calls:
that was all of what an argument-conditioned policy cost a call (`bench/policy_cost.py`). Most such
conditions compare an argument with a constant (`context.arguments.amount > 1000`,
`context.arguments.env == "prod"`, `context.arguments.path like "/etc/*"`,
`context.decimals.amount.greaterThan(decimal("100.0"))`), joined by `&&`, `||` and `!`, in `when`
and `unless` clauses. `plan` compiles a grant's policies once into Python functions of the call's
context, and `ConditionPlan.allows` answers what `condition_allows` would: True when no forbid
applies, False when one does.

It answers None, and the call goes to Cedar as before, wherever Cedar could answer otherwise than a
plain reading of the subset: a policy with any other operator, variable or literal (compiled to None:
every call of that grant asks Cedar); an operand of another type than the operator takes, or a
missing attribute (a Cedar error, which `condition_allows` reads as "not plainly allowed"); a context
Cedar would not read as plain JSON (an `__entity` escape, an `__extn` one other than the decimals
`call_context` writes, a lone surrogate, nesting past its parser's limit). Which forbids apply to
which of the tool's names (their scopes: principal, action, resource, with the entities' hierarchy)
is asked of Cedar itself, once per plan.

`tests/unit/test_condition_plans.py` holds the plans to Cedar's own decisions on generated policies
and contexts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import ge, gt, le, lt
from typing import Any, Final

import cedarpy
import orjson

from libs.common.cedar.cedar_eval import covering
from libs.common.cedar.cedar_policies import scope_set

__all__ = ["ConditionPlan", "plan"]

Value = Any
"""A context value as Cedar reads it from JSON: a record (dict), a set (list), a string, a Long, a bool."""
Expression = Callable[[dict[str, Any]], Value]
"""A compiled expression: its value in a context, or `_Unknown` raised where Cedar might differ."""

_MAX_BRACKETS: Final = 64
"""Contexts with more `{` and `[` than this (so perhaps nested past Cedar's JSON parser's 128 levels) go to Cedar."""
_COMPARISONS: Final[dict[str, Callable[[int, int], bool]]] = {"<": lt, "<=": le, ">": gt, ">=": ge}


_DECIMAL: Final = re.compile(r"(-?)(0|[1-9][0-9]{0,13})\.([0-9]{1,4})")
"""A Cedar decimal's text, as `call_context` writes them (`150.0000`), whole part short of the range's end."""
_DECIMAL_ESCAPE: Final = re.compile(rb'\{"__extn":\{"fn":"decimal","arg":"([^"\\]*)"\}\}')
"""A decimal in a context's JSON, as orjson writes `call_context`'s `{"__extn": {"fn": "decimal", "arg": ...}}`."""
_ESCAPES: Final = frozenset(("__entity", "__extn", "__expr"))
"""Keys Cedar reads a JSON object by as something else than a record."""


@dataclass(frozen=True, slots=True)
class _Decimal:
    """A Cedar decimal: its value times 10,000, as Cedar holds it (so `1.5 == 1.5000`)."""

    scaled: int


def _decimal(text: str) -> _Decimal | None:
    """`text` as Cedar's `decimal(...)` reads it, or None where the subset leaves it to Cedar."""
    found = _DECIMAL.fullmatch(text)
    if found is None:
        return None
    sign, whole, fraction = found.groups()
    scaled = int(whole) * 10_000 + int(fraction.ljust(4, "0"))
    return _Decimal(-scaled if sign else scaled)


def _plain_escapes(given: bytes) -> bool:
    """Whether every escape in a context's JSON is a decimal the subset reads as Cedar does."""
    found = _DECIMAL_ESCAPE.findall(given)
    return len(found) == given.count(b'"__') and all(_decimal(arg.decode()) is not None for arg in found)


class _Unknown(Exception):
    """Cedar might answer otherwise here (an error, a type the subset leaves to it): ask Cedar."""


class _Unsupported(Exception):
    """A policy outside the subset: its grant's calls are decided by Cedar."""


@dataclass(frozen=True, slots=True)
class _Forbid:
    clauses: tuple[tuple[bool, Expression], ...]
    """(is `unless`, body) in the policy's order: Cedar reads them as one conjunction, left to right."""

    def applies(self, context: dict[str, Any]) -> bool:
        for unless, body in self.clauses:
            value = body(context)
            if type(value) is not bool:
                raise _Unknown
            if value is unless:  # a `when` that is false, an `unless` that is true: short-circuits
                return False
        return True


@dataclass(frozen=True, slots=True)
class ConditionPlan:
    """The forbids whose scope covers one of the tool's names, compiled."""

    forbids: tuple[_Forbid, ...]

    def allows(self, context: dict[str, Any]) -> bool | None:
        """`condition_allows` for this call's `context` (as `call_context` made it), or None: ask Cedar."""
        try:
            given = orjson.dumps(context)
        except TypeError:  # a lone surrogate, an integer past 64 bits: as Cedar is given them, Cedar decides
            return None
        if b'"__' in given and not _plain_escapes(given):
            return None  # a key Cedar may read as an entity or another extension
        if given.count(b"{") + given.count(b"[") > _MAX_BRACKETS:
            return None  # perhaps nested past Cedar's parser
        try:
            for forbid in self.forbids:
                if forbid.applies(context):
                    return False
        except _Unknown:
            return None
        return True


def plan(
    policies_json: str, entities: cedarpy.Entities, principal: str, target: tuple[str, tuple[str, ...]]
) -> ConditionPlan | None:
    """The Python plan of a grant's per-call policies (`PolicyCondition.policies`), or None: Cedar decides every call.

    `target` is the server and the tool's names, as `condition_allows` takes them."""
    try:
        parsed = orjson.loads(policies_json)
        if parsed.get("templates") or parsed.get("templateLinks"):
            return None
        forbids, permitted = {}, False
        for policy_id, policy in parsed["staticPolicies"].items():
            if policy["effect"] == "forbid":
                forbids[policy_id] = policy
            elif policy["conditions"]:
                return None  # policy's sets hold forbids and the baseline permit, which every call meets
            else:
                permitted = permitted or all(
                    policy[part] == {"op": "All"} for part in ("principal", "action", "resource")
                )
        covered = covering(scope_set(forbids), entities, principal, target) if forbids else frozenset()
        compiled = [_Forbid(tuple(_clause(clause) for clause in forbids[i]["conditions"])) for i in sorted(covered)]
    except (_Unsupported, KeyError, TypeError, ValueError, AttributeError):
        return None
    return ConditionPlan(tuple(compiled)) if permitted else None


def _clause(clause: dict[str, Any]) -> tuple[bool, Expression]:
    kind = clause["kind"]
    if kind not in ("when", "unless"):
        raise _Unsupported(kind)
    return kind == "unless", _expression(clause["body"])


def _expression(node: Any) -> Expression:
    if not isinstance(node, dict) or len(node) != 1:
        raise _Unsupported(node)
    ((kind, body),) = node.items()
    compile_kind = _KINDS.get(kind)
    if compile_kind is None:
        raise _Unsupported(kind)
    return compile_kind(body)


def _literal(value: Any) -> Expression:
    if type(value) not in (str, int, bool) or (type(value) is int and not -(2**63) <= value < 2**63):
        raise _Unsupported(value)  # records, sets, entity references: Cedar's
    return lambda _context: value


def _variable(name: Any) -> Expression:
    if name != "context":
        raise _Unsupported(name)  # principal, resource, action: their attributes are Cedar's
    return lambda context: context


def _record_and_name(body: dict[str, Any]) -> tuple[Expression, str]:
    """The record and the attribute's name of `.` and `has` (Cedar names attributes literally)."""
    attr = body["attr"]
    if not isinstance(attr, str):
        raise _Unsupported(attr)
    return _expression(body["left"]), attr


def _attribute(body: dict[str, Any]) -> Expression:
    left, attr = _record_and_name(body)

    def get(context: dict[str, Any]) -> Value:
        record = left(context)
        if type(record) is not dict or attr not in record:
            raise _Unknown  # not a record, or no such attribute: an error in Cedar
        value = record[attr]
        if type(value) is dict and not _ESCAPES.isdisjoint(value):
            return _escaped(value)
        return value

    return get


def _escaped(value: dict[str, Any]) -> _Decimal:
    """A context value Cedar reads as an extension value: a decimal the subset holds, or `_Unknown`."""
    extension = value.get("__extn")
    if len(value) == 1 and type(extension) is dict and extension.get("fn") == "decimal" and len(extension) == 2:
        arg = extension.get("arg")
        if type(arg) is str and (decimal := _decimal(arg)) is not None:
            return decimal
    raise _Unknown


def _has(body: dict[str, Any]) -> Expression:
    left, attr = _record_and_name(body)

    def has(context: dict[str, Any]) -> Value:
        record = left(context)
        if type(record) is not dict:
            raise _Unknown
        return attr in record

    return has


def _primitive(value: Value) -> bool:
    return type(value) in (str, int, bool, _Decimal)


def _equality(negated: bool) -> Callable[[dict[str, Any]], Expression]:
    def compile_equality(body: dict[str, Any]) -> Expression:
        left, right = _expression(body["left"]), _expression(body["right"])

        def equal(context: dict[str, Any]) -> Value:
            a, b = left(context), right(context)
            if not (_primitive(a) and _primitive(b)):
                raise _Unknown  # records and sets compare by Cedar's rules
            return (type(a) is type(b) and a == b) is not negated  # `true == 1` is false in Cedar

        return equal

    return compile_equality


def _comparison(operator: str) -> Callable[[dict[str, Any]], Expression]:
    compare = _COMPARISONS[operator]

    def compile_comparison(body: dict[str, Any]) -> Expression:
        left, right = _expression(body["left"]), _expression(body["right"])

        def compared(context: dict[str, Any]) -> Value:
            a, b = left(context), right(context)
            if type(a) is not int or type(b) is not int:
                raise _Unknown  # Longs only here; anything else is an error or Cedar's own overload
            return compare(a, b)

        return compared

    return compile_comparison


def _decimal_literal(args: Any) -> Expression:
    """`decimal("100.0")`: a literal only (a computed text is Cedar's)."""
    if not isinstance(args, list) or len(args) != 1 or not isinstance(text := args[0].get("Value"), str):
        raise _Unsupported(args)
    value = _decimal(text)
    if value is None:
        raise _Unsupported(text)
    return lambda _context: value


def _decimal_comparison(operator: str) -> Callable[[Any], Expression]:
    compare = _COMPARISONS[operator]

    def compile_comparison(args: Any) -> Expression:
        if not isinstance(args, list) or len(args) != 2:
            raise _Unsupported(args)
        left, right = _expression(args[0]), _expression(args[1])

        def compared(context: dict[str, Any]) -> Value:
            a, b = left(context), right(context)
            if type(a) is not _Decimal or type(b) is not _Decimal:
                raise _Unknown  # a decimal method on anything else is an error
            return compare(a.scaled, b.scaled)

        return compared

    return compile_comparison


def _junction(conjunction: bool) -> Callable[[dict[str, Any]], Expression]:
    def compile_junction(body: dict[str, Any]) -> Expression:
        left, right = _expression(body["left"]), _expression(body["right"])

        def joined(context: dict[str, Any]) -> Value:
            first = left(context)
            if type(first) is not bool:
                raise _Unknown
            if first is not conjunction:  # `false && ...`, `true || ...`: the right side is not evaluated
                return first
            second = right(context)
            if type(second) is not bool:
                raise _Unknown
            return second

        return joined

    return compile_junction


def _not(body: dict[str, Any]) -> Expression:
    arg = _expression(body["arg"])

    def negated(context: dict[str, Any]) -> Value:
        value = arg(context)
        if type(value) is not bool:
            raise _Unknown
        return not value

    return negated


def _like(body: dict[str, Any]) -> Expression:
    left = _expression(body["left"])
    pattern = re.compile(_pattern(body["pattern"]), re.DOTALL)

    def like(context: dict[str, Any]) -> Value:
        text = left(context)
        if type(text) is not str:
            raise _Unknown
        return pattern.fullmatch(text) is not None

    return like


def _pattern(components: Sequence[Any]) -> str:
    """A `like` pattern's components (literals, and `*` as "Wildcard") as a regular expression."""
    parts = []
    for component in components:
        if component == "Wildcard":
            parts.append(".*")
        elif (
            isinstance(component, dict) and isinstance(literal := component.get("Literal"), str) and len(component) == 1
        ):
            parts.append(re.escape(literal))
        else:
            raise _Unsupported(component)
    return "".join(parts)


_KINDS: Final[dict[str, Callable[[Any], Expression]]] = {
    "Value": _literal,
    "Var": _variable,
    ".": _attribute,
    "has": _has,
    "==": _equality(negated=False),
    "!=": _equality(negated=True),
    **{operator: _comparison(operator) for operator in _COMPARISONS},
    "&&": _junction(conjunction=True),
    "||": _junction(conjunction=False),
    "!": _not,
    "like": _like,
    "decimal": _decimal_literal,
    "lessThan": _decimal_comparison("<"),
    "lessThanOrEqual": _decimal_comparison("<="),
    "greaterThan": _decimal_comparison(">"),
    "greaterThanOrEqual": _decimal_comparison(">="),
}
"""The subset: what each node kind of Cedar's JSON policy form (EST) compiles to."""
