"""Budgets and rate limits, enforced atomically in Redis/Valkey: one round trip per decided call.

The caller (the policy view) turns a call into a `LimitPlan`: the budgets it spends from
(customer → team → key, each with its own period) and the rate limits it counts against (per key,
per user, per tool). `LimitEngine.check_and_charge` runs the whole plan as one Lua script, so it is
all-or-nothing and serialised by Redis across every policy replica: every check is evaluated
first, and only if all pass is anything written. A budget is therefore never overspent, not even
by one call, however many replicas and tasks race for it.

Money is integer micro-USD in Redis (INCRBY, no floats). Prices that round to 0 µUSD are free.

Redis keys (`prefix` defaults to `bastion`):

    <prefix>:budget:<scope>:<period>:<label>   e.g. bastion:budget:customer:acme:month:2026-03
    <prefix>:rate:<scope>:<window>:<index>     e.g. bastion:rate:tool:github/search:minute:29512345
    <prefix>:refund:<charge id>                marker making a refund happen at most once

Budget keys expire `BUDGET_SLACK` seconds after their period ends (late refunds still land in the
period that was charged), rate keys `RATE_SLACK` seconds after their window. The TTL is relative
(EXPIRE, not EXPIREAT) and computed from the caller's `now`, so a caller clock that disagrees with
the server's (or an injected one in tests) can never expire a live counter. Every key is passed
in KEYS, never built inside Lua. On Redis Cluster a script's keys must share a hash slot: use a
hash-tagged prefix such as `{bastion}` (correct, but every limit then lives on one shard).

A refund gives back the budgets a `Charged` took, not its rate-limit counts: the call did reach the
upstream, and refunding rate slots would let a client hammer a failing upstream for free.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.maint_notifications import MaintNotificationsConfig

from libs.common.contracts.entities import Budget, RateLimit
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import GatewayError

from .periods import period_window, window_bucket

__all__ = [
    "BUDGET_SLACK",
    "RATE_SLACK",
    "BudgetCheck",
    "Charged",
    "LimitEngine",
    "LimitPlan",
    "RateCheck",
    "Refused",
    "ToolTable",
    "micro_usd",
    "plan_for",
    "price_for",
]

BUDGET_SLACK: Final = 7200
"""Seconds a budget counter outlives its period: more than the longest upstream timeout (3600 s),
so the refund of a call charged just before the period ended still finds its counter."""
RATE_SLACK: Final = 2
"""Seconds a rate-limit counter outlives its window (it is never read after the window)."""

T = TypeVar("T")

# --------------------------------------------------------------------------- prices


def micro_usd(usd: float) -> int:
    """USD as integer micro-USD, the unit Redis counts in (rounded to the nearest µUSD)."""
    return round(usd * 1_000_000)


def _specificity(pattern: str) -> tuple[int, int, int, int, str]:
    """Sort key, most specific first.

    Exact names, then the longest literal prefix, then the most literal characters, then the fewest `*`;
    the pattern itself last, so ties resolve the same way on every replica whatever the order of the
    configuration."""
    prefix = len(re.split(r"[*?\[]", pattern, maxsplit=1)[0])
    exact = prefix == len(pattern)
    literal = len(re.sub(r"\[[^\]]*\]|[*?]", "", pattern))
    return (0 if exact else 1, -prefix, -literal, pattern.count("*"), pattern)


class ToolTable(Generic[T]):
    """A `{tool pattern: value}` mapping (`ServerConfig.prices`, `ServerConfig.rate_limits`) compiled once.

    `lookup` returns the value of the most specific matching pattern, or None."""

    __slots__ = ("_exact", "_wild")

    def __init__(self, mapping: Mapping[str, T]) -> None:
        ordered = sorted(mapping, key=_specificity)
        self._exact = {p: mapping[p] for p in ordered if _specificity(p)[0] == 0}
        self._wild = [(re.compile(fnmatch.translate(p)), mapping[p]) for p in ordered if p not in self._exact]

    def lookup(self, tool: str) -> T | None:
        if tool in self._exact:
            return self._exact[tool]
        for regex, value in self._wild:
            if regex.match(tool):
                return value
        return None


def price_for(prices: Mapping[str, float], tool: str) -> float:
    """USD per call of `tool`: exact name beats wildcard, then the longest literal prefix; 0 if unlisted.

    Compiles the table on every call: on the hot path keep a `ToolTable` per server instead."""
    price = ToolTable(prices).lookup(tool)
    return 0.0 if price is None else price


# --------------------------------------------------------------------------- plans and results


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    scope: str
    """Who pays, e.g. `customer:acme`, `team:payments`, `key:<key id>`."""
    budget: Budget
    cost_micro_usd: int


@dataclass(frozen=True, slots=True)
class RateCheck:
    scope: str
    """What is counted, e.g. `key:<key id>`, `user:bob`, `tool:github/search`."""
    limit: RateLimit


@dataclass(frozen=True, slots=True)
class LimitPlan:
    """Everything one call is checked against.

    Rate limits are checked before budgets, each in the order given, and the first failure is the one
    reported: list budgets customer → team → key."""

    budgets: tuple[BudgetCheck, ...] = ()
    rates: tuple[RateCheck, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.budgets or self.rates)


def plan_for(
    cost_usd: float,
    budgets: Iterable[tuple[str, Budget | None]] = (),
    rates: Iterable[tuple[str, RateLimit | None]] = (),
) -> LimitPlan:
    """A plan from `(scope, limit or None)` pairs, dropping the Nones.

    A free call consults no budget (it spends nothing), so a free call with no rate limits costs no Redis
    round trip."""
    cost = micro_usd(cost_usd)
    return LimitPlan(
        budgets=tuple(BudgetCheck(s, b, cost) for s, b in budgets if b is not None) if cost > 0 else (),
        rates=tuple(RateCheck(s, r) for s, r in rates if r is not None),
    )


@dataclass(frozen=True, slots=True)
class Charged:
    """An allowed call, and what `LimitEngine.refund` needs to give its budgets back.

    Plain strings and ints, so it can be kept with the in-flight call or serialised."""

    id: str = ""
    budget_keys: tuple[str, ...] = ()
    amounts: tuple[int, ...] = ()

    @property
    def cost_micro_usd(self) -> int:
        """The largest amount taken from any one budget: what the call cost."""
        return max(self.amounts, default=0)


@dataclass(frozen=True, slots=True)
class Refused:
    """A refused call: which limit, and when it lets calls through again."""

    kind: Literal["budget", "rate_limit"]
    scope: str
    limit: str
    """Human-readable, e.g. `$10.00 per month`, `100 requests per minute`."""
    resets_at: float
    """Epoch seconds when the limit's period or window ends."""
    retry_after: float
    """Seconds from the decision to `resets_at`."""

    @property
    def message(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.resets_at))
        what = "budget" if self.kind == "budget" else "rate limit"
        done = "is exhausted" if self.kind == "budget" else "is reached"
        return f"{what} of {self.limit} for {self.scope} {done}; resets at {when} (in {_duration(self.retry_after)})"

    def error(self) -> GatewayError:
        kind = ErrorKind.BUDGET_EXCEEDED if self.kind == "budget" else ErrorKind.RATE_LIMITED
        return GatewayError(kind=kind, message=self.message)


