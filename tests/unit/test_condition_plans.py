"""A grant's per-call policies decided in Python (`condition_plans`) answer as Cedar does, or leave it to Cedar.

The attack: generated policy sets (forbids over the arguments in and outside the subset, scopes that
cover the tool under its own name, an alias, its server, a team, or not at all) and generated
arguments (every JSON type, integers past 64 bits, fractions, Cedar's `__entity` escape, deep nesting,
lone surrogates), each call decided by `condition_allows` (Cedar) and by the plan. Wherever the plan
answers, it must be Cedar's answer; the cases a gateway sees every call must be answered."""

from __future__ import annotations

from typing import Any

import cedarpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.cedar.cedar_eval import (
    Principal,
    call_context,
    condition_allows,
    entities_json,
    per_call_applicable,
    tool_names,
)
from libs.common.cedar.cedar_policies import compile_policies
from libs.common.cedar.condition_plans import ConditionPlan, plan
from libs.common.cedar.context_reads import context_reads

pytestmark = pytest.mark.unit

SUBSET = (
    'context.arguments.text == "forbidden"',
    'context.arguments.text != "ok"',
    "context.arguments.n > 1000",
    "context.arguments.n <= -3 || context.arguments.n >= 70",
    "context.arguments has n && context.arguments.n < 10",
    '!(context.arguments.path like "/etc/*")',
    'context.arguments.path like "a.b*c\\*"',
    "context.arguments.flag == true",
    "context.arguments.flag == 1",
    'context.initiator == "app"',
    "context.arguments.nested.deep == 1",
    "context.arguments has nested && context.arguments.nested has deep",
    'context.time.hour < 6 && context.initiator != "agent"',
    'context.decimals has n && context.decimals.n.greaterThan(decimal("100.0"))',
    'context.decimals.n.lessThanOrEqual(decimal("-2.5")) || context.decimals.n == decimal("5.0")',
    'context.arguments.n == decimal("5.0")',
    'context.arguments.n.greaterThanOrEqual(decimal("0.0001"))',
)
"""Conditions inside the subset: the plan decides them."""
BEYOND = (
    'context.arguments.tags.contains("x")',
    'context.arguments == {"n": 1}',
    'ip("127.0.0.1").isLoopback() && context.arguments.n > 1',
    "context.decimals.n.lessThan(decimal(context.arguments.text))",
    'principal.team == "red" && context.arguments.n > 1',
    "if context.arguments has n then context.arguments.n == 1 else false",
    "context.arguments.n + 1 > 5",
)
"""Conditions outside it: their grant's calls go to Cedar."""
SCOPES = (
    'resource == Tool::"echo/echo"',
    'resource == Tool::"echo/shout"',
    'resource in Server::"echo"',
    'resource == Tool::"other/echo"',
)
WHO = Principal("ci", user="ann", team="blue")
TARGET = ("echo", "echo", {})
ALIASES = ("shout",)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**66), 2**66),
    st.sampled_from([0, 1, 5, 1000, 1001, 70, -3, 2**63 - 1, 2**63, 5.0, 100.00001, -2.5, 99999999999999.5]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["forbidden", "ok", "/etc/passwd", "a.b-c*", "axbc*", "", "\ud800", "app"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["deep", "other", "__entity", "__extn"]), inner, max_size=2),
    ),
    max_leaves=6,
)
arguments = st.dictionaries(
    st.sampled_from(["text", "n", "path", "flag", "nested", "tags", "unread"]), values, max_size=5
)


def _grant(statements: list[tuple[str, str]]) -> tuple[cedarpy.PolicySet, cedarpy.Entities, str, Any]:
    """What policy grants for `statements` ((scope, condition) forbids): as `cedar_decisions._condition` does."""
    text = "\n".join(
        f'@id("p{i}")\nforbid (principal, action, {scope}) when {{ {condition} }};'
        for i, (scope, condition) in enumerate(statements)
    )
    compiled = compile_policies(text)
    ids = per_call_applicable(compiled, WHO, TARGET, ALIASES) or frozenset(compiled.per_call_parsed)
    policies = compiled.subset_json(ids)
    return (
        cedarpy.PolicySet.from_json_str(policies),
        cedarpy.Entities.from_json_str(entities_json(WHO, TARGET, ALIASES)),
        policies,
        context_reads(policies),
    )


