"""Policy's decision on a chat completion (`POLICY_LLM`).

A live key that may use the model, its requests and tokens per minute (`llm_governance`), and budgets
that cover the request's maximum cost, charged before the provider is called and settled to the actual
cost after.

The LLM cost lands in the same hierarchical budgets (key, user, team, customer) as tool prices, so
one team budget covers both. An allowed request goes to the executor signed, like a tool call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel, ConfigDict, ValidationError

from libs.common.bus.rejoin import Nobody, Rejoin
from libs.common.bus.relay import AckedRequester, ResponderLost
from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import LlmOutcome, LlmRequest, Usage
from libs.common.contracts.messages import GatewayError

from .charging import Charger
from .llm_governance import TokenMeter, granted, model_refusal, request_limits
from .metrics import POLICY_COMPLETIONS_SENT_AGAIN
from .view import PolicyView

__all__ = ["LlmDecider"]

log = logging.getLogger(__name__)

Answer = Callable[[str, bytes], Awaitable[None]]


class LlmDecider:
    def __init__(
        self, view: PolicyView, charger: Charger, executors: AckedRequester, answer: Answer, rejoin: Rejoin
    ) -> None:
        self.view, self.charger, self.executors = view, charger, executors
        self.tokens = TokenMeter(charger.engine)
        self._answer = answer
        self.rejoin = rejoin
        """Executors heard; a completion that finds none subscribed waits for one rejoining."""

    def parse(self, msg: Msg) -> LlmRequest | None:
        try:
            return LlmRequest.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("dropping a malformed LlmRequest: %s", exc.errors()[0]["msg"])
            return None

    def refusal(self, request: LlmRequest) -> GatewayError | None:
        """Why the request is refused at once (no Redis needed), or None."""
        if time.time() >= request.deadline:
            return GatewayError(kind=ErrorKind.GATEWAY_TIMEOUT, message="the request arrived after its deadline")
        key = self.view.caller_key(request.caller)
        return key if isinstance(key, GatewayError) else None

    async def refuse(self, reply: str, request_id: str, error: GatewayError) -> None:
        await self._answer(
            reply, LlmOutcome(id=request_id, error=error, decided_by="policy").model_dump_json().encode()
        )

    async def charge_and_relay(self, msg: Msg, request: LlmRequest) -> None:
        assert msg.reply
        key = self.view.compiled(request.caller.key_id)
        if key is None:
            await self.refuse(msg.reply, request.id, GatewayError(kind=ErrorKind.KEY_REVOKED, message="unknown key"))
            return
        refused = model_refusal(key, request) or await self.tokens.refusal(key, time.time())
        if refused is not None:
            await self.refuse(msg.reply, request.id, refused)
            return
        charge = await self.charger.charge_usd(key, request.max_cost_usd, time.time(), request_limits(key))
        if isinstance(charge, GatewayError):
            await self.refuse(msg.reply, request.id, charge)
            return
        # a routed request goes on with its deployments marked granted or not, by policy alone
        data = granted(key, request).model_dump_json().encode() if request.deployments else msg.data
        actual, tokens = 0.0, 0
        try:
            reply = await self._relay(data, request)
        except ResponderLost as exc:
            await self.refuse(msg.reply, request.id, GatewayError(kind=ErrorKind.GATEWAY_UNAVAILABLE, message=str(exc)))
            actual = request.max_cost_usd  # it may have run: keep the estimate
        except NatsTimeout:
            error = GatewayError(
                kind=ErrorKind.GATEWAY_TIMEOUT, message=f"the provider did not answer within {request.timeout:g}s"
            )
            await self.refuse(msg.reply, request.id, error)
            actual = request.max_cost_usd
        else:
            if isinstance(reply, GatewayError):  # no executor subscribed, and none rejoined in time: not run
                await self.refuse(msg.reply, request.id, reply)
            else:
                await self._answer(msg.reply, reply.data)
                actual, tokens = _spent(reply, request)
        if charge is not None:
            await self.charger.settle(charge, actual)
        await self.tokens.count(key, tokens, time.time())

    async def _relay(self, data: bytes, request: LlmRequest) -> Msg | GatewayError:
        """The executor's reply, sent again while an executor is rejoining (`libs.common.bus.rejoin`).

        Why not, when none is subscribed and none rejoined in time (nothing ran)."""
        tries = 0
        while isinstance(reply := await self._relayed(data, request), Nobody):
            why = await self.rejoin.wait(reply, request.deadline, tries)
            if why is not None:
                return _unavailable(why)
            tries += 1
            POLICY_COMPLETIONS_SENT_AGAIN.inc()
        return reply

    async def _relayed(self, data: bytes, request: LlmRequest) -> Msg | Nobody:
        """The executor's reply; `Nobody` when none is subscribed (nothing ran)."""
        within = max(min(request.timeout, request.deadline - time.time()) - 0.05, 0.05)
        try:
            reply = await self.executors.request(subjects.EXEC_LLM, data, within=within)
        except NoRespondersError:
            return Nobody("executor")
        self.rejoin.heard("executor")
        return reply


def _unavailable(why: str) -> GatewayError:
    return GatewayError(kind=ErrorKind.GATEWAY_UNAVAILABLE, message=why)


class _Spent(BaseModel):
    """What policy reads of the executor's `LlmOutcome`: the usage and the cost.

    The response, relayed as it came, is never built into Python objects (a third of the parse)."""

    model_config = ConfigDict(extra="ignore")
    usage: Usage | None = None
    cost_usd: float = 0.0


def _spent(reply: Msg, request: LlmRequest) -> tuple[float, int]:
    """What the completion cost and the tokens it used, as the executor says.

    The cost estimate when its answer is unreadable."""
    try:
        outcome = _Spent.model_validate_json(reply.data)
    except ValidationError:
        return request.max_cost_usd, 0
    usage = outcome.usage
    tokens = 0 if usage is None else usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
    return outcome.cost_usd, tokens
