"""Model grants and per-key token and request limits of a chat completion (docs/llm-routing.md).

- Grants: the model asked for must be one the key may use (`model_grants`), or the request is
  refused naming the key's grants. Each deployment of a routed request is marked `granted` by its
  route, here and only here: a fallback into a model the key may not use is skipped by the
  executor, never silently used.
- Requests per minute count as a rate limit in the same Valkey script as budgets (`quotas`).
- Tokens per minute: a counter per key and minute in Valkey, added to once the completion's usage
  is known; a request is refused while the minute's count is at or above the limit.
"""

from __future__ import annotations

import logging
import math

from redis.exceptions import RedisError

from libs.common.contracts.entities import RateLimit
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import LlmRequest
from libs.common.contracts.messages import GatewayError

from .periods import window_bucket
from .quotas import RATE_SLACK, LimitEngine
from .view import CompiledKey

__all__ = ["TokenMeter", "granted", "model_refusal", "request_limits"]

log = logging.getLogger(__name__)


def model_refusal(key: CompiledKey, request: LlmRequest) -> GatewayError | None:
    """Why the key may not use the model asked for, naming its grants; None when it may."""
    if key.models.allows(request.model):
        return None
    message = (
        f"key {key.record.name!r} may not use model {request.model!r}: its model grants (the key's, its "
        f"groups' and its team's) are {key.models.describe()}"
    )
    return GatewayError(kind=ErrorKind.FORBIDDEN, message=message, data={"model": request.model})


def granted(key: CompiledKey, request: LlmRequest) -> LlmRequest:
    """The request with each deployment marked by whether the key may use its route."""
    for deployment in request.deployments:
        deployment.granted = key.models.allows(deployment.route)
    return request


def request_limits(key: CompiledKey) -> list[tuple[str, RateLimit | None]]:
    """The key's requests-per-minute limit on `/v1`, as a rate limit of its own scope."""
    limits = key.record.llm_limits
    if limits is None or limits.rpm is None:
        return []
    return [(f"llm:key:{key.record.name}", RateLimit(requests=limits.rpm, per="minute"))]


class TokenMeter:
    """Tokens per minute per key, in Valkey beside the rate counters (`<prefix>:tokens:key:<name>:<minute>`)."""

    def __init__(self, engine: LimitEngine) -> None:
        self.engine = engine

    def _key(self, key: CompiledKey, now: float) -> tuple[str, int]:
        span = window_bucket("minute", now)
        return f"{self.engine.prefix}:tokens:key:{key.record.name}:minute:{span.label}", span.end

    async def refusal(self, key: CompiledKey, now: float) -> GatewayError | None:
        limits = key.record.llm_limits
        if limits is None or limits.tpm is None:
            return None
        name, ends = self._key(key, now)
        try:
            used = int(await self.engine.redis.get(name) or 0)
        except (RedisError, OSError) as exc:
            log.error("limits store unreachable: %s", exc)
            return GatewayError(
                kind=ErrorKind.GATEWAY_UNAVAILABLE, message="the budget and rate-limit store is unreachable"
            )
        if used < limits.tpm:
            return None
        wait = max(ends - now, 0.0)
        message = (
            f"rate limit of {limits.tpm} tokens per minute for key {key.record.name!r} is reached "
            f"({used} used); resets in {math.ceil(wait)}s"
        )
        return GatewayError(kind=ErrorKind.RATE_LIMITED, message=message, data={"retry_after": round(wait, 3)})

    async def count(self, key: CompiledKey, tokens: int, now: float) -> None:
        limits = key.record.llm_limits
        if limits is None or limits.tpm is None or tokens <= 0:
            return
        name, ends = self._key(key, now)
        try:
            async with self.engine.redis.pipeline(transaction=True) as pipe:
                pipe.incrby(name, tokens)
                pipe.expire(name, math.ceil(ends - now) + RATE_SLACK)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # uncounted tokens: the next minute starts afresh anyway
            log.error("could not count %d tokens of key %s: %s", tokens, key.record.name, exc)
