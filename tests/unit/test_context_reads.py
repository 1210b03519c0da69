"""A call's Cedar context holds only what the policies read (`context_reads`), and no decision changes.

The attack: policies that read the context every way Cedar can (an attribute, `has`, nested paths, a
quoted name, a record compared whole, sets, `like`, decimals, time, the initiator, the whole context),
as forbid and as permit, each decided with the whole context and with the pruned one, over arguments
hypothesis makes up from the names the policies read and others. Decision, reasons and which policies
erred must be the same."""

from __future__ import annotations

import json
from typing import Any

import cedarpy
import orjson
import pytest
from cedarpy import _internal as native
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.cedar.cedar_eval import call_context
from libs.common.cedar.context_reads import WHOLE, context_reads, pruned

pytestmark = pytest.mark.unit

CONDITIONS = (
    'context.arguments.text == "secret"',
    "context.arguments has n && context.arguments.n > 9",
    'context.arguments == {"a": 1}',
    "context.arguments.tags.isEmpty()",
    'context.arguments.tags.contains("x")',
    "context.arguments.nested.deep == 1",
    "context.arguments has nested.deep",
    'context.arguments["x y"] like "a*"',
    'context.decimals has amount && context.decimals.amount.greaterThan(decimal("100.0"))',
    'context.time.hour < 6 || context.initiator == "app"',
    "if context.arguments has a then context.arguments.a == 1 else false",
    "context has arguments && context.arguments has other",
    "[context.arguments.a, 1].contains(1)",
    '{"k": context.arguments.nested} == {"k": {"deep": 1}}',
    'context == {"initiator": "agent"}',
    "context.arguments.nested has deep && context.arguments.nested.deep > 0",
)
NAMES = ("text", "n", "a", "tags", "nested", "x y", "amount", "other", "unread")
ENTITIES = cedarpy.Entities.from_json_str(
    json.dumps(
        [
            {"uid": {"type": "Key", "id": "ci"}, "attrs": {}, "parents": []},
            {"uid": {"type": "Tool", "id": "echo/echo"}, "attrs": {"server": "echo", "tool": "echo"}, "parents": []},
        ]
    )
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["secret", "abc", "x", "", "a b"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["deep", "other", "a"]), inner, max_size=3)
    ),
    max_leaves=8,
)
arguments = st.dictionaries(st.sampled_from(NAMES), values, max_size=6)


def _policies(condition: str, effect: str) -> str:
    head = f'@id("p")\n{effect} (principal, action, resource == Tool::"echo/echo") when {{ {condition} }};'
    return head + ('\n@id("all")\npermit (principal, action, resource);' if effect == "forbid" else "")


def _decided(policies: cedarpy.PolicySet, context: dict[str, Any]) -> tuple[Any, ...]:
    request = {
        "principal": {"type": "Key", "id": "ci"},
        "action": {"type": "Action", "id": "tools/call"},
        "resource": {"type": "Tool", "id": "echo/echo"},
        "context": orjson.dumps(context).decode(),
    }
    (answer,) = native.is_authorized_batch([request], policies, ENTITIES._inner, None, False)
    result = orjson.loads(answer)
    diagnostics = result["diagnostics"]
    errors = [e["policy_id"] if isinstance(e, dict) else e for e in diagnostics["errors"]]
    return result["decision"], sorted(diagnostics.get("reason", ())), sorted(errors)


@settings(max_examples=400, deadline=None)
@given(
    condition=st.sampled_from(CONDITIONS),
    effect=st.sampled_from(["forbid", "permit"]),
    args=arguments,
    initiator=st.sampled_from(["agent", "app"]),
    now=st.integers(1_700_000_000, 1_800_000_000),
)
def test_a_pruned_context_decides_as_the_whole_one(
    condition: str, effect: str, args: dict[str, Any], initiator: str, now: int
) -> None:
    text = _policies(condition, effect)
    policies = cedarpy.PolicySet.from_str(text)
    reads = context_reads(cedarpy.policies_to_json_str(text))
    whole = _decided(policies, call_context(args, now, initiator))
    assert whole[0] != "NoDecision", whole  # every value is one Cedar takes, or left out
    assert _decided(policies, call_context(args, now, initiator, reads=reads)) == whole


@pytest.mark.parametrize(
    ("condition", "reads"),
    [
        ('context.arguments.text == "secret"', {"arguments": {"text": WHOLE}}),
        ("context.arguments has nested.deep", {"arguments": {"nested": {"deep": {}}}}),
        ("context.arguments has n && context.arguments.n > 9", {"arguments": {"n": WHOLE}}),
        ('context.arguments == {"a": 1}', {"arguments": WHOLE}),
        ("context.arguments.tags.contains(1) && context.arguments.tags.isEmpty()", {"arguments": {"tags": WHOLE}}),
        ('context.time.hour < 6 || context.initiator == "app"', {"time": {"hour": WHOLE}, "initiator": WHOLE}),
        ('context == {"initiator": "agent"}', WHOLE),
        ('principal.team == "ops"', {}),
    ],
)
def test_what_a_policy_reads(condition: str, reads: Any) -> None:
    assert context_reads(cedarpy.policies_to_json_str(_policies(condition, "forbid"))) == reads


def test_a_call_with_many_arguments_carries_only_the_one_read() -> None:
    """The decision's cost stays that of what is read, whatever else the call holds."""
    reads = context_reads(cedarpy.policies_to_json_str(_policies('context.arguments.text == "secret"', "forbid")))
    many = {"text": "hi"} | {f"field_{i}": "x" * 40 for i in range(30)}
    assert call_context(many, 0, reads=reads) == {"arguments": {"text": "hi"}}


def test_a_value_that_is_not_a_record_is_kept_as_it_is() -> None:
    assert pruned({"nested": [1, {"deep": 2}], "cut": 1}, {"nested": {"deep": WHOLE}}) == {"nested": [1, {"deep": 2}]}
    assert pruned("text", {"a": WHOLE}) == "text"


def test_a_policy_set_nested_past_the_stack_is_read_whole() -> None:
    deep = '{"!":{"arg":' * 5000 + '{"Var":"context"}' + "}}" * 5000
    assert context_reads('{"staticPolicies":{"p":{"conditions":[{"body":' + deep + "}]}}}") is WHOLE
