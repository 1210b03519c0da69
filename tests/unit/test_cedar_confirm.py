"""`@confirm`: a forbid the agent's own user may lift, parsed and decided on the real engine (cedarpy)."""

from __future__ import annotations

import pytest

from libs.common.cedar.cedar_eval import Principal, call_context, evaluate
from libs.common.cedar.cedar_policies import BASELINE_ID, PolicyProblem, compile_policies

pytestmark = pytest.mark.unit

CONFIRM = """\
@id("refund-confirm")
@confirm("Refund this customer?")
@reason("refunds above 20 are confirmed by the user")
forbid (principal, action, resource == Tool::"billing/refund") when { context.arguments.amount > 20 };
"""
SUPPORT = Principal("support", user="sam", team="support", customer="acme")
REFUND = ("billing", "refund", {})


def test_the_question_is_parsed() -> None:
    policy = compile_policies(CONFIRM).policies["refund-confirm"]
    assert (policy.confirm, policy.approval, policy.per_call) == ("Refund this customer?", None, True)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('@id("c")\n@confirm(" ")\nforbid (principal, action, resource);', "the question"),
        ('@id("c")\n@confirm("' + "x" * 1001 + '")\nforbid (principal, action, resource);', "at most 1000"),
        ('@id("c")\n@confirm("sure?")\n@approval("sre")\nforbid (principal, action, resource);', "write two"),
        ('@id("c")\n@confirm("sure?")\n@timeout("5")\nforbid (principal, action, resource);', "goes with @approval"),
    ],
)
def test_a_confirm_that_cannot_apply_is_refused(text: str, says: str) -> None:
    with pytest.raises(PolicyProblem) as refused:
        compile_policies(text)
    assert refused.value.line == 1 and says in str(refused.value)


def test_a_matching_confirm_asks_the_user() -> None:
    compiled = compile_policies(CONFIRM)

    def decide(amount: int) -> tuple[str, str, str | None, str | None]:
        verdict = evaluate(compiled, compiled.full, SUPPORT, REFUND, call_context({"amount": amount}))
        return verdict.effect, verdict.policy, verdict.question, verdict.reason

    assert decide(20) == ("allow", BASELINE_ID, None, None)
    assert decide(21) == (
        "confirm",
        "refund-confirm",
        "Refund this customer?",
        "refunds above 20 are confirmed by the user",
    )


def test_a_plain_forbid_and_an_approval_outrank_a_confirm() -> None:
    frozen = '@id("frozen")\nforbid (principal in Customer::"acme", action, resource);\n'
    approval = '@id("finance")\n@approval("finance")\nforbid (principal, action, resource);\n'
    for extra, effect, policy in ((frozen, "deny", "frozen"), (approval, "approval", "finance")):
        compiled = compile_policies(CONFIRM + extra)
        verdict = evaluate(compiled, compiled.full, SUPPORT, REFUND, call_context({"amount": 50}))
        assert (verdict.effect, verdict.policy, verdict.question) == (effect, policy, None)
