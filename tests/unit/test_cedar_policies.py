"""The Cedar policy text: what compiles, what is refused and on which line, and what a decision
says (allow, deny naming the policy, approval), on the real engine (cedarpy)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from libs.common.cedar.cedar_eval import Principal, call_context, evaluate, per_call_applicable
from libs.common.cedar.cedar_policies import BASELINE_ID, PolicyProblem, compile_policies

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policy.md"
REFUND = """\
// a comment; with a semicolon
@id("refund-above-100")
@approval("finance")
@reason("above 100; a person decides")
forbid (principal, action == Action::"tools/call", resource == Tool::"billing/refund")
when { context.arguments.amount > 100 };

@id("no-delete")
forbid (principal, action, resource in Server::"billing") when { resource.tool like "delete_*" };
"""
SUPPORT = Principal("support", user="sam", team="support", customer="acme")


def test_every_cedar_example_in_the_docs_compiles() -> None:
    blocks = re.findall(r"```cedar\n(.*?)```", DOCS.read_text(), re.S)
    assert len(blocks) >= 3
    for block in blocks:
        compile_policies(block)


def test_policies_are_split_by_statement_and_annotated() -> None:
    compiled = compile_policies(REFUND)
    refund, delete = compiled.policies["refund-above-100"], compiled.policies["no-delete"]
    assert (refund.line, refund.approval, refund.reason, refund.per_call) == (
        2,
        "finance",
        "above 100; a person decides",
        True,
    )
    assert (delete.line, delete.approval, delete.per_call) == (8, None, False)


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        (REFUND + '\n@id("x")\nforbid (principal, action resource);\n', 11, "unexpected token"),
        (REFUND + "\nforbid (principal, action, resource);\n", 11, "@id"),
        (REFUND + '\n@id("no-delete")\nforbid (principal, action, resource);\n', 11, "used twice"),
        ('@id("p")\npermit (principal, action, resource);', 1, "is a permit"),
        ('@id("t")\n@timeout("5")\nforbid (principal, action, resource);', 1, "goes with @approval"),
        ('@id("t")\n@approval("x")\n@timeout("soon")\nforbid (principal, action, resource);', 1, "seconds"),
        ('@id("grants")\nforbid (principal, action, resource);', 1, "grants"),
        ('@id("open")\nforbid (principal, action, resource)', 1, "does not end with ';'"),
    ],
)
def test_a_text_that_cannot_apply_names_the_line(text: str, line: int, says: str) -> None:
    with pytest.raises(PolicyProblem) as refused:
        compile_policies(text)
    assert refused.value.line == line and says in str(refused.value)


def test_the_refund_decisions() -> None:
    compiled = compile_policies(REFUND)
    refund = ("billing", "refund", {})

    def decide(arguments: dict[str, object]) -> tuple[str, str]:
        verdict = evaluate(compiled, compiled.full, SUPPORT, refund, call_context(arguments))
        return verdict.effect, verdict.policy

    assert decide({"amount": 100}) == ("allow", BASELINE_ID)
    assert decide({"amount": 100.0}) == ("allow", BASELINE_ID)
    assert decide({"amount": 101}) == ("approval", "refund-above-100")
    # what the policy cannot read refuses, naming it: leaving the amount out never passes the limit
    assert decide({}) == ("deny", "refund-above-100")
    assert decide({"amount": "1000"}) == ("deny", "refund-above-100")
    assert decide({"amount": 100.5}) == ("deny", "refund-above-100")
    assert decide({"amount": None}) == ("deny", "refund-above-100")


def test_a_plain_forbid_wins_over_an_approval() -> None:
    compiled = compile_policies(
        REFUND
        + '\n@id("frozen")\n@reason("acme is frozen")\nforbid (principal in Customer::"acme", action, resource);\n'
    )
    verdict = evaluate(compiled, compiled.full, SUPPORT, ("billing", "refund", {}), call_context({"amount": 500}))
    assert (verdict.effect, verdict.policy, verdict.reason) == ("deny", "frozen", "acme is frozen")


def test_only_pairs_a_per_call_policys_scope_covers_are_decided_per_call() -> None:
    compiled = compile_policies(REFUND)
    assert per_call_applicable(compiled, SUPPORT, ("billing", "refund", {})) == {"refund-above-100"}
    assert per_call_applicable(compiled, SUPPORT, ("billing", "lookup", {})) == frozenset()
    static = evaluate(compiled, compiled.static, SUPPORT, ("billing", "delete_order", {}), {})
    assert (static.effect, static.policy) == ("deny", "no-delete")


def test_annotations_and_membership_reach_the_policies() -> None:
    compiled = compile_policies(
        '@id("destructive")\n@approval("sre")\nforbid (principal in Team::"support", action, resource)\n'
        "when { resource.annotations has destructiveHint && resource.annotations.destructiveHint };"
    )
    destructive = ("prod", "drop", {"destructiveHint": True})
    assert evaluate(compiled, compiled.static, SUPPORT, destructive, {}).effect == "approval"
    assert evaluate(compiled, compiled.static, Principal("ci"), destructive, {}).effect == "allow"
    assert evaluate(compiled, compiled.static, SUPPORT, ("prod", "read", {"readOnlyHint": True}), {}).effect == "allow"


def test_a_tool_is_judged_under_each_of_its_stable_names() -> None:
    compiled = compile_policies(
        '@id("no-whoami")\nforbid (principal, action, resource == Tool::"adm/whoami");\n'
        + REFUND.replace('"billing/refund"', '"billing/refund_v1"')
    )
    renamed = ("adm", "whoami2", {})
    assert evaluate(compiled, compiled.full, SUPPORT, renamed, {}).effect == "allow"
    verdict = evaluate(compiled, compiled.full, SUPPORT, renamed, {}, aliases=("whoami",))
    assert (verdict.effect, verdict.policy) == ("deny", "no-whoami")
    # a condition on the name (`resource.tool like "delete_*"`) reads each name as well
    tidied = ("billing", "remove_order", {})
    assert evaluate(compiled, compiled.static, SUPPORT, tidied, {}, aliases=("delete_order",)).policy == "no-delete"
    # a per-call policy's scope covers the tool under its old name, and decides its arguments
    refund = ("billing", "refund", {})
    assert per_call_applicable(compiled, SUPPORT, refund, ("refund_v1",)) == {"refund-above-100"}
    above = evaluate(compiled, compiled.full, SUPPORT, refund, call_context({"amount": 500}), aliases=("refund_v1",))
    assert (above.effect, above.policy) == ("approval", "refund-above-100")


def test_the_cli_checks_a_call_under_the_tools_other_names(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    policies = tmp_path / "policies.cedar"
    policies.write_text(REFUND)
    base = ["policy", "check", str(policies), "--key", "support", "--tool", "billing/remove_order"]
    plain = CliRunner().invoke(app, base)
    aliased = CliRunner().invoke(app, [*base, "--alias", "delete_order"])
    assert plain.exit_code == 0 and "allow by policy grants" in plain.output, plain.output
    assert aliased.exit_code == 0 and "deny by policy no-delete" in aliased.output, aliased.output