def _both(statements: list[tuple[str, str]], args: dict[str, Any], initiator: str = "agent") -> tuple[Any, bool]:
    policies, entities, policies_json, reads = _grant(statements)
    target = ("echo", tool_names("echo", ALIASES))
    context = call_context(args, initiator=initiator, reads=reads)
    found = plan(policies_json, entities, WHO.name, target)
    assert found is not None, "every policy of these statements is in the subset"
    return found.allows(context), condition_allows(policies, entities, WHO.name, target, context)


@settings(max_examples=600, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(SCOPES), st.sampled_from(SUBSET)), min_size=1, max_size=3),
    arguments,
    st.sampled_from(["agent", "app"]),
)
def test_a_plan_answers_as_cedar_does_wherever_it_answers(
    statements: list[tuple[str, str]], args: dict[str, Any], initiator: str
) -> None:
    answer, cedar = _both(statements, args, initiator)
    assert answer is None or answer == cedar


@pytest.mark.parametrize(
    ("condition", "args", "expected"),
    [
        ('context.arguments.text == "forbidden"', {"text": "hello"}, True),
        ('context.arguments.text == "forbidden"', {"text": "forbidden"}, False),
        ("context.arguments.n > 1000", {"n": 50}, True),
        ("context.arguments.n > 1000", {"n": 5000}, False),
        ("context.arguments.n > 1000", {"n": 1000.0}, True),  # a whole float is a Long
        ('!(context.arguments.path like "/etc/*")', {"path": "/etc/shadow"}, True),
        ('context.arguments.path like "a.b*c\\*"', {"path": "axbc*"}, True),  # `.` is no wildcard
        ('context.arguments.path like "a.b*c\\*"', {"path": "a.b-c*"}, False),
        ("context.arguments.flag == 1", {"flag": True}, True),  # `true == 1` is false in Cedar
        ('context.decimals.n.greaterThan(decimal("100.0"))', {"n": 100.5}, False),
        ('context.decimals.n.greaterThan(decimal("100.0"))', {"n": 100}, True),
        ('context.decimals.n == decimal("5.0")', {"n": 5}, False),  # 5 and 5.0000: one decimal
        ('context.decimals.n.lessThan(decimal("-2.5"))', {"n": -3}, False),
        ('context.decimals.n.lessThan(decimal("-2.5"))', {"n": 2}, True),
        ('context.arguments.n == decimal("5.0")', {"n": 5}, True),  # a Long is no decimal
        # a decimal the agent wrote as Cedar's escape is a decimal to Cedar, and to the plan
        (
            'context.arguments.n.greaterThan(decimal("100.0"))',
            {"n": {"__extn": {"fn": "decimal", "arg": "150.0"}}},
            False,
        ),
        ("context.arguments has n && context.arguments.n < 10", {}, True),
    ],
)
def test_the_calls_a_gateway_sees_every_call_are_decided_without_cedar(
    condition: str, args: dict[str, Any], expected: bool
) -> None:
    assert _both([('resource == Tool::"echo/echo"', condition)], args) == (expected, expected)


