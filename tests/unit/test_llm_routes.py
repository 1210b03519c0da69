"""Routed models in pure parts: the `llm.models` validation, a model resolved to its deployments,
the order a strategy tries them in, a deployment's own limits, and prices of cached and reasoning
tokens (docs/llm-routing.md)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError

from libs.common.contracts.llm import LlmRequest, RoutedDeployment, Usage, cost_usd, max_cost_usd
from libs.common.contracts.llm_config import LlmSection, ModelPrice
from libs.common.contracts.llm_routes import candidates
from libs.common.contracts.messages import Caller
from libs.common.contracts.model_grants import ModelGrants
from services.executor.llm_deployments import Deployments, ordered
from services.executor.llm_routing import skipped

pytestmark = pytest.mark.unit


def _section(models: dict[str, Any], **providers: Any) -> LlmSection:
    base = {"base_url": "https://api.example.com/v1"}
    listed = providers or {"openai": {**base, "models": ["gpt-4.1"]}, "anthropic": {**base, "models": ["claude"]}}
    return LlmSection.model_validate({"providers": listed, "models": models})


def _one(provider: str = "openai", model: str = "gpt-4.1-2025", **extra: Any) -> dict[str, Any]:
    return {"deployments": [{"provider": provider, "model": model}], **extra}


def test_routes_beside_listed_models_validate_and_a_config_without_routes_is_unchanged() -> None:
    section = _section({"smart": _one(fallbacks=["claude"]), "fast": _one("anthropic", fallbacks=["smart"])})
    assert set(section.models) == {"smart", "fast"}
    assert _section({}).models == {}


@pytest.mark.parametrize(
    ("models", "says"),
    [
        ({"smart": _one("nobody")}, "unknown provider 'nobody'"),
        ({"smart": {"deployments": []}}, "at least 1 item"),
        ({"smart": _one(fallbacks=["nowhere"])}, "fallback 'nowhere' is neither"),
        ({"smart": _one(fallbacks=["smart"])}, "cannot fall back to itself"),
        (
            {"p": _one(fallbacks=["q"]), "q": _one(fallbacks=["r"]), "r": _one(fallbacks=["p"])},
            "loop (p -> q -> r -> p)",
        ),
        ({"gpt-4.1": _one()}, "provider 'openai' lists 'gpt-4.1' too"),
    ],
)
def test_a_route_that_cannot_be_served_is_refused_clearly(models: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _section(models)
    assert says in str(refused.value)


def test_a_provider_name_cannot_take_the_routes_record_key() -> None:
    with pytest.raises(ValidationError, match="reserved"):
        _section({}, _routes={"base_url": "https://x.example/v1", "models": ["m"]})


def test_a_model_resolves_to_its_deployments_then_its_fallbacks_depth_first_once_each() -> None:
    section = _section(
        {
            "a": {"deployments": [{"provider": "openai", "model": "a1"}], "fallbacks": ["b", "c"]},
            "b": {"deployments": [{"provider": "openai", "model": "b1"}], "fallbacks": ["c"]},
            "c": {"deployments": [{"provider": "anthropic", "model": "c1"}], "strategy": "latency"},
        }
    )
    found = candidates("a", section.models)
    assert [(d.route, d.model, d.strategy) for d in found] == [
        ("a", "a1", "priority"),
        ("b", "b1", "priority"),
        ("c", "c1", "latency"),
    ]
    assert not any(d.granted for d in found)  # policy alone grants
    assert candidates("unknown", section.models) == []


def _deployment(model: str, route: str = "r", **fields: Any) -> RoutedDeployment:
    return RoutedDeployment(provider="p", model=model, route=route, **fields)


def test_priority_orders_within_a_route_and_routes_keep_their_order() -> None:
    found = [_deployment("late", priority=5), _deployment("early", priority=1), _deployment("fb", route="fallback")]
    assert [d.model for d in ordered(found, Deployments())] == ["early", "late", "fb"]


def test_weighted_sends_traffic_in_proportion_to_the_weights() -> None:
    found = [_deployment("heavy", weight=3, strategy="weighted"), _deployment("light", weight=1, strategy="weighted")]
    rng = random.Random(7)
    firsts = [ordered(found, Deployments(), rng)[0].model for _ in range(4000)]
    assert 0.70 < firsts.count("heavy") / len(firsts) < 0.80


def test_lowest_latency_goes_first_and_an_unmeasured_deployment_is_tried_to_be_measured() -> None:
    deployments = Deployments()
    slow, quick, new = (_deployment(m, strategy="latency") for m in ("slow", "quick", "new"))
    deployments.state(slow).measured(900.0)
    deployments.state(quick).measured(40.0)
    assert [d.model for d in ordered([slow, quick, new], deployments)] == ["new", "quick", "slow"]


def test_a_deployment_over_its_rpm_or_tpm_or_cooling_down_is_skipped_until_the_minute_passed() -> None:
    now = [1000.0]
    deployments = Deployments(clock=lambda: now[0])
    limited = _deployment("m", rpm=2, tpm=100)
    state = deployments.state(limited)
    state.started()
    assert state.skip_reason(limited) is None
    state.started()[1] = 150
    assert state.skip_reason(limited) == "rpm_limit"
    now[0] += 61
    assert state.skip_reason(limited) is None
    state.started()[1] = 100
    assert state.skip_reason(_deployment("m", tpm=100)) == "tpm_limit"
    state.cool(30)
    assert state.skip_reason(_deployment("m")) == "cooling_down"
    assert state.wait() == pytest.approx(30)


def test_a_deployment_skipped_for_the_deadline_leaves_a_half_open_breakers_one_probe() -> None:
    now = [0.0]
    deployments = Deployments(clock=lambda: now[0])
    deployment = _deployment("m", granted=True, cooldown=5)
    state = deployments.state(deployment)
    for _ in range(3):
        state.breaker.failure()
    now[0] += 6  # past its cool-down: the next request may probe it
    request = LlmRequest(caller=Caller(key_id="k", key_name="k"), provider="p", model="m", body={}, timeout=60)
    late = request.model_copy(update={"deadline": 1.0})
    assert skipped(late, deployment, state) == "deadline"
    assert skipped(request, deployment, state) is None  # the probe was not given to the late one
    assert skipped(request, deployment, state) == "circuit_open"  # and there is one
    assert skipped(request, deployment.model_copy(update={"granted": False}), state) == "not_granted"


def test_cached_and_reasoning_tokens_are_priced_at_their_own_rates_and_default_to_input_and_output() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=800, reasoning_tokens=300)
    priced = ModelPrice(input=2.0, cached_input=0.5, output=8.0, reasoning=20.0)
    assert cost_usd(priced, usage) == pytest.approx((200 * 2.0 + 800 * 0.5 + 200 * 8.0 + 300 * 20.0) / 1e6)
    plain = ModelPrice(input=2.0, output=8.0)
    assert cost_usd(plain, usage) == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)
    # a provider's odd numbers (more cached than prompt tokens) never make a cost smaller than all-cached
    odd = Usage(prompt_tokens=10, completion_tokens=0, cached_tokens=10_000)
    assert cost_usd(priced, odd) == pytest.approx(10 * 0.5 / 1e6)


def test_the_most_a_request_may_cost_is_at_its_dearest_deployment_and_dearest_token_kind() -> None:
    body = {"max_tokens": 1000}
    cheap, dear = ModelPrice(output=1.0), ModelPrice(output=1.0, reasoning=50.0)
    assert max_cost_usd([cheap, None, dear], body, 0) == pytest.approx(1000 * 50.0 / 1e6)


def test_model_grants_deny_by_default_once_stated_and_allow_all_when_nobody_states_any() -> None:
    assert ModelGrants.of([None, None]).allows("anything")
    stated = ModelGrants.of([None, ["gpt-4.1*"], []])
    assert stated.allows("gpt-4.1-mini") and not stated.allows("claude-sonnet")
    assert not ModelGrants.of([[]]).allows("gpt-4.1")
    assert "'gpt-4.1*'" in stated.describe()
