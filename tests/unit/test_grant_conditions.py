"""A grant's condition (`messages.PolicyCondition`): the per-call Cedar policies a granted tool call
must still pass, bound by the grant's MAC and decided by the executor on each call's arguments
(`services.executor.admission`); whatever they do not plainly allow goes to policy."""

from __future__ import annotations

import time
from typing import Any

import pytest

from libs.common.cedar.cedar_eval import Principal, call_context, per_call_applicable
from libs.common.cedar.cedar_policies import compile_policies
from libs.common.cedar.context_reads import WHOLE, context_reads
from libs.common.contracts import subjects
from libs.common.contracts.messages import Grant, PolicyCondition, ToolCall
from services.executor.admission import Admission, Admitted, Stale
from services.policy.cedar_decisions import CedarDecider
from tests.support.grants import CALL, LATER, SIGNER, changed

pytestmark = pytest.mark.unit

ARGUMENT_POLICIES = """
@id("no-secrets")
@reason("no secrets echoed")
forbid (principal, action, resource == Tool::"echo/echo") when { context.arguments.text == "secret" };

@id("big-needs-finance")
@approval("finance")
forbid (principal, action, resource == Tool::"echo/echo") when { context.arguments has n && context.arguments.n > 9 };
"""


def _condition(policies: str = ARGUMENT_POLICIES) -> PolicyCondition:
    """What policy grants an `ci` key's `echo/echo` calls under `policies` (`CedarDecider._condition`)."""
    decider = CedarDecider()
    decider.load(compile_policies(policies), 7)
    who = Principal("ci")
    ids = per_call_applicable(decider.compiled, who, ("echo", "echo", {}))  # type: ignore[arg-type]
    condition = decider._condition(decider.compiled.subset_json(ids), who, ("echo", "echo", {}), ())  # type: ignore[union-attr]
    assert condition is not None and condition.names == ["echo"] and condition.version == 7
    return condition


def _on(call: ToolCall, condition: PolicyCondition, expires: float) -> tuple[dict[str, str], bytes]:
    mac = SIGNER.grant_mac(subjects.EXEC_CALL, call, expires, None, None, condition)
    grant = Grant(expires=expires, mac=mac, condition=condition)
    return {subjects.GRANT: grant.model_dump_json()}, call.model_dump_json().encode()


def test_a_grants_per_call_policies_are_bound_by_its_mac() -> None:
    """An ingress cannot drop a grant's condition, or swap it for a looser one."""
    condition = _condition()
    mac = SIGNER.grant_mac(subjects.EXEC_CALL, CALL, LATER, None, None, condition)
    assert SIGNER.genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER, mac=mac, condition=condition))
    assert not SIGNER.genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER, mac=mac))
    looser = condition.model_copy(
        update={
            "policies": _condition(
                '@id("x")\nforbid (principal, action, resource) when { context.arguments has x };'
            ).policies
        }
    )
    assert not SIGNER.genuine(subjects.EXEC_CALL, CALL, Grant(expires=LATER, mac=mac, condition=looser))
    # a grant without one signs as it always did
    assert SIGNER.grant_mac(subjects.EXEC_CALL, CALL, LATER, None, None, None) == SIGNER.grant_mac(
        subjects.EXEC_CALL, CALL, LATER, None
    )


@pytest.mark.parametrize(
    ("arguments", "runs"),
    [
        ({"text": "hello"}, True),
        ({"text": "hello", "n": 3}, True),
        ({"text": "secret"}, False),  # a plain forbid: policy refuses it, naming the policy
        ({"text": "hello", "n": 10}, False),  # an approval: policy parks it
        ({"text": "hello", "n": "ten"}, False),  # a policy that cannot be evaluated: policy refuses it
    ],
)
def test_an_executor_decides_each_call_on_a_conditional_grant_by_its_arguments(
    arguments: dict[str, Any], runs: bool
) -> None:
    """Allowed arguments run; any other answer of the per-call policies sends the call to policy."""
    admission = Admission(SIGNER)
    call = changed(arguments=arguments)
    headers, data = _on(call, _condition(), time.time() + 60)
    for _ in range(2):  # verified and compiled, then remembered: each call decided on its own arguments
        admitted = admission.admit(subjects.EXEC_CALL, "inbox", headers, data, time.time())
        assert isinstance(admitted, Admitted) if runs else admitted == Stale(call.id)


def test_arguments_sent_apart_are_decided_by_policy() -> None:
    call = changed(arguments={}, arguments_blob="blob-1")
    headers, data = _on(call, _condition(), time.time() + 60)
    assert Admission(SIGNER).admit(subjects.EXEC_CALL, "inbox", headers, data, time.time()) == Stale(call.id)


def test_a_call_an_app_made_is_decided_as_the_apps_on_a_conditional_grant() -> None:
    """The executor's context holds the call's initiator, as policy's does: a policy on
    `context.initiator` cannot be passed by an app's call on a grant the agent's calls earned."""
    policies = (
        '@id("no-app-echo")\n'
        'forbid (principal, action, resource == Tool::"echo/echo") when { context.initiator == "app" };'
    )
    condition = _condition(policies)
    admission = Admission(SIGNER)
    for initiator, runs in (("agent", True), ("app", False)):
        call = changed(arguments={"text": "hi"}, initiator=initiator)
        headers, data = _on(call, condition, time.time() + 60)
        admitted = admission.admit(subjects.EXEC_CALL, "inbox", headers, data, time.time())
        assert isinstance(admitted, Admitted) if runs else admitted == Stale(call.id)


DECIMAL_POLICY = (
    '@id("large-amounts")\n'
    'forbid (principal, action, resource == Tool::"echo/echo") '
    'when { context.decimals has amount && context.decimals.amount.greaterThan(decimal("100.0")) };'
)


def test_the_context_holds_decimals_only_where_a_policy_may_read_them() -> None:
    """Every number as a Cedar decimal is built per call only for a policy set that reads `decimals`;
    one that does not (the usual one) is decided without them, and with only the arguments it reads."""
    assert context_reads(_condition(DECIMAL_POLICY).policies) == {"decimals": {"amount": WHOLE}}
    usual = context_reads(_condition().policies)
    assert usual == {"arguments": {"text": WHOLE, "n": WHOLE}}
    assert call_context({"text": "a", "n": 2, "other": [1, 2]}, reads=usual) == {"arguments": {"text": "a", "n": 2}}
    assert "decimals" not in call_context({"amount": 2}, decimals=False)


@pytest.mark.parametrize(("amount", "runs"), [(50.5, True), (100, True), (100.25, False), (1e6, False)])
def test_an_executor_decides_a_policy_on_decimals_by_the_calls_amount(amount: float, runs: bool) -> None:
    admission = Admission(SIGNER)
    call = changed(arguments={"text": "hi", "amount": amount})
    headers, data = _on(call, _condition(DECIMAL_POLICY), time.time() + 60)
    admitted = admission.admit(subjects.EXEC_CALL, "inbox", headers, data, time.time())
    assert isinstance(admitted, Admitted) if runs else admitted == Stale(call.id)