@pytest.mark.parametrize(
    ("condition", "args"),
    [
        ("context.arguments.n > 1000", {"n": "5000"}),  # a string compared as a Long: an error in Cedar
        ("context.arguments.n > 1000", {"n": True}),  # a bool compared as a Long (Python would say False)
        ("context.arguments.n > 1000", {}),  # a missing attribute: an error
        ("context.arguments.n > 1000", {"n": 1000.5}),  # a fraction: a Cedar decimal
        ("context.arguments.n > 1000", {"n": {"__entity": {"type": "Key", "id": "admin"}}}),  # an entity to Cedar
        ("context.arguments.n > 1000", {"n": 2**64}),  # past a Long: left out of the context, so missing
        ('context.arguments.text == "x"', {"text": "\ud800"}),  # a lone surrogate
        ('context.arguments.text == "x"', {"text": {"deep": "x"}}),  # a record compared: Cedar's rules
        ("context.arguments.n > 1000", {"n": {"__extn": {"fn": "decimal", "arg": "1e5"}}}),  # a bad decimal
        ("context.arguments.n > 1000", {"n": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}}),  # another extension
        ('context.decimals.n.greaterThan(decimal("1.0"))', {"n": "5"}),  # a decimal method on a string
    ],
)
def test_what_cedar_might_answer_otherwise_is_left_to_cedar(condition: str, args: dict[str, Any]) -> None:
    answer, cedar = _both([('resource == Tool::"echo/echo"', condition)], args)
    assert answer is None
    assert cedar is (args == {"text": {"deep": "x"}})  # an error refuses; a record is just not equal


@pytest.mark.parametrize(
    "escape",
    [
        {"__extn": {"fn": "decimal", "arg": "1e5"}},
        {"__extn": {"fn": "ip", "arg": "10.0.0.1"}},
        {"__entity": {"type": "Key", "id": "admin"}},
        {"__extn": {"arg": "1.0", "fn": "decimal"}},  # a decimal, written otherwise than `call_context` does
    ],
)
def test_an_escape_the_plan_would_never_read_still_leaves_the_call_to_cedar(escape: dict[str, Any]) -> None:
    # the plan would stop at `n > 5`; Cedar reads the whole context first, escapes and all
    condition = "context.arguments.n > 5 && context.arguments.x == 1"
    answer, _cedar = _both([('resource == Tool::"echo/echo"', condition)], {"n": 1, "x": escape})
    assert answer is None


def test_a_context_nested_past_cedars_parser_is_left_to_cedar() -> None:
    # the plan would stop at `n > 5` and never read `nested`; Cedar parses the whole context first
    deep: Any = 1
    for _ in range(200):
        deep = {"deep": deep}
    condition = "context.arguments.n > 5 && context.arguments.nested == 1"
    answer, cedar = _both([('resource == Tool::"echo/echo"', condition)], {"n": 1, "nested": deep})
    assert answer is None and cedar is False


def test_a_forbid_whose_scope_misses_the_tool_under_every_name_is_not_read() -> None:
    # its condition would refuse, but Cedar never reaches it: the call is plainly allowed
    answer = _both(
        [('resource == Tool::"other/echo"', "context.arguments.n > 1"), ('resource in Server::"echo"', "false")],
        {"n": 5},
    )
    assert answer == (True, True)


def test_a_forbid_that_covers_the_tool_only_under_an_alias_still_refuses() -> None:
    assert _both([('resource == Tool::"echo/shout"', "context.arguments.n > 1")], {"n": 5}) == (False, False)


@pytest.mark.parametrize("condition", BEYOND)
def test_a_grant_with_a_policy_beyond_the_subset_is_decided_by_cedar_on_every_call(condition: str) -> None:
    statements = [('resource == Tool::"echo/echo"', 'context.arguments.text == "forbidden"')]
    statements.append(('resource == Tool::"echo/echo"', condition))
    _policies, entities, policies_json, _reads = _grant(statements)
    assert plan(policies_json, entities, WHO.name, ("echo", tool_names("echo", ALIASES))) is None


def test_a_set_without_the_baseline_permit_is_decided_by_cedar() -> None:
    # policy's sets always hold it; without it no call would be allowed, which the plan does not know
    alone = '{"staticPolicies": {}, "templates": {}, "templateLinks": []}'
    entities = cedarpy.Entities.from_json_str(entities_json(WHO, TARGET, ALIASES))
    assert plan(alone, entities, WHO.name, ("echo", ("echo",))) is None
    assert isinstance(plan(_grant([])[2], entities, WHO.name, ("echo", ("echo",))), ConditionPlan)
