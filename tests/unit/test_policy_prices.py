"""Per-tool prices (most specific pattern wins), plan building and refusal wording. Pure."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.common.contracts.entities import Budget, RateLimit
from libs.common.contracts.errors import ErrorKind
from services.policy.quotas import BudgetCheck, LimitPlan, RateCheck, Refused, ToolTable, micro_usd, plan_for, price_for

pytestmark = pytest.mark.unit

PRICES = {
    "*": 0.001,
    "search*": 0.01,
    "search_code*": 0.02,
    "search_code": 0.05,
    "search_?ode_fast": 0.03,
    "get_*": 0.0,
}


@pytest.mark.parametrize(
    ("tool", "price"),
    [
        ("search_code", 0.05),  # exact beats every wildcard
        ("search_code_fast", 0.02),  # "search_code*" (prefix 11) beats "search_?ode_fast" (prefix 7)
        ("search_node_fast", 0.03),  # then "search_?ode_fast" (prefix 7) beats "search*" (prefix 6)
        ("search_issues", 0.01),
        ("get_me", 0.0),  # an explicit zero is a price, not "unlisted"
        ("create_issue", 0.001),  # the catch-all
    ],
)
def test_most_specific_pattern_wins(tool, price):
    assert price_for(PRICES, tool) == price


def test_unlisted_tools_are_free_and_matching_is_case_sensitive():
    assert price_for({"search": 1.0, "Get*": 2.0}, "create") == 0.0
    assert price_for({"Get*": 2.0}, "get_me") == 0.0
    assert price_for({}, "anything") == 0.0


def test_equal_prefixes_prefer_more_literal_characters_then_stable_order():
    assert price_for({"a*": 1.0, "a*z": 2.0}, "abcz") == 2.0
    assert price_for({"a*c": 1.0, "a*b": 2.0}, "a_b_c") == 1.0  # only one matches
    assert price_for({"a*c": 2.0, "a?c": 1.0}, "abc") == 1.0  # same prefix and literals: fewer "*" wins
    assert price_for({"b*": 2.0, "a*": 1.0, "*": 0.5}, "ab") == 1.0


@given(
    table=st.dictionaries(st.from_regex(r"[a-c*?]{0,4}", fullmatch=True), st.integers(0, 9), max_size=6),
    tool=st.from_regex(r"[a-c]{0,4}", fullmatch=True),
)
def test_lookup_is_independent_of_insertion_order(table, tool):
    forward, backward = ToolTable(table), ToolTable(dict(reversed(list(table.items()))))
    assert forward.lookup(tool) == backward.lookup(tool)
    if tool in table:
        assert forward.lookup(tool) == table[tool]


def test_tool_table_serves_rate_limits_too():
    table = ToolTable({"search*": RateLimit(requests=10), "*": RateLimit(requests=100, per="hour")})
    assert table.lookup("search_code") == RateLimit(requests=10)
    assert table.lookup("get_me") == RateLimit(requests=100, per="hour")
    assert ToolTable({}).lookup("x") is None


@pytest.mark.parametrize(
    ("usd", "micro"), [(0.1, 100_000), (0.03, 30_000), (1e-6, 1), (4e-7, 0), (12.345678, 12_345_678)]
)
def test_micro_usd_is_exact_for_decimal_prices(usd, micro):
    assert micro_usd(usd) == micro


def test_plan_drops_absent_limits_and_free_calls_skip_budgets():
    day, rate = Budget(limit_usd=1.0, period="day"), RateLimit(requests=5)
    plan = plan_for(0.25, [("customer:acme", None), ("key:ci", day)], [("key:ci", rate), ("user:bob", None)])
    assert plan == LimitPlan(budgets=(BudgetCheck("key:ci", day, 250_000),), rates=(RateCheck("key:ci", rate),))
    assert plan
    free = plan_for(0.0, [("key:ci", day)], [("key:ci", rate)])
    assert free.budgets == () and free.rates == (RateCheck("key:ci", rate),)
    assert not plan_for(0.0, [("key:ci", day)])
    assert not LimitPlan()


@pytest.mark.parametrize(
    ("refused", "message"),
    [
        (
            Refused("budget", "customer:acme", "$10.00 per month", 1775001600, 3 * 3600 + 12 * 60),
            "budget of $10.00 per month for customer:acme is exhausted; resets at 2026-04-01T00:00:00Z (in 3 h 12 min)",
        ),
        (
            Refused("rate_limit", "tool:github/search", "100 requests per minute", 1773837060, 44.2),
            "rate limit of 100 requests per minute for tool:github/search is reached;"
            " resets at 2026-03-18T12:31:00Z (in 45 s)",
        ),
        (
            Refused("budget", "key:ci", "$0.005 per week", 1774224000, 4 * 86400 + 11 * 3600 + 5),
            "budget of $0.005 per week for key:ci is exhausted; resets at 2026-03-23T00:00:00Z (in 4 d 11 h)",
        ),
    ],
)
def test_refusal_says_which_limit_and_when_it_resets(refused, message):
    assert refused.message == message
    error = refused.error()
    assert error.message == message
    assert error.kind is (ErrorKind.BUDGET_EXCEEDED if refused.kind == "budget" else ErrorKind.RATE_LIMITED)
