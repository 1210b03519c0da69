"""Budgets and rate limits for one allowed call: build its plan, charge it, refund it.

Prices and per-tool rate limits come from the server's configuration (compiled once per config
version); budgets and per-key/per-user limits from the caller's compiled key. A call with no
price and no limits never touches Redis. If Redis cannot be reached, calls that need it are
refused (fail closed): a budget nobody can check is not a budget.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from redis.exceptions import RedisError

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.entities import RateLimit
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import GatewayError

from .quotas import Charged, LimitEngine, LimitPlan, Refused, ToolTable, micro_usd, plan_for
from .view import CompiledKey, PolicyView

__all__ = ["Charger"]

log = logging.getLogger(__name__)


class Charger:
    def __init__(self, engine: LimitEngine, view: PolicyView) -> None:
        self.engine = engine
        self.view = view
        self._tables: dict[str, tuple[ServerConfig, ToolTable[float], ToolTable[RateLimit]]] = {}

    def _server_tables(self, server: str) -> tuple[ToolTable[float], ToolTable[RateLimit]] | None:
        config = self.view.servers.get(server)
        if config is None:
            return None
        cached = self._tables.get(server)
        if cached is None or cached[0] is not config:
            cached = self._tables[server] = (config, ToolTable(config.prices), ToolTable(config.rate_limits))
        return cached[1], cached[2]

    def price(self, server: str, tool: str) -> float:
        """What one call of `tool` costs by its server's price list (USD; 0 when unpriced)."""
        tables = self._server_tables(server)
        return (tables[0].lookup(tool) or 0.0) if tables else 0.0

    def plan(self, key: CompiledKey, server: str, tool: str) -> LimitPlan:
        """What a call of `tool` is counted and charged against; empty (falsy) when nothing."""
        tables = self._server_tables(server)
        price = (tables[0].lookup(tool) or 0.0) if tables else 0.0
        tool_limit = tables[1].lookup(tool) if tables else None
        return plan_for(price, key.budgets, [*key.rate_limits, (f"tool:{server}/{tool}", tool_limit)])

    async def charge_plan(self, plan: LimitPlan, now: float) -> Charged | GatewayError | None:
        """Charge a call's plan (`plan`).

        None when nothing was charged (nothing to refund; no Redis for an empty plan), `Charged` when a
        budget was, or the refusal."""
        if not plan:
            return None
        return await self._checked(plan, now)

    async def _checked(self, plan: LimitPlan, now: float) -> Charged | GatewayError | None:
        try:
            result = await self.engine.check_and_charge(plan, now)
        except (RedisError, OSError) as exc:
            log.error("limits store unreachable: %s", exc)
            return GatewayError(
                kind=ErrorKind.GATEWAY_UNAVAILABLE,
                message="the budget and rate-limit store is unreachable; retry shortly",
            )
        if isinstance(result, Refused):
            error = result.error()
            error.data = {
                "scope": result.scope,
                "limit": result.limit,
                "resets_at": result.resets_at,
                "retry_after": round(result.retry_after, 3),
            }
            return error
        return result if result.budget_keys else None

    async def charge_usd(
        self, key: CompiledKey, cost_usd: float, now: float, rates: Iterable[tuple[str, RateLimit | None]] = ()
    ) -> Charged | GatewayError | None:
        """Charge an amount against the key's budgets (an LLM request's maximum cost), or refuse it.

        Rate limits per key and user apply as to a tool call, and `rates` besides. None when nothing was
        charged."""
        plan = plan_for(cost_usd, key.budgets, [*key.rate_limits, *rates])
        if not plan:
            return None
        return await self._checked(plan, now)

    async def settle(self, charged: Charged, actual_usd: float) -> None:
        """Give back what a charge took beyond `actual_usd` (the estimate was the most it could cost)."""
        actual = micro_usd(actual_usd)
        excess = tuple(max(0, amount - actual) for amount in charged.amounts)
        if any(excess):
            await self.refund(Charged(id=charged.id, budget_keys=charged.budget_keys, amounts=excess))

    async def refund(self, charged: Charged) -> None:
        try:
            await self.engine.refund(charged)
        except (RedisError, OSError) as exc:  # the spend stays counted: err on the side of the budget
            log.error("could not refund a failed call (%s): %s", charged.id, exc)