NOTHING_CHARGED: Final = Charged()

# --------------------------------------------------------------------------- Lua

# KEYS: rate keys, then budget keys. ARGV[1] = number of rate keys, then per rate key (limit, ttl),
# then per budget key (limit, cost, ttl). Returns {0, 0} when charged, else {i, used}: KEYS[i]
# refused with `used` already counted. One MGET reads every counter (cheaper than a GET each);
# `want` tracks what this call adds per key, so a key listed twice is checked against both increments.
CHARGE_LUA: Final = """
local nrate = tonumber(ARGV[1])
local counted = redis.call('MGET', unpack(KEYS))
local want = {}
local a = 2
for i = 1, #KEYS do
  local limit, inc = tonumber(ARGV[a]), 1
  if i <= nrate then a = a + 2 else inc = tonumber(ARGV[a + 1]); a = a + 3 end
  local k = KEYS[i]
  local used = want[k] or tonumber(counted[i] or '0')
  if used + inc > limit then return {i, used} end
  want[k] = used + inc
end
a = 2
for i = 1, #KEYS do
  local inc, ttl
  if i <= nrate then inc, ttl = 1, ARGV[a + 1]; a = a + 2
  else inc, ttl = tonumber(ARGV[a + 1]), ARGV[a + 2]; a = a + 3 end
  if redis.call('INCRBY', KEYS[i], inc) == inc then redis.call('EXPIRE', KEYS[i], ttl) end
end
return {0, 0}
"""

# KEYS[1] = refund marker, KEYS[2..] = budget keys; ARGV[i] = amount charged to KEYS[i + 1].
# The marker (SET NX, living as long as the longest counter) makes a second refund a no-op; a
# counter that already expired is not recreated; a counter never goes below zero.
REFUND_LUA: Final = """
local ttl = 0
for i = 2, #KEYS do
  local t = redis.call('PTTL', KEYS[i])
  if t == -1 then t = 86400000 end
  if t > ttl then ttl = t end
end
if ttl <= 0 then return 0 end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ttl) then return -1 end
local back = 0
for i = 2, #KEYS do
  local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
  local amount = math.min(spent, tonumber(ARGV[i - 1]))
  if amount > 0 then redis.call('DECRBY', KEYS[i], amount); back = back + amount end
end
return back
"""


