"""Routed chat completions: a request tried on its deployments in turn until one answers.

A request for a routed model (`LlmRequest.deployments`, docs/llm-routing.md) is sent to its
deployments in the order `llm_deployments.ordered` gives, skipping those policy did not grant, those
cooling down (a 429 or an overload answer, for its `Retry-After` or the route's `cooldown`), those
whose breaker is open (consecutive failures) and those over their `tpm` / `rpm`. A deployment that
fails (unreachable, timed out, 429, 5xx, an overloaded answer) hands the request to the next one,
but only while no chunk went to the client: after that a retry would repeat text it has seen.
Every deployment tried or skipped is an `LlmAttempt` of the outcome, for the audit row.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import LlmAttempt, LlmOutcome, LlmRequest, RoutedDeployment, cost_usd
from libs.common.contracts.llm_routes import ROUTES_KEY
from libs.common.contracts.messages import GatewayError

from .llm_deployments import Deployments, DeploymentState, ordered
from .llm_providers import LlmProviders

__all__ = ["LlmRouter", "skipped"]

log = logging.getLogger(__name__)

_FAILOVER = frozenset(
    {ErrorKind.UPSTREAM_UNAVAILABLE, ErrorKind.UPSTREAM_TIMEOUT, ErrorKind.RATE_LIMITED, ErrorKind.CIRCUIT_OPEN}
)
_OVERLOADED = frozenset({429, 503, 529})
"""Statuses saying the deployment is busy rather than broken: it cools down instead of counting a failure."""


class LlmRouter:
    def __init__(self, providers: LlmProviders, deployments: Deployments | None = None) -> None:
        self.providers = providers
        self.deployments = deployments or Deployments()

    # ------------------------------------------------------------------ KV `bastion_llm`

    async def put(self, name: str, value: bytes, revision: int = 0) -> None:
        """Providers go to `LlmProviders`; the routes record is ingress's (requests carry their deployments)."""
        if name != ROUTES_KEY:
            await self.providers.put(name, value, revision)

    async def delete(self, name: str) -> None:
        if name != ROUTES_KEY:
            await self.providers.delete(name)

    # ------------------------------------------------------------------ requests

    async def run(self, request: LlmRequest) -> LlmOutcome:
        if not request.deployments:
            return await self.providers.run(request)
        attempts: list[LlmAttempt] = []
        last: LlmOutcome | None = None
        waits: list[float] = []
        for deployment in ordered(request.deployments, self.deployments):
            state = self.deployments.state(deployment)
            reason = skipped(request, deployment, state)
            if reason is not None:
                attempts.append(_attempt(deployment, reason, 0.0))
                if deployment.granted:
                    waits.append(state.wait())
                continue
            outcome = await self._tried(request, deployment, state, attempts)
            if outcome.error is None or not _fails_over(outcome):
                outcome.attempts = attempts
                return outcome
            last = outcome
        outcome = last or _none_left(request, attempts, waits)
        outcome.attempts = attempts
        return outcome

    async def _tried(
        self, request: LlmRequest, deployment: RoutedDeployment, state: DeploymentState, attempts: list[LlmAttempt]
    ) -> LlmOutcome:
        """One deployment's answer, its state updated by what happened."""
        entry = state.started()
        started = time.perf_counter()
        try:
            outcome = await self.providers.run(_for(request, deployment))
        except BaseException:
            state.breaker.release()
            raise
        ms = (time.perf_counter() - started) * 1000
        error = outcome.error
        attempts.append(_attempt(deployment, "ok" if error is None else error.kind.value, ms))
        if outcome.usage is not None:
            entry[1] = outcome.usage.total_tokens or outcome.usage.prompt_tokens + outcome.usage.completion_tokens
            if deployment.price is not None:
                outcome.cost_usd = cost_usd(deployment.price, outcome.usage)
        if error is None or not _fails_over(outcome):
            state.breaker.success()  # it answered; a 4xx is the request's fault, not the deployment's
            if error is None:
                state.measured(ms)
            return outcome
        retry_after = _retry_after(error)
        if error.code in _OVERLOADED or error.kind is ErrorKind.RATE_LIMITED or retry_after is not None:
            state.breaker.release()
            state.cool(retry_after if retry_after is not None else deployment.cooldown)
        else:
            state.breaker.failure()
        if not outcome.started_streaming:
            log.info(
                "llm request %s: %s/%s failed (%s); trying the next deployment",
                request.id,
                deployment.provider,
                deployment.model,
                error.kind.value,
            )
        return outcome


def skipped(request: LlmRequest, deployment: RoutedDeployment, state: DeploymentState) -> str | None:
    """Why `deployment` is not tried for `request`, or None.

    The breaker is asked last: a half-open one lends its one probe to the caller that is then sure to
    send."""
    if not deployment.granted:
        return "not_granted"
    if time.time() >= request.deadline:
        return "deadline"
    return state.skip_reason(deployment)


def _for(request: LlmRequest, deployment: RoutedDeployment) -> LlmRequest:
    """The request as one deployment receives it: its provider, its upstream model name."""
    body: dict[str, Any] = {**request.body, "model": deployment.model}
    return request.model_copy(
        update={"provider": deployment.provider, "model": deployment.model, "body": body, "deployments": [deployment]}
    )


def _fails_over(outcome: LlmOutcome) -> bool:
    """Whether the next deployment may take the request.

    The failure is the deployment's (down, slow, overloaded, 5xx), and no chunk of the answer reached the
    client yet."""
    error = outcome.error
    if error is None or outcome.started_streaming:
        return False
    if error.kind in _FAILOVER:
        return True
    return error.kind is ErrorKind.UPSTREAM_ERROR and (error.code is None or error.code >= 500 or error.code == 408)


def _retry_after(error: GatewayError) -> float | None:
    value = (error.data or {}).get("retry_after") if isinstance(error.data, dict) else None
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _attempt(deployment: RoutedDeployment, outcome: str, ms: float) -> LlmAttempt:
    return LlmAttempt(
        provider=deployment.provider, model=deployment.model, route=deployment.route, outcome=outcome, ms=round(ms, 3)
    )


def _none_left(request: LlmRequest, attempts: list[LlmAttempt], waits: list[float]) -> LlmOutcome:
    """No deployment was tried: none granted, or every granted one resting."""
    if not waits:
        routes = sorted({a.route for a in attempts})
        message = f"this key may use none of the models this request could be served by ({', '.join(routes)})"
        error = GatewayError(kind=ErrorKind.FORBIDDEN, message=message)
    else:
        wait = min(waits)
        message = (
            f"every deployment of model {request.model!r} is cooling down, over its limits or failing; "
            f"retry in {wait:.1f}s"
        )
        error = GatewayError(kind=ErrorKind.RATE_LIMITED, message=message, data={"retry_after": round(wait, 3)})
    return LlmOutcome(id=request.id, error=error)
