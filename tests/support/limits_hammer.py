"""One "policy replica" for the limits concurrency test: its own process, its own Redis connections.

    python limits_hammer.py REDIS_URL PLAN_JSON --tasks 32 --calls 20 --now 1773576000 --run RUN_ID

Counts itself ready (INCR <run>:ready), blocks until the test releases every replica at once
(BLPOP <run>:go), then runs `tasks` concurrent tasks of `calls` check_and_charge each, refunding
every n-th allowed call when --refund-every is given. Prints {"allowed": n, "refused": n,
"refunded_micro": n} as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from redis.asyncio import Redis

from libs.common.contracts.entities import Budget, RateLimit
from services.policy.quotas import Charged, LimitEngine, plan_for


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("redis_url")
    parser.add_argument("plan", help='{"cost_usd": 0.03, "budgets": [[scope, {...}]], "rates": [[scope, {...}]]}')
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--now", type=float, required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--refund-every", type=int, default=0)
    opts = parser.parse_args()
    spec = json.loads(opts.plan)
    plan = plan_for(
        spec["cost_usd"],
        [(s, Budget.model_validate(b)) for s, b in spec.get("budgets", [])],
        [(s, RateLimit.model_validate(r)) for s, r in spec.get("rates", [])],
    )
    engine = LimitEngine.from_url(opts.redis_url)
    control = Redis.from_url(opts.redis_url)
    allowed = refused = refunded = 0

    async def worker() -> None:
        nonlocal allowed, refused, refunded
        for _ in range(opts.calls):
            result = await engine.check_and_charge(plan, opts.now)
            if isinstance(result, Charged):
                allowed += 1
                if opts.refund_every and allowed % opts.refund_every == 0:
                    back = await engine.refund(result)  # not `refunded += await ...`: that loses updates
                    refunded += back
            else:
                refused += 1

    await asyncio.gather(*(engine.redis.ping() for _ in range(opts.tasks)))  # open the connections first
    await control.incr(f"{opts.run}:ready")
    await control.blpop([f"{opts.run}:go"])
    await asyncio.gather(*(worker() for _ in range(opts.tasks)))
    print(json.dumps({"allowed": allowed, "refused": refused, "refunded_micro": refunded}))
    await engine.redis.aclose()
    await control.aclose()


if __name__ == "__main__":
    asyncio.run(main())