class _Script:
    """EVALSHA, falling back to EVAL (which also caches the script) when the server lost it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, redis: Redis, keys: list[str], args: list[int | str]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(self.source, len(keys), *keys, *args)


_CHARGE = _Script(CHARGE_LUA)
_REFUND = _Script(REFUND_LUA)

# --------------------------------------------------------------------------- engine


class LimitEngine:
    """Checks and charges `LimitPlan`s against one Redis/Valkey, shared by every policy replica.

    Redis errors propagate: the caller decides to fail closed. Give it a client that does not retry
    commands (`LimitEngine.from_url` does): a charge retried after a lost reply is charged twice.
    """

    def __init__(self, redis: Redis, prefix: str = "bastion") -> None:
        self.redis = redis
        self.prefix = prefix

    @classmethod
    def from_url(
        cls, url: str, prefix: str = "bastion", *, max_connections: int = 64, pool_timeout: float = 5.0, **kwargs: Any
    ) -> LimitEngine:
        """An engine on its own client.

        Command retries off (see above), and a pool that makes a burst of decisions wait up to
        `pool_timeout` s for a connection. (redis-py's default pool raises MaxConnectionsError beyond 100
        concurrent commands.)"""
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        # on, redis-py does not check a pooled connection before lending it: after a Valkey restart
        # each connection the old server closed would fail one decision, long after it is back
        kwargs.setdefault("maint_notifications_config", MaintNotificationsConfig(enabled=False))
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=pool_timeout, **kwargs)
        return cls(Redis.from_pool(pool), prefix)

    def budget_key(self, scope: str, period: str, label: str) -> str:
        return f"{self.prefix}:budget:{scope}:{period}:{label}"

    def rate_key(self, scope: str, window: str, label: str) -> str:
        return f"{self.prefix}:rate:{scope}:{window}:{label}"

    async def check_and_charge(self, plan: LimitPlan, now: float) -> Charged | Refused:
        """Charge every budget and count every rate limit in `plan`, or nothing at all.

        One EVALSHA, none for an empty plan. `now` is epoch seconds (the caller's clock)."""
        if not plan:
            return NOTHING_CHARGED
        keys: list[str] = []
        args: list[int | str] = [len(plan.rates)]
        spans = []
        for rate in plan.rates:
            span = window_bucket(rate.limit.per, now)
            spans.append(span)
            keys.append(f"{self.prefix}:rate:{rate.scope}:{rate.limit.per}:{span.label}")
            args += (rate.limit.requests, math.ceil(span.end - now) + RATE_SLACK)
        for check in plan.budgets:
            period = check.budget.period
            span = period_window(period, now)
            spans.append(span)
            keys.append(f"{self.prefix}:budget:{check.scope}:{period}:{span.label}")
            args += (micro_usd(check.budget.limit_usd), check.cost_micro_usd, math.ceil(span.end - now) + BUDGET_SLACK)
        failed, _used = await _CHARGE(self.redis, keys, args)
        if failed:
            return self._refused(plan, failed - 1, spans[failed - 1].end, now)
        if not plan.budgets:
            return NOTHING_CHARGED
        return Charged(
            id=secrets.token_hex(12),
            budget_keys=tuple(keys[len(plan.rates) :]),
            amounts=tuple(c.cost_micro_usd for c in plan.budgets),
        )

    async def refund(self, charged: Charged) -> int:
        """Give back the budgets `charged` took; micro-USD restored.

        At most once per charge (a second refund returns -1), never below zero, and a no-op (0) once the
        charged period has expired."""
        if not charged.budget_keys:
            return 0
        keys = [f"{self.prefix}:refund:{charged.id}", *charged.budget_keys]
        return int(await _REFUND(self.redis, keys, list(charged.amounts)))

    async def spent(self, scope: str, budget: Budget, now: float) -> int:
        """Micro-USD charged to `scope` in the period containing `now` (read-only; for admin views)."""
        label = period_window(budget.period, now).label
        return int(await self.redis.get(self.budget_key(scope, budget.period, label)) or 0)

    @staticmethod
    def _refused(plan: LimitPlan, index: int, resets_at: int, now: float) -> Refused:
        retry_after = max(resets_at - now, 0.0)
        if index < len(plan.rates):
            rate = plan.rates[index]
            requests = f"{rate.limit.requests} request{'s' if rate.limit.requests != 1 else ''}"
            return Refused("rate_limit", rate.scope, f"{requests} per {rate.limit.per}", resets_at, retry_after)
        check = plan.budgets[index - len(plan.rates)]
        limit = f"{_usd(micro_usd(check.budget.limit_usd))} per {check.budget.period}"
        return Refused("budget", check.scope, limit, resets_at, retry_after)


def _usd(micro: int) -> str:
    whole, frac = f"{micro / 1_000_000:,.6f}".split(".")
    return f"${whole}.{frac.rstrip('0').ljust(2, '0')}"


def _duration(seconds: float) -> str:
    s = math.ceil(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min" if s % 3600 // 60 else f"{s // 3600} h"
    return f"{s // 86400} d {s % 86400 // 3600} h" if s % 86400 // 3600 else f"{s // 86400} d"
