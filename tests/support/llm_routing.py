"""The routed side of `/v1` under test: two scripted providers behind routed model names, and keys
with model grants and per-minute limits (docs/llm-routing.md)."""

from __future__ import annotations

from typing import Any

from tests.support.gateway import default_config
from tests.support.llm_provider import ScriptedProvider

NARROW_KEY = "bk_test_llm_narrow_models_key_0"
"""May use `gpt-guarded` only (not its fallback `gpt-secret`)."""
TEAM_KEY = "bk_test_llm_team_models_key_000"
"""States no model grant; its team grants `gpt-routed*` and its group `gpt-failover`."""
RPM_KEY = "bk_test_llm_rpm_limited_key_000"
TPM_KEY = "bk_test_llm_tpm_limited_key_000"
THRIFTY_KEY = "bk_test_llm_thrifty_budget_key_0"
"""A budget of one cent a day: what `gpt-limited` may cost at `b`'s price exceeds it, at `a`'s it does not."""
LISTED = "gpt-listed"
"""A model provider `a` lists: the implicit single-deployment route."""
PRICE_A = {"input": 1.0, "output": 2.0}
PRICE_B = {"input": 10.0, "cached_input": 5.0, "output": 20.0, "reasoning": 40.0}


def two_way(name: str, **route: Any) -> dict[str, Any]:
    """A route over provider `a` (priority 0) then `b` (priority 1), at their own prices; the
    upstream models are `<name>-a` and `<name>-b`, deployments of this route alone (each has its own
    breaker and cool-down)."""
    return {
        "deployments": [
            {"provider": "a", "model": f"{name}-a", "price": PRICE_A},
            {"provider": "b", "model": f"{name}-b", "priority": 1, "price": PRICE_B},
        ],
        **route,
    }


def routing_config(a: ScriptedProvider, b: ScriptedProvider) -> dict[str, Any]:
    config = default_config()
    config["groups"] = [{"id": "failover-users", "models": ["gpt-failover"]}]
    config["teams"] = [{"id": "routers", "name": "Routers", "models": ["gpt-routed*"], "groups": ["failover-users"]}]
    config["keys"] += [
        {"name": "narrow", "key": NARROW_KEY, "tools": [], "models": ["gpt-guarded"]},
        {"name": "team-member", "key": TEAM_KEY, "tools": [], "team": "routers"},
        {"name": "rpm", "key": RPM_KEY, "tools": [], "llm_limits": {"rpm": 2}},
        {"name": "tpm", "key": TPM_KEY, "tools": [], "llm_limits": {"tpm": 20}},
        {"name": "thrifty", "key": THRIFTY_KEY, "tools": [], "budget": {"limit_usd": 0.01, "period": "day"}},
    ]
    config["llm"] = {
        "providers": {
            # the provider-wide breakers stay out of the way: the deployments' own are under test
            "a": {
                "base_url": a.base_url,
                "models": [LISTED],
                "prices": {LISTED: PRICE_A},
                "retries": 0,
                "failure_threshold": 1000,
            },
            "b": {"base_url": b.base_url, "models": ["gpt-b-listed"], "retries": 0, "failure_threshold": 1000},
        },
        "models": {
            name: two_way(name, **options)
            for name, options in (
                ("gpt-failover", {}),
                ("gpt-stream-failover", {}),
                ("gpt-retry", {"cooldown": 600}),
                ("gpt-no-failover", {}),
                ("gpt-mid-stream", {}),
                ("gpt-routed", {"strategy": "weighted"}),
                ("gpt-limited", {}),
                ("gpt-messages-failover", {}),
                ("gpt-responses-failover", {}),
            )
        }
        | {
            "gpt-guarded": {"deployments": [{"provider": "a", "model": "up-guarded"}], "fallbacks": ["gpt-secret"]},
            "gpt-secret": {"deployments": [{"provider": "b", "model": "up-secret"}]},
        },
    }
    return config


def pair_config(x: ScriptedProvider, y: ScriptedProvider) -> dict[str, Any]:
    """`gpt-pair`: half the traffic to `x`, half to `y` (weights 1:1), for killing one under load."""
    config = default_config()
    config["llm"] = {
        "providers": {
            name: {"base_url": fake.base_url, "models": [f"gpt-{name}-listed"], "retries": 0}
            for name, fake in (("x", x), ("y", y))
        },
        "models": {
            "gpt-pair": {
                "strategy": "weighted",
                "deployments": [{"provider": "x", "model": "pair-x"}, {"provider": "y", "model": "pair-y"}],
            }
        },
    }
    return config
