"""Amounts with and without cents meet one policy: the refund example of docs/policy.md, to the
letter, decides 50, 20.50, 100, 100.01 and 500 on the real engine (cedarpy), and a number Cedar
cannot hold exactly is refused rather than rounded past the limit."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.cedar.cedar_eval import Principal, call_context, evaluate
from libs.common.cedar.cedar_policies import compile_policies
from tests.support.refund_gateway import documented_policy

pytestmark = pytest.mark.unit

SUPPORT = Principal("support", user="sam", team="support", customer="acme")
REFUND: tuple[str, str, dict[str, Any]] = ("billing", "refund", {})


def _decide(policy: str, arguments: dict[str, Any]) -> tuple[str, str]:
    compiled = compile_policies(policy)
    verdict = evaluate(compiled, compiled.full, SUPPORT, REFUND, call_context(arguments))
    return verdict.effect, verdict.policy


@pytest.mark.parametrize(
    ("amount", "effect"),
    [(50, "allow"), (20.50, "allow"), (100, "allow"), (100.0, "allow"), (100.01, "approval"), (500, "approval")],
)
def test_the_documented_refund_limit_takes_amounts_with_and_without_cents(amount: float, effect: str) -> None:
    decided = _decide(documented_policy("refund-above-100"), {"order": "o-1", "amount": amount})
    assert decided == (effect, "grants" if effect == "allow" else "refund-above-100")


@pytest.mark.parametrize(("amount", "effect"), [(20, "allow"), (20.5, "confirm"), (19.99, "allow"), (21, "confirm")])
def test_the_documented_confirmation_takes_cents_too(amount: float, effect: str) -> None:
    decided = _decide(documented_policy("refund-confirm"), {"order": "o-1", "amount": amount})
    assert decided[0] == effect


@pytest.mark.parametrize("amount", [100.00004, 1e30, float("inf")])
def test_a_number_no_decimal_holds_is_refused_not_rounded(amount: float) -> None:
    assert _decide(documented_policy("refund-above-100"), {"order": "o-1", "amount": amount}) == (
        "deny",
        "refund-above-100",
    )


def test_the_arguments_keep_longs_for_whole_numbers() -> None:
    """`context.arguments` is as before: `> 100` still reads whole numbers (and only them)."""
    policy = (
        '@id("limit")\nforbid (principal, action, resource == Tool::"billing/refund")\n'
        "when { context.arguments.amount > 100 };"
    )
    assert _decide(policy, {"amount": 101})[0] == "deny"
    assert _decide(policy, {"amount": 99})[0] == "allow"
    assert _decide(policy, {"amount": 20.5})[0] == "deny"  # cannot be evaluated: refused, as documented
    assert call_context({"n": True, "s": "x"})["decimals"] == {"n": True, "s": "x"}
